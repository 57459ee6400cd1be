package cutover

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// State is a step of the cut-over, journaled before the step acts.
type State string

// The states in the order a cut-over passes them. Aborted ends any state before Switched;
// from Switched on the cut-over only goes forward.
const (
	StateGate         State = "gate"          // checking backfill, sinks, a clean reconcile
	StateVerify       State = "verify"        // verifying changed rows under live writes
	StateFence        State = "fence"         // taking the write fence
	StateDrain        State = "drain"         // fenced; waiting for every sink to pass the marker
	StateFencedVerify State = "fenced_verify" // fenced and drained; verifying the last changes
	StateSwitched     State = "switched"      // past the point of no return; the hook is pending
	StateDone         State = "done"          // switched and the application acknowledged
	StateAborted      State = "aborted"       // stopped before the switch; nothing moved
)

// Final reports whether a cut-over in state s is over.
func (s State) Final() bool { return s == StateDone || s == StateAborted }

// Switched reports whether s is past the point of no return.
func (s State) Switched() bool { return s == StateSwitched || s == StateDone }

// Record is one cut-over attempt as its journal row holds it.
type Record struct {
	ID        uint64    `json:"id"`
	Prefix    string    `json:"topic_prefix"`
	State     State     `json:"state"`
	Detail    Detail    `json:"detail"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// KindRollback marks a journal row that is a rollback (Detail.Kind); a cut-over's is empty.
const KindRollback = "rollback"

// Detail is what the journal keeps about an attempt besides its state.
type Detail struct {
	// Kind is "" for a cut-over, KindRollback for a rollback; Of is the cut-over a rollback
	// undoes.
	Kind string `json:"kind,omitempty"`
	Of   uint64 `json:"of,omitempty"`
	// ShardMarkers are, for a rollback, each shard's binlog position read under its fence
	// after the marker, by shard name.
	ShardMarkers map[string]*Position `json:"shard_markers,omitempty"`
	// Tables are the moved tables (db.table), Shards the shards' names.
	Tables []string `json:"tables"`
	Shards []string `json:"shards"`
	// Steps records when each state was entered.
	Steps []Step `json:"steps"`
	// Rounds are the verification rounds under live writes; Fenced the one under the fence.
	Rounds []Round `json:"rounds,omitempty"`
	Fenced *Round  `json:"fenced,omitempty"`
	// Marker is the source's binlog position read under the fence after the marker.
	Marker *Position `json:"marker,omitempty"`
	// WritePauseMs is how long the moved tables were fenced.
	WritePauseMs int64 `json:"write_pause_ms,omitempty"`
	// Reason says why the cut-over aborted, or what keeps it from finishing.
	Reason string `json:"reason,omitempty"`
	// Hook is the switch hook's outcome.
	Hook *HookOutcome `json:"hook,omitempty"`
	// Reverse holds, by shard name, where reverse replication starts reading the shard's
	// binlog: its end, read under the fence after the sinks drained and before the switch
	// committed, so every write the application makes to the shard after the switch lies
	// after it. Journaled with the switch itself, so a crash after the point of no return
	// still knows where to start.
	Reverse map[string]*ReverseStart `json:"reverse,omitempty"`
	// FinalizedAt is when `cleave finalize` ended the migration: reverse replication of
	// this cut-over stopped for good and its bookkeeping is gone.
	FinalizedAt *time.Time `json:"finalized_at,omitempty"`
}

// ReverseStart is a shard's binlog position where reverse replication begins.
type ReverseStart struct {
	File string `json:"file"`
	Pos  uint64 `json:"pos"`
	// GTID is the shard's GTID state at that position; empty when its binlog has none.
	GTID string `json:"gtid,omitempty"`
	// Flavor is the shard's server product ("MariaDB", "MySQL").
	Flavor string `json:"flavor"`
}

// Step is one state entered.
type Step struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
}

// Round is one verification of the rows changed between two sets of Kafka offsets.
type Round struct {
	Rows    int     `json:"rows"`
	Seconds float64 `json:"seconds"`
}

// Position is a binlog position and the version it stands for.
type Position struct {
	File    string `json:"file"`
	Pos     uint64 `json:"pos"`
	Version uint64 `json:"version"`
}

// HookOutcome is what the application's switch hook answered.
type HookOutcome struct {
	Attempts int       `json:"attempts"`
	Acked    bool      `json:"acked"`
	AckedAt  time.Time `json:"acked_at,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// IsRollback reports whether the attempt is a rollback.
func (r *Record) IsRollback() bool { return r.Detail.Kind == KindRollback }

// Kind names the attempt: "cutover" or "rollback".
func (r *Record) Kind() string {
	if r.IsRollback() {
		return KindRollback
	}
	return "cutover"
}

// FenceWindow is when the attempt fenced the moved tables: from its fence step to the
// fence's release (the journaled pause after the fence step, or the switch, whichever is
// later). Both are zero before the fence.
func (r *Record) FenceWindow() (from, to time.Time) {
	for _, s := range r.Detail.Steps {
		switch s.State {
		case StateFence:
			from = s.At
		case StateSwitched:
			to = s.At
		}
	}
	if end := from.Add(time.Duration(r.Detail.WritePauseMs) * time.Millisecond); end.After(to) {
		to = end
	}
	return from, to
}

func journalTable() string { return mysqlx.QuoteTable(shardmeta.Database, shardmeta.Cutover) }
func guardTable() string   { return mysqlx.QuoteTable(shardmeta.Database, shardmeta.Guard) }

// lockName is the named lock that one running cut-over of a topic prefix holds; names are
// limited to 64 characters, so a long prefix is hashed.
func lockName(prefix string) string {
	name := "cleave.cutover." + prefix
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(prefix))
	return "cleave.cutover." + hex.EncodeToString(sum[:16])
}

// querier is what both *sql.DB and *sql.Conn offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ensureJournal creates the journal and guard tables on the source.
func ensureJournal(ctx context.Context, q querier) error {
	for _, stmt := range shardmeta.SourceStatements {
		if _, err := q.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create cleave's cut-over journal on the source (%s): %w (the cut-over needs CREATE, INSERT, UPDATE, DELETE on `_cleave`.* on the source)", stmt, err)
		}
	}
	return nil
}

// Latest reads the newest cut-over attempt of the topic prefix from the source's journal;
// nil when there is none, also when the journal does not exist.
func Latest(ctx context.Context, source *sql.DB, prefix string) (*Record, error) {
	return latest(ctx, source, prefix)
}

// latest reads the newest attempt of the prefix; nil when there is none (or no journal).
func latest(ctx context.Context, q querier, prefix string) (*Record, error) {
	recs, err := history(ctx, q, prefix, 1)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	return recs[0], nil
}

// LatestSwitched reads the newest attempt of the topic prefix that passed its point of no
// return, cut-over or rollback: the one that decides where the moved tables live (the
// source when it is nil or a rollback, the shards when it is a cut-over). Aborted
// attempts after it change nothing.
func LatestSwitched(ctx context.Context, source *sql.DB, prefix string) (*Record, error) {
	return latestSwitched(ctx, source, prefix)
}

func latestSwitched(ctx context.Context, q querier, prefix string) (*Record, error) {
	recs, err := query(ctx, q, " WHERE topic_prefix = ? AND state IN (?, ?) ORDER BY id DESC LIMIT 1", prefix, string(StateSwitched), string(StateDone))
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	return recs[0], nil
}

// history reads the newest n attempts of the prefix, newest first.
func history(ctx context.Context, q querier, prefix string, n int) ([]*Record, error) {
	return query(ctx, q, " WHERE topic_prefix = ? ORDER BY id DESC LIMIT ?", prefix, n)
}

// query reads the journal rows that the rest of a SELECT (where) picks.
func query(ctx context.Context, q querier, where string, args ...any) ([]*Record, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, topic_prefix, state, detail, started_at, updated_at FROM "+journalTable()+where, args...)
	if mysqlx.Number(err) == mysqlx.ErNoSuchTable || mysqlx.Number(err) == 1049 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the cut-over journal on the source: %w", err)
	}
	defer rows.Close()
	var out []*Record
	for rows.Next() {
		var r Record
		var state, detail, started, updated string
		if err := rows.Scan(&r.ID, &r.Prefix, &state, &detail, &started, &updated); err != nil {
			return nil, fmt.Errorf("read the cut-over journal on the source: %w", err)
		}
		r.State = State(state)
		if err := json.Unmarshal([]byte(detail), &r.Detail); err != nil {
			return nil, fmt.Errorf("cut-over journal row %d on the source: detail is not cleave's JSON: %w", r.ID, err)
		}
		r.StartedAt, _ = time.Parse("2006-01-02 15:04:05.999999", started)
		r.UpdatedAt, _ = time.Parse("2006-01-02 15:04:05.999999", updated)
		out = append(out, &r)
	}
	return out, rows.Err()
}

// begin journals a new attempt in state gate.
func begin(ctx context.Context, q querier, prefix string, d Detail, now time.Time) (*Record, error) {
	r := &Record{Prefix: prefix, State: StateGate, Detail: d, StartedAt: now}
	r.Detail.Steps = append(r.Detail.Steps, Step{State: StateGate, At: now})
	b, err := json.Marshal(r.Detail)
	if err != nil {
		return nil, err
	}
	res, err := q.ExecContext(ctx, "INSERT INTO "+journalTable()+" (topic_prefix, state, detail) VALUES (?, ?, ?)", prefix, string(r.State), string(b))
	if err != nil {
		return nil, fmt.Errorf("journal a new cut-over on the source: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	r.ID = uint64(id)
	return r, nil
}

// save writes the record's state and detail. A state change appends a step.
func (r *Record) save(ctx context.Context, q querier, s State, now time.Time) error {
	if s != r.State {
		r.Detail.Steps = append(r.Detail.Steps, Step{State: s, At: now})
	}
	b, err := json.Marshal(r.Detail)
	if err != nil {
		return err
	}
	res, err := q.ExecContext(ctx, "UPDATE "+journalTable()+" SET state = ?, detail = ? WHERE id = ?", string(s), string(b), r.ID)
	if err != nil {
		return fmt.Errorf("journal cut-over %d state %s on the source: %w", r.ID, s, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("journal cut-over %d state %s on the source: its row is gone", r.ID, s)
	}
	r.State = s
	return nil
}

// MarkFinalized records in the journal that the migration of cut-over id is finalized, so
// that no `cleave run` starts its reverse replication again.
func MarkFinalized(ctx context.Context, source *sql.DB, prefix string, id uint64, at time.Time) error {
	recs, err := history(ctx, source, prefix, 1)
	if err != nil {
		return err
	}
	if len(recs) == 0 || recs[0].ID != id {
		return fmt.Errorf("mark cut-over %d finalized: it is no longer the latest cut-over of topic prefix %q", id, prefix)
	}
	r := recs[0]
	if r.Detail.FinalizedAt != nil {
		return nil
	}
	at = at.UTC()
	r.Detail.FinalizedAt = &at
	return r.save(ctx, source, r.State, at)
}

// errLockHeld is returned when another session runs a cut-over of the prefix.
var errLockHeld = errors.New("another cut-over of this topic prefix is running")

// lockWait is how long lock waits for the prefix's lock. A process killed a moment ago
// still holds it until the server has ended its session, which takes it a few
// milliseconds after the connection closed (seen on MySQL 9.7 right after a kill -9); a
// cut-over that really runs holds it far longer.
const lockWait = 3

// lock takes the prefix's named lock on the session; it fails after lockWait seconds
// when another session holds it, naming that session.
func lock(ctx context.Context, conn *sql.Conn, prefix string) error {
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", lockName(prefix), lockWait).Scan(&got); err != nil {
		return fmt.Errorf("take the cut-over lock on the source: %w", err)
	}
	if got.Valid && got.Int64 == 1 {
		return nil
	}
	holder, _, _ := lockHolder(ctx, conn, prefix)
	return fmt.Errorf("%w: source connection %d holds lock %q (see `cleave cutover --status`; `cleave cutover --abort` stops it before its point of no return)",
		errLockHeld, holder, lockName(prefix))
}

// lockHolder returns the source connection that holds the prefix's lock, and whether one
// does: a cut-over of the prefix is running.
func lockHolder(ctx context.Context, q querier, prefix string) (int64, bool, error) {
	var holder sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", lockName(prefix)).Scan(&holder); err != nil {
		return 0, false, fmt.Errorf("ask the source whether a cut-over runs: %w", err)
	}
	return holder.Int64, holder.Valid, nil
}
