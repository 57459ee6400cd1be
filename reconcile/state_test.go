package reconcile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/config"
)

func stateChecker(t *testing.T, path string) (*Checker, []*config.Table) {
	t.Helper()
	cfg := &config.Config{Shards: []config.Shard{{Name: "s0"}, {Name: "s1"}}, Tables: []config.Table{{Name: "shop.orders", Strategy: "hash", ShardKey: "user_id"}}}
	c := &Checker{cfg: cfg, opts: Options{StatePath: path, Resume: true}, log: zap.NewNop(), now: time.Now}
	return c, []*config.Table{&cfg.Tables[0]}
}

// A state file records which chunks were found equal; what "equal" meant depends on the
// row hash and the columns it covers. A state of another format must be refused, never
// taken for this cleave's.
func TestResumeRefusesAStateFileOfAnotherFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	c, tables := stateChecker(t, path)
	fp := c.fingerprint(tables)
	for _, tc := range []struct {
		name    string
		file    string
		wantErr string
	}{
		{"a state of the cleave before versioned states (SHA1, generated columns left out)",
			`{"fingerprint":"` + fp + `","started_at":"2026-01-01T00:00:00Z","tables":{"shop.orders":{"done":false,"next":["MTAwMA=="],"chunks":1,"rows":1000,"mismatched":0,"shard_rows":[500,500]}}}`,
			"was written by an older cleave (state format 1, this one writes 2)"},
		{"an explicit format 1", `{"version":1,"fingerprint":"` + fp + `","tables":{}}`, "older cleave (state format 1"},
		{"a newer format", `{"version":3,"fingerprint":"` + fp + `","tables":{}}`, "written by a newer cleave (state format 3; this one reads format 2)"},
		{"this format resumes", `{"version":2,"fingerprint":"` + fp + `","tables":{"shop.orders":{"chunks":1,"next":["MTAwMA=="],"shard_rows":[500,500]}}}`, ""},
		{"this format for other tables is refused", `{"version":2,"fingerprint":"0000","tables":{}}`, "belongs to a run of other tables or shards"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			st, resumed, err := c.loadState(tables)
			if tc.wantErr == "" {
				if err != nil || !resumed || st.Tables["shop.orders"].Chunks != 1 {
					t.Fatalf("loadState = %+v, %v, %v; want the saved state resumed", st, resumed, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("loadState error %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove") {
				t.Errorf("the error does not name the file and what to do: %v", err)
			}
		})
	}
}

func TestSavedStateCarriesItsFormatAndResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	c, tables := stateChecker(t, path)
	c.opts.Resume = false
	st, _, err := c.loadState(tables)
	if err != nil {
		t.Fatal(err)
	}
	st.table("shop.orders", 2).Chunks = 3
	if err := c.saveState(st); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"version":2`) {
		t.Errorf("saved state lacks its format: %s", data)
	}
	c.opts.Resume = true
	again, resumed, err := c.loadState(tables)
	if err != nil || !resumed || again.Tables["shop.orders"].Chunks != 3 {
		t.Fatalf("resume of a saved state: %+v, %v, %v", again, resumed, err)
	}
}

// The alert state holds no hash: an older cleave's file (no version) is read as is, and a
// clean run resolves the alert it had fired, with the fingerprint it had sent.
func TestAlertStateOfAnOlderCleaveIsUnderstoodAndANewerOneRefused(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.json")
	if err := os.WriteFile(old, []byte(`{"firing":{"shop.orders s1":"2026-01-02T03:04:05Z"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := newAlertState(old)
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Tables: []*TableReport{{Table: "shop.orders", Shards: []*ShardReport{{Shard: "s0", Drift: map[Kind]int{}}, {Shard: "s1", Drift: map[Kind]int{}}}}}}
	msg := a.alertsFor(rep, time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), func(string) int { return 0 })
	if msg == nil || len(msg.Alerts) != 1 || msg.Alerts[0].Status != "resolved" ||
		!msg.Alerts[0].StartsAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("a clean run after an older cleave's firing alert sent %+v, want it resolved with its start", msg)
	}
	// The fingerprint older cleaves sent for this table and shard.
	if fp := msg.Alerts[0].Fingerprint; fp != "edd241c808494ffc" {
		t.Errorf("fingerprint %s, want the one sent before (edd241c808494ffc)", fp)
	}
	if err := a.save(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(old); !strings.Contains(string(data), `"version":2`) {
		t.Errorf("saved alert state lacks its format: %s", data)
	}

	for _, tc := range []struct{ name, file, want string }{
		{"a newer format", `{"version":9,"firing":{}}`, "written by a newer cleave (format 9; this one reads up to 2)"},
		{"a damaged file", `{"firing":`, "is damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.json")
			if err := os.WriteFile(p, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := newAlertState(p); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "remove") {
				t.Errorf("newAlertState: %v, want an error containing %q that says what to do", err, tc.want)
			}
		})
	}
}
