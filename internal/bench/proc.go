package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a program the bench started, with its output in a log file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProcess starts argv with its stdout and stderr appended to logPath. The process
// gets its own process group, so that a Ctrl-C meant for the bench reaches it only
// through stop.
func startProcess(name, logPath string, env []string, argv ...string) (*process, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits up to grace for the process to exit, then kills it. It
// returns the exit error of a process that did not exit cleanly.
func (p *process) stop(grace time.Duration) error {
	if done, err := p.exited(); done {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed (log: %s)", p.name, grace, p.log)
	}
}

// check fails when the process has already exited.
func (p *process) check() error {
	if done, err := p.exited(); done {
		return fmt.Errorf("%s exited early (%v); see %s", p.name, err, p.log)
	}
	return nil
}

// processes are cleave's parts under measurement; the first serves the HTTP endpoints.
type processes []*process

// check fails when any of them has exited.
func (ps processes) check() error {
	for _, p := range ps {
		if err := p.check(); err != nil {
			return err
		}
	}
	return nil
}

// stop stops them all, and returns what did not stop cleanly.
func (ps processes) stop(grace time.Duration) error {
	var errs []error
	for _, p := range ps {
		if err := p.stop(grace); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (log: %s)", p.name, err, p.log))
		}
	}
	return errors.Join(errs...)
}

func (ps processes) names() string {
	var s []string
	for _, p := range ps {
		s = append(s, p.name)
	}
	return strings.Join(s, ", ")
}

func (ps processes) logs() string {
	var s []string
	for _, p := range ps {
		s = append(s, p.log)
	}
	return strings.Join(s, ", ")
}

// freePort returns a loopback port that nothing listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200, p exits, or timeout passes.
func waitHTTP(ctx context.Context, p *process, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		if err := p.check(); err != nil {
			return err
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 on %s within %s (last: %v; log: %s)", p.name, url, timeout, last, p.log)
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
