package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestHooksTag is the build tag that compiles the cleave binary's fault injection for tests
// (cmd/cleave/testhooks.go): environment variables that make a process kill itself at a
// chosen point. The shipped binary is built without it and has no such variables.
const TestHooksTag = "cleavetest"

var (
	binMu    sync.Mutex
	binBuilt = map[string]string{} // tags -> path
	binDirs  []string
)

// CleaveBinary builds ./cmd/cleave of this tree once per test process and set of build
// tags, and returns its path. RemoveBinaries, from TestMain, removes what it built.
func CleaveBinary(t testing.TB, tags ...string) string {
	t.Helper()
	key := strings.Join(tags, ",")
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binBuilt[key]; ok {
		return p
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: build cleave: %v", err)
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatal("testenv: no go command to build cleave with")
		}
	}
	dir, err := os.MkdirTemp("", "cleave-test-bin-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	binDirs = append(binDirs, dir)
	bin := filepath.Join(dir, "cleave")
	args := []string{"build", "-o", bin}
	if key != "" {
		args = append(args, "-tags", key)
	}
	cmd := exec.Command(goBin, append(args, "./cmd/cleave")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: go %s ./cmd/cleave: %v\n%s", strings.Join(args, " "), err, out)
	}
	binBuilt[key] = bin
	return bin
}

// RemoveBinaries removes the binaries CleaveBinary built; call it from TestMain after m.Run.
func RemoveBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	for _, d := range binDirs {
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		}
	}
	binDirs, binBuilt = nil, map[string]string{}
}
