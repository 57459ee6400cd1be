package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// startDeadline bounds how long a private server may take to answer after it is launched.
const startDeadline = 90 * time.Second

// stopDeadline bounds a graceful stop before the process is killed.
const stopDeadline = 60 * time.Second

// startProc launches name with args, its stdout and stderr appended to logPath, in its own
// process group, killed by the kernel if the test binary dies.
func startProc(logPath, name string, args ...string) (*core.Proc, error) {
	return core.Start(core.Command{Name: name, Argv: append([]string{name}, args...), Log: logPath, DieWithParent: true})
}

// stopProc stops p gracefully within stopDeadline and reports whether it exited by itself
// (rather than being killed).
func stopProc(p *core.Proc) bool {
	return !errors.Is(p.Stop(stopDeadline), core.ErrKilled)
}

// tail returns the last n lines of the file at path, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("---- last lines of %s ----\n%s\n----", path, bytes.Join(lines, []byte("\n")))
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// repoRoot is the directory holding scripts/services.sh, found upwards from the working
// directory (go test runs in the package's directory).
func repoRoot() (string, error) {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "scripts", "services.sh")); err == nil {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = errors.New("scripts/services.sh not found above the working directory")
				return
			}
			dir = parent
		}
	})
	return rootDir, rootErr
}

// lookPath finds a server binary, also in the sbin directories a test's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin: run scripts/services.sh up (it installs MariaDB)", name)
}

// shortTempDir makes a directory with a short path for unix sockets (108-byte limit; a
// t.TempDir path grows with the test name).
func shortTempDir(pattern string) (string, error) {
	return os.MkdirTemp("", pattern)
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " '\"") {
			a = fmt.Sprintf("%q", a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// fileSize is the size of the file at path, 0 if it does not exist.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logHas reports whether the file at path contains s after byte offset from.
func logHas(path string, from int64, s string) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < from {
		return false
	}
	return bytes.Contains(b[from:], []byte(s))
}
