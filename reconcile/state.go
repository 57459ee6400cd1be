package reconcile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/config"
)

// stateVersion is the format of the state file, in its "version" field. A state of
// another version is refused (loadState), never reinterpreted:
//
//	1  (no "version" field) cleave before the MySQL work: SHA1 row hash, and generated
//	   and DEFAULT_GENERATED columns left out of it, so the chunks it records as finished
//	   were compared without those columns.
//	2  SHA-256 row hash (hash.go) over every column.
//
// Raise it whenever what a finished chunk proves changes: the row hash, the columns it
// covers, or the layout of the file.
const stateVersion = 2

// state is what a run has finished so far, saved after every chunk so that `--resume`
// continues a killed run from its last finished chunk instead of the start.
type state struct {
	// Version is stateVersion for states this cleave writes.
	Version int `json:"version"`
	// Fingerprint identifies the tables and shards the state is about; a state of another
	// configuration is refused.
	Fingerprint string                 `json:"fingerprint"`
	StartedAt   time.Time              `json:"started_at"`
	Tables      map[string]*tableState `json:"tables"`
}

// tableState is one table's progress.
type tableState struct {
	Done bool `json:"done"`
	// Next is the upper bound of the last finished chunk (the next chunk's exclusive lower
	// bound), nil before the first chunk.
	Next       [][]byte      `json:"next,omitempty"`
	Chunks     int           `json:"chunks"`
	Rows       int64         `json:"rows"`
	Mismatched int           `json:"mismatched"`
	ShardRows  []int64       `json:"shard_rows"`
	Drift      []savedDrift  `json:"drift,omitempty"`
	InFlight   []InFlightRow `json:"in_flight,omitempty"`
	Truncated  bool          `json:"truncated,omitempty"`
	// Pending are keys that differed in finished chunks and await their re-check.
	Pending [][][]byte `json:"pending,omitempty"`
	// restored is set once the table's counts were copied into this run's report.
	restored bool
}

type savedDrift struct {
	DriftRow
	Raw        [][]byte `json:"raw"`
	Version    []byte   `json:"version,omitempty"`
	HasVersion bool     `json:"has_version,omitempty"`
}

func (s *state) table(name string, shards int) *tableState {
	ts, ok := s.Tables[name]
	if !ok {
		ts = &tableState{}
		s.Tables[name] = ts
	}
	if len(ts.ShardRows) != shards {
		ts.ShardRows = make([]int64, shards)
	}
	return ts
}

// restore copies the saved progress into the table's report.
func (ts *tableState) restore(tr *TableReport) {
	if ts.restored {
		return
	}
	ts.restored = true
	tr.Chunks, tr.ChunksResumed = ts.Chunks, ts.Chunks
	tr.RowsChecked, tr.ChunksMismatched = ts.Rows, ts.Mismatched
	for i, n := range ts.ShardRows {
		tr.Shards[i].RowsChecked = n
	}
	for _, d := range ts.Drift {
		row := d.DriftRow
		row.raw, row.version, row.hasVersion = d.Raw, d.Version, d.HasVersion
		tr.Drift = append(tr.Drift, row)
	}
	tr.InFlight = append(tr.InFlight, ts.InFlight...)
	tr.Truncated = ts.Truncated
}

// save records the report's counts and the next chunk's lower bound.
func (ts *tableState) save(tr *TableReport, next [][]byte) {
	ts.restored = true
	ts.Next = next
	ts.Chunks, ts.Rows, ts.Mismatched = tr.Chunks, tr.RowsChecked, tr.ChunksMismatched
	for i, s := range tr.Shards {
		ts.ShardRows[i] = s.RowsChecked
	}
	ts.Drift = ts.Drift[:0]
	for _, d := range tr.Drift {
		ts.Drift = append(ts.Drift, savedDrift{DriftRow: d, Raw: d.raw, Version: d.version, HasVersion: d.hasVersion})
	}
	ts.InFlight = tr.InFlight
	ts.Truncated = tr.Truncated
}

// fingerprint names the tables and shards a state belongs to.
func (c *Checker) fingerprint(tables []*config.Table) string {
	h := sha256.New()
	for _, t := range tables {
		fmt.Fprintf(h, "table %s %s %s\n", t.Name, t.Strategy, t.ShardKey)
	}
	for _, s := range c.cfg.Shards {
		fmt.Fprintf(h, "shard %s %s\n", s.Name, s.Keyspace)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// loadState returns the state to continue from: the saved one with Resume, else a new one.
func (c *Checker) loadState(tables []*config.Table) (*state, bool, error) {
	fp := c.fingerprint(tables)
	fresh := &state{Version: stateVersion, Fingerprint: fp, StartedAt: c.now().UTC(), Tables: map[string]*tableState{}}
	if c.opts.StatePath == "" || !c.opts.Resume {
		return fresh, false, nil
	}
	data, err := os.ReadFile(c.opts.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		c.log.Info("no state file to resume from, starting from the beginning", zap.String("path", c.opts.StatePath))
		return fresh, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read state file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var st state
	if err := dec.Decode(&st); err != nil {
		return nil, false, fmt.Errorf("state file %s is damaged (%v): remove it, or run without --resume", c.opts.StatePath, err)
	}
	switch v := max(st.Version, 1); {
	case v < stateVersion:
		return nil, false, fmt.Errorf("state file %s was written by an older cleave (state format %d, this one writes %d), whose chunks were compared with another row hash "+
			"and without generated and DEFAULT CURRENT_TIMESTAMP columns, so they cannot count as checked now: remove it, or run without --resume (the check then starts from the beginning)",
			c.opts.StatePath, v, stateVersion)
	case v > stateVersion:
		return nil, false, fmt.Errorf("state file %s was written by a newer cleave (state format %d; this one reads format %d): resume with that cleave, or remove the file, or run without --resume",
			c.opts.StatePath, v, stateVersion)
	}
	if st.Fingerprint != fp {
		return nil, false, fmt.Errorf("state file %s belongs to a run of other tables or shards: remove it, or run without --resume", c.opts.StatePath)
	}
	if st.Tables == nil {
		st.Tables = map[string]*tableState{}
	}
	return &st, true, nil
}

// saveState writes the state atomically: a temporary file in the same directory, renamed
// over the old one, so a kill at any moment leaves either the old or the new state.
func (c *Checker) saveState(st *state) error {
	if c.opts.StatePath == "" {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(c.opts.StatePath)
	f, err := os.CreateTemp(dir, filepath.Base(c.opts.StatePath)+".tmp*")
	if err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state file %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, c.opts.StatePath); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}
