// Package testenv owns what tests need from the outside world: the shared local services
// started by scripts/services.sh (a MariaDB source, two MariaDB shards and a Kafka
// broker), an isolated database name or topic prefix per test, and private disposable
// mariadbd and Kafka processes for tests that must stop, restart or misconfigure a
// server.
//
// A test that needs a shared service skips when it is unreachable, except when CI=true:
// then it fails, naming the service and its address, so a CI run can never pass by
// skipping. Under -short every test that needs a service skips (make unit).
//
// testenv never stops or reconfigures the shared services: tests of other packages run
// against them at the same time. Anything destructive happens on a private instance from
// StartMariaDB or StartKafka, whose processes and files are removed at t.Cleanup. Only
// test code imports this package; what it does without a testing.TB lives in
// internal/testenv/core, which the benchmark driver (internal/bench) uses as well.
package testenv
