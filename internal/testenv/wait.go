package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// Eventually polls cond every 50ms until it returns true, and fails the test naming what
// it waited for once timeout has passed. Use it instead of a sleep whenever a test waits
// for another process or goroutine to catch up.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := core.Poll(context.Background(), 50*time.Millisecond, timeout, func() (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
