// Package core is the half of testenv that needs no testing.TB: where the shared local
// services of scripts/services.sh are (their DSNs and brokers from the environment) and
// whether they answer, names no other run uses, throwaway databases and topic prefixes
// and their cleanup, reading a topic whole, child processes with their output in a log
// file, and polling until a condition holds. Every function returns an error instead of
// failing a test, so that cmd/cleave-bench (internal/bench) drives the same services the
// same way the tests do without linking the testing package.
//
// testenv wraps each of these for tests, turning errors into skips or failures and
// cleanup into t.Cleanup; benchmarks and tests should call testenv, and only code that
// runs outside `go test` should call core directly. core never stops or reconfigures the
// shared services.
package core
