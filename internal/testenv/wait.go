package testenv

import (
	"testing"
	"time"
)

// Eventually polls cond every 50ms until it returns true, and fails the test naming what
// it waited for once timeout has passed. Use it instead of a sleep whenever a test waits
// for another process or goroutine to catch up.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
