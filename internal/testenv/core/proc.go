package core

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Command is a program to run as a child process.
type Command struct {
	// Name names the process in errors ("cleave run", "/usr/sbin/mariadbd").
	Name string
	// Argv is the program and its arguments.
	Argv []string
	// Env is its environment; nil inherits this process's.
	Env []string
	// Log is the file its stdout and stderr are appended to.
	Log string
	// DieWithParent has the kernel kill the child (SIGKILL) when this process dies, so a
	// test binary that crashes leaves no server behind.
	DieWithParent bool
}

// Proc is one run of a child process, in a process group of its own: a Ctrl-C meant for
// this process reaches it only through Stop or Kill.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// ErrKilled marks a Stop that had to kill the process.
var ErrKilled = errors.New("killed")

// Start starts c. The returned Proc is reaped in the background.
func Start(c Command) (*Proc, error) {
	if len(c.Argv) == 0 {
		return nil, fmt.Errorf("start %s: no program", c.Name)
	}
	out, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = c.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	p := &Proc{Name: c.Name, Log: c.Log, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (nil for exit status 0), once Exited.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Alive returns nil while the process runs, and an error naming it, its exit and its log
// once it has exited.
func (p *Proc) Alive() error {
	if p.Exited() {
		return fmt.Errorf("%s exited early (%v); see %s", p.Name, p.err, p.Log)
	}
	return nil
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then kills its process
// group. It returns how the process ended (nil for a clean exit), or an error wrapping
// ErrKilled when it had to kill it.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was %w (log: %s)", p.Name, grace, ErrKilled, p.Log)
	}
}

// Kill sends SIGKILL to the process group and waits for the process to exit.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
