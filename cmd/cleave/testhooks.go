//go:build cleavetest

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/sink"
)

// Fault injection for the sink's crash tests, compiled only into a binary built with the
// cleavetest tag (testenv.CleaveBinary(t, testenv.TestHooksTag)); the shipped binary has
// neither the variables nor the code. They do nothing unless set.
const (
	// envCrashBeforeCommit=N kills the process with SIGKILL inside its N-th batch, after
	// the rows and offsets are written and before the shard transaction commits.
	envCrashBeforeCommit = "CLEAVE_TEST_CRASH_BEFORE_COMMIT"
	// envSessionTimeout shortens the consumer group session (a Go duration), so that a
	// killed member's partitions move on quickly.
	envSessionTimeout = "CLEAVE_TEST_GROUP_SESSION_TIMEOUT"
	// envCutoverKillAt=STATE kills `cleave cutover` with SIGKILL right after it journaled
	// STATE (gate, verify, fence, drain, fenced_verify, switched).
	envCutoverKillAt = "CLEAVE_TEST_CUTOVER_KILL_AT"
)

// cutoverTestHooks installs the cut-over's crash point asked for by envCutoverKillAt.
func cutoverTestHooks(opts *cutover.Options) error {
	at := os.Getenv(envCutoverKillAt)
	if at == "" {
		return nil
	}
	opts.AfterState = func(s cutover.State) error {
		if string(s) == at {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	return nil
}

// testHooks installs the fault injection asked for by the test-only environment variables.
func testHooks(opts *sink.Options) error {
	if v := os.Getenv(envSessionTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration", envSessionTimeout, v)
		}
		opts.SessionTimeout = d
	}
	if v := os.Getenv(envCrashBeforeCommit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%s: %q is not a positive number of batches", envCrashBeforeCommit, v)
		}
		var batches atomic.Int64
		opts.BeforeCommit = func(context.Context) error {
			if batches.Add(1) >= int64(n) {
				// A crash, not an exit: nothing is flushed, nothing is rolled back cleanly.
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		}
	}
	return nil
}
