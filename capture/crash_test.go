package capture

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// process is one run of `cleave capture`.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, bin, cfgPath, logPath string) *process {
	t.Helper()
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "capture", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// change is one row change as the binlog records it: what Kafka must hold.
type change struct {
	key     string
	version event.Version
	op      event.Op
}

// binlogChanges reads the binlog from from to to with a replica connection of its own and
// returns every row change of the tables of db, decoded here, independently of capture.
func binlogChanges(t *testing.T, flavor testenv.Flavor, dsn string, from, to Position, db string) map[change]bool {
	t.Helper()
	want := map[change]bool{}
	var file string
	keyOf := func(tm *replication.TableMapEvent, row []any) string {
		vals := make([]any, len(tm.PrimaryKey))
		for i, c := range tm.PrimaryKey {
			switch v := row[c].(type) {
			case string:
				vals[i] = v
			default:
				vals[i] = json.Number(fmt.Sprint(v))
			}
		}
		k, err := event.MarshalKey(vals)
		if err != nil {
			t.Fatal(err)
		}
		return string(k)
	}
	// addRows adds the row changes of e at position start, row indexes from base; it
	// returns their number.
	addRows := func(e *replication.RowsEvent, start uint64, base int) int {
		n := len(e.Rows)
		if e.Type() == replication.EnumRowsEventTypeUpdate {
			n /= 2
		}
		if string(e.Table.Schema) != db {
			return n
		}
		add := func(row []any, op event.Op, i int) {
			v, err := event.NewVersion(file, start, base+i)
			if err != nil {
				t.Fatal(err)
			}
			want[change{keyOf(e.Table, row), v, op}] = true
		}
		switch e.Type() {
		case replication.EnumRowsEventTypeInsert:
			for i, row := range e.Rows {
				add(row, event.OpCreate, i)
			}
		case replication.EnumRowsEventTypeDelete:
			for i, row := range e.Rows {
				add(row, event.OpDelete, i)
			}
		case replication.EnumRowsEventTypeUpdate:
			for i := 0; i+1 < len(e.Rows); i += 2 {
				if keyOf(e.Table, e.Rows[i]) == keyOf(e.Table, e.Rows[i+1]) {
					add(e.Rows[i+1], event.OpUpdate, i/2)
				} else {
					add(e.Rows[i], event.OpDelete, i/2)
					add(e.Rows[i+1], event.OpCreate, i/2)
				}
			}
		}
		return n
	}
	walkBinlog(t, string(flavor), dsn, from, to, 2*time.Minute, func(cfg *replication.BinlogSyncerConfig) {
		cfg.TimestampStringLocation = nil
	}, func(f string, ev *replication.BinlogEvent) {
		file = f
		switch e := ev.Event.(type) {
		case *replication.RowsEvent:
			addRows(e, uint64(ev.Header.LogPos-ev.Header.EventSize), 0)
		case *replication.TransactionPayloadEvent:
			// A compressed transaction: its rows take the payload's position and their
			// index among all its row changes (compressed.go). The load's transactions
			// are small, never emitted net.
			start := uint64(ev.Header.LogPos - ev.Header.EventSize)
			base := 0
			for _, ie := range e.Events {
				if re, ok := ie.Event.(*replication.RowsEvent); ok {
					base += addRows(re, start, base)
				}
			}
		}
	})
	return want
}

// writeLoad changes rows of a and b at random until stop is closed, in autocommit
// statements and in multi-statement transactions, including primary key changes and bursts
// of many rows. every > 0 paces it to one transaction per interval. On MySQL, a third of
// the transactions are compressed (binlog_transaction_compression, set per session).
func writeLoad(t testing.TB, db *sql.DB, flavor testenv.Flavor, seed uint64, every time.Duration, stop <-chan struct{}) (changes int, err error) {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(seed, 1))
	next := 1
	var tick <-chan time.Time
	if every > 0 {
		tk := time.NewTicker(every)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-stop:
			return changes, nil
		default:
		}
		if tick != nil {
			select {
			case <-stop:
				return changes, nil
			case <-tick:
			}
		}
		var stmts []string
		for n := 1 + rng.IntN(3); n > 0; n-- {
			id := 1 + rng.IntN(next)
			switch op := rng.IntN(10); {
			case op < 1 && rng.IntN(4) == 0:
				// A burst: many rows in one statement keep Kafka busy for a while.
				stmts = append(stmts, fmt.Sprintf("INSERT INTO a SELECT %d + seq, seq, REPEAT('b', 20) FROM %s s", next-1, seq(300)))
				next += 300
			case op < 4:
				stmts = append(stmts, fmt.Sprintf("INSERT INTO a VALUES (%d, %d, 'v%d'), (%d, 0, REPEAT('x', %d))", next, rng.IntN(1000), next, next+1, rng.IntN(90)))
				next += 2
			case op < 6:
				stmts = append(stmts, fmt.Sprintf("UPDATE a SET v = v + 1, s = CONCAT(s, '.') WHERE id BETWEEN %d AND %d", id, id+3))
			case op < 7:
				stmts = append(stmts, fmt.Sprintf("UPDATE a SET id = %d WHERE id = %d", next, id))
				next++
			case op < 8:
				stmts = append(stmts, fmt.Sprintf("DELETE FROM a WHERE id = %d", id))
			default:
				stmts = append(stmts, fmt.Sprintf("INSERT INTO b VALUES ('k%d', %d, 1) ON DUPLICATE KEY UPDATE v = v + 1", rng.IntN(50), rng.IntN(20)))
			}
		}
		if flavor == testenv.MySQLFlavor {
			if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION binlog_transaction_compression = %v", rng.IntN(3) == 0)); err != nil {
				return changes, err
			}
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return changes, err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(s); err != nil {
				tx.Rollback()
				return changes, fmt.Errorf("%s: %w", s, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return changes, err
		}
		changes += len(stmts)
	}
}

func TestKillNineTenTimesUnderLoadLosesNoChange(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testKillNineTenTimesUnderLoadLosesNoChange)
}

func testKillNineTenTimesUnderLoadLosesNoChange(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	f.exec(
		"CREATE TABLE a (id INT PRIMARY KEY, v INT, s VARCHAR(200))",
		"CREATE TABLE b (k VARCHAR(20), n INT, v INT, PRIMARY KEY (k, n))",
	)
	// Checkpoints as often as possible: a checkpoint ahead of Kafka's acknowledgements
	// would be caught by a kill right after it.
	f.configure([]string{"a", "b"}, func(c *config.Config) { c.Capture.CheckpointInterval = 5 * time.Millisecond })
	bin := testenv.CleaveBinary(t)
	logPath := filepath.Join(t.TempDir(), "capture.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("capture's log:\n%s", tailBytes(b, 6000))
		}
	})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	// The first run stores its start position before it streams; the check starts there.
	store := NewCheckpointStore(f.env.KafkaBrokers, f.prefix, 1)
	defer store.Close()
	p := startProcess(t, bin, f.cfgPath, logPath)
	var start Position
	testenv.Eventually(t, time.Minute, "the first checkpoint", func() bool {
		cp, err := store.Load(context.Background())
		if err == nil && cp != nil {
			start = cp.Position
			return true
		}
		return false
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var changes int
	var loadErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		changes, loadErr = writeLoad(t, f.src, e.SourceFlavor, seed, 0, stop)
	}()

	for i := 0; i < 10; i++ {
		// A random moment: during start-up, streaming, or a checkpoint write.
		select {
		case <-time.After(time.Duration(100+rng.IntN(1400)) * time.Millisecond):
		case <-p.done:
			t.Fatalf("capture exited on its own (%v) before kill %d", p.err, i+1)
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p = startProcess(t, bin, f.cfgPath, logPath)
	}
	close(stop)
	wg.Wait()
	if loadErr != nil {
		t.Fatalf("write load: %v", loadErr)
	}
	end := f.sourcePosition()
	t.Logf("%d statements under 10 kills, binlog %s to %s", changes, start, end)

	testenv.Eventually(t, 2*time.Minute, "the checkpoint to reach "+end.String(), func() bool {
		cp, err := store.Load(context.Background())
		return err == nil && cp != nil && !cp.Before(end)
	})
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("capture did not exit within a minute of SIGTERM")
	}
	if p.err != nil {
		t.Fatalf("capture exited with %v after SIGTERM, want status 0", p.err)
	}

	want := binlogChanges(t, f.env.SourceFlavor, f.env.SourceDSN, start, end, f.db)
	got := map[change]int{}
	for _, table := range []string{"a", "b"} {
		for _, rec := range rowEvents(readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, table))) {
			got[change{rec.key, rec.ev.Version, rec.ev.Op}]++
		}
	}
	missing, dups := 0, 0
	for c := range want {
		if got[c] == 0 {
			if missing < 10 {
				t.Errorf("missing from Kafka: key %s version %v op %s", c.key, c.version, c.op)
			}
			missing++
		}
	}
	for c, n := range got {
		if !want[c] {
			t.Errorf("in Kafka but not in the binlog: %+v", c)
		}
		dups += n - 1
	}
	if missing > 0 {
		t.Fatalf("%d of %d changes missing", missing, len(want))
	}
	t.Logf("%d changes, all in Kafka; %d duplicates from restarts", len(want), dups)
}

func tailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
