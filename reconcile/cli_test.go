package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
	cliDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cliDir != "" {
		os.RemoveAll(cliDir)
	}
	os.Exit(code)
}

// cli builds the cleave binary once per test process.
func cli(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		cliDir, cliErr = os.MkdirTemp("", "cleave-cli")
		if cliErr != nil {
			return
		}
		cliPath = filepath.Join(cliDir, "cleave")
		out, err := exec.Command("go", "build", "-o", cliPath, "github.com/cleave-dev/cleave/cmd/cleave").CombinedOutput()
		if err != nil {
			cliErr = errors.New("go build ./cmd/cleave: " + err.Error() + "\n" + string(out))
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

// runCLI runs `cleave reconcile` on the fixture's configuration and returns its exit code
// and output.
func (f *fixture) runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := f.cliCmd(t, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("run cleave: %v", err)
	return -1, ""
}

func (f *fixture) cliCmd(t *testing.T, args ...string) *exec.Cmd {
	all := append([]string{"reconcile", "-c", f.configPath(), "--log-level", "warn", "--no-progress",
		"--state", filepath.Join(f.dir, "state.json"), "--alert-state", filepath.Join(f.dir, "alerts.json")}, args...)
	cmd := exec.Command(cli(t), all...)
	cmd.Dir = f.dir
	return cmd
}

func readReport(t *testing.T, path string) *Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("report %s does not decode into Report: %v", path, err)
	}
	return &r
}

// normalize removes what changes between runs (times, positions in repair versions, the
// random database name) from a report and renders it as --json does.
func normalize(r *Report, dbName string) []byte {
	r.StartedAt, r.FinishedAt, r.DurationSeconds = time.Time{}, time.Time{}, 0
	r.Repair = nil
	for _, t := range r.Tables {
		t.DurationSeconds = 0
	}
	var buf bytes.Buffer
	r.WriteJSON(&buf)
	return bytes.ReplaceAll(buf.Bytes(), []byte(dbName), []byte("DB"))
}

// TestCLIExitCodesJSONReportAndRepairSQL runs on both flavors against one golden report:
// the checker's findings must not depend on the product.
func TestCLIExitCodesJSONReportAndRepairSQL(t *testing.T) {
	testenv.EachFlavorDatabases(t, testCLI)
}

func testCLI(t *testing.T, env testenv.Env) {
	f := itemsFixture(t, env)
	jsonPath := filepath.Join(f.dir, "report.json")

	t.Run("consistent shards exit 0", func(t *testing.T) {
		code, out := f.runCLI(t, "--json", jsonPath)
		if code != ExitConsistent {
			t.Fatalf("exit %d, want 0:\n%s", code, out)
		}
		if r := readReport(t, jsonPath); r.Status != StatusConsistent || r.Tables[0].RowsChecked != 3000 {
			t.Fatalf("report status %s rows %d", r.Status, r.Tables[0].RowsChecked)
		}
		if !strings.Contains(out, "consistent: 3000 rows") {
			t.Errorf("summary does not say consistent:\n%s", out)
		}
	})

	injectDrift(f)
	t.Run("drift exits 1, the JSON report matches the golden schema", func(t *testing.T) {
		sqlPath := filepath.Join(f.dir, "repair.sql")
		code, out := f.runCLI(t, "--json", jsonPath, "--repair-sql", sqlPath, "--chunk-size", "1000")
		if code != ExitDrift {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		for _, col := range []string{"MISSING", "EXTRA", "WRONG_SHARD", "DUPLICATE", "CHANGED", "IN_FLIGHT"} {
			if !strings.Contains(out, col) {
				t.Errorf("summary lacks column %s:\n%s", col, out)
			}
		}
		// The report decodes strictly into the documented types.
		got := normalize(readReport(t, jsonPath), f.dbName)
		golden := filepath.Join("testdata", "report.golden.json")
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run TestCLI -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("report differs from %s (run with -update after an intended change):\n%s", golden, got)
		}
		sqlText, err := os.ReadFile(sqlPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"-- shard s0", "-- shard s1", "DELETE FROM", "INSERT INTO", "ON DUPLICATE KEY UPDATE", "COMMIT;"} {
			if !bytes.Contains(sqlText, []byte(s)) {
				t.Errorf("repair SQL lacks %q:\n%s", s, sqlText)
			}
		}
	})

	t.Run("repair exits 0 once every row is fixed", func(t *testing.T) {
		code, out := f.runCLI(t, "--repair")
		if code != ExitConsistent {
			t.Fatalf("exit %d, want 0:\n%s", code, out)
		}
		if code, out := f.runCLI(t); code != ExitConsistent {
			t.Fatalf("a check after the repair: exit %d:\n%s", code, out)
		}
	})

	t.Run("a table the shards lack exits 2", func(t *testing.T) {
		for _, s := range f.shards {
			f.exec(s, "RENAME TABLE %s TO %s", f.q("items"), f.q("items_gone"))
		}
		defer func() {
			for _, s := range f.shards {
				f.exec(s, "RENAME TABLE %s TO %s", f.q("items_gone"), f.q("items"))
			}
		}()
		code, out := f.runCLI(t)
		if code != ExitCannot || !strings.Contains(out, "could not check") {
			t.Fatalf("exit %d, want 2 naming the table:\n%s", code, out)
		}
	})

	t.Run("an unreachable shard exits 2", func(t *testing.T) {
		bad := f.dep.Config
		bad.Shards = slices.Clone(bad.Shards)
		bad.Shards[1].DSN = "cleave:cleave@tcp(127.0.0.1:1)/"
		path, _ := deploy.Write(t, bad)
		cmd := exec.Command(cli(t), "reconcile", "-c", path, "--no-progress", "--state", "", "--alert-state", "")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != ExitCannot {
			t.Fatalf("err %v, want exit 2:\n%s", err, out)
		}
		if !strings.Contains(string(out), "shard s1") {
			t.Errorf("the error does not name the shard:\n%s", out)
		}
	})
}

// TestResumeAfterKill9SkipsFinishedChunks kills a throttled run with SIGKILL part way,
// resumes it, and counts: the resumed run takes the finished chunks from the state file and
// checks only the rest, and the totals equal those of an uninterrupted run.
func TestResumeAfterKill9SkipsFinishedChunks(t *testing.T) {
	eachSplit(t, testResumeAfterKill9)
}

func testResumeAfterKill9(t *testing.T, env testenv.Env) {
	f := newFixture(t, env, fixtureTable{name: "r", ddl: "id INT NOT NULL PRIMARY KEY, v VARCHAR(20)", strategy: "hash", shardKey: "id"})
	f.exec(f.source, "INSERT INTO %s SELECT seq, CONCAT('v', seq) FROM %s", f.q("r"), f.seq(20000))
	f.copyRouted("r", "id")
	statePath := filepath.Join(f.dir, "state.json")
	args := []string{"--chunk-size", "500", "--max-rows-per-second", "5000"}

	full := filepath.Join(f.dir, "full.json")
	if code, out := f.runCLI(t, append(args[:2:2], "--json", full)...); code != 0 {
		t.Fatalf("uninterrupted run: exit %d\n%s", code, out)
	}
	total := readReport(t, full).Tables[0].Chunks

	cmd := f.cliCmd(t, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	chunksIn := func() int {
		data, err := os.ReadFile(statePath)
		if err != nil {
			return 0
		}
		var st state
		if json.Unmarshal(data, &st) != nil {
			return 0
		}
		if ts := st.Tables[f.full("r")]; ts != nil {
			return ts.Chunks
		}
		return 0
	}
	testenv.Eventually(t, 60*time.Second, "the run to finish 5 chunks", func() bool { return chunksIn() >= 5 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	killedAt := chunksIn()
	if killedAt >= total {
		t.Fatalf("the run finished (%d of %d chunks) before it was killed; slow it down", killedAt, total)
	}

	resumed := filepath.Join(f.dir, "resumed.json")
	code, outR := f.runCLI(t, append(args, "--resume", "--json", resumed)...)
	if code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", code, outR)
	}
	r := readReport(t, resumed)
	tr := r.Tables[0]
	if !r.Resumed || tr.ChunksResumed != killedAt {
		t.Errorf("resumed %v with %d chunks from the state file, want %d", r.Resumed, tr.ChunksResumed, killedAt)
	}
	if checked := tr.Chunks - tr.ChunksResumed; checked != total-killedAt {
		t.Errorf("the resumed run checked %d chunks, want only the %d left", checked, total-killedAt)
	}
	if tr.Chunks != total || tr.RowsChecked != 20000 {
		t.Errorf("resumed totals: %d chunks, %d rows; uninterrupted: %d chunks, 20000 rows", tr.Chunks, tr.RowsChecked, total)
	}
	if _, err := os.Stat(statePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file outlived the completed run: %v", err)
	}
}
