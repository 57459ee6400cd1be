package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// processes are cleave's parts under measurement; the first serves the HTTP endpoints.
type processes []*core.Proc

// check fails when any of them has exited.
func (ps processes) check() error {
	for _, p := range ps {
		if err := p.Alive(); err != nil {
			return err
		}
	}
	return nil
}

// stop stops them all, and returns what did not stop cleanly.
func (ps processes) stop(grace time.Duration) error {
	var errs []error
	for _, p := range ps {
		if err := p.Stop(grace); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (log: %s)", p.Name, err, p.Log))
		}
	}
	return errors.Join(errs...)
}

func (ps processes) names() string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name)
	}
	return strings.Join(s, ", ")
}

func (ps processes) logs() string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Log)
	}
	return strings.Join(s, ", ")
}

// waitHTTP polls url until it answers 200, p exits, or timeout passes.
func waitHTTP(ctx context.Context, p *core.Proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	err := core.Poll(ctx, 200*time.Millisecond, timeout, func() (bool, error) {
		if err := p.Alive(); err != nil {
			return false, err
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true, nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		return false, nil
	})
	if errors.Is(err, core.ErrTimeout) {
		return fmt.Errorf("%s did not answer 200 on %s within %s (last: %v; log: %s)", p.Name, url, timeout, last, p.Log)
	}
	return err
}

// cleanEnv is the environment for the programs the bench starts: the bench's own, less
// every CLEAVE_ variable but the test services' addresses, so that nothing in the caller's
// environment silently overrides a key of the configuration files the bench writes.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) > 7 && kv[:7] == "CLEAVE_" && (len(kv) < 12 || kv[:12] != "CLEAVE_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// exitedWith reports whether err is a process exit with status code.
func exitedWith(err error, code int) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == code
}

func itoa(n int) string { return strconv.Itoa(n) }
