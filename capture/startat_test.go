package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// Reverse capture starts at the position read at the cut-over's switch, on a server whose
// tables hold rows already. A capture without a checkpoint given a start position streams
// the changes after it and nothing else: not the rows written before it, not the rows the
// table holds (capture copies nothing). A stored checkpoint wins over the start position:
// a restart resumes where it stopped, even when given a later position. A position the
// source does not have is refused.
func TestStartAtStartsAFreshCaptureThereAndACheckpointWins(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testStartAtStartsAFreshCaptureThereAndACheckpointWins)
}

func testStartAtStartsAFreshCaptureThereAndACheckpointWins(t *testing.T, e testenv.Env) {
	t.Parallel()
	// A private source: positions and GTID states read by the test are its writes'.
	m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{})
	f := newFixtureOn(t, e, m.DSN())
	f.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))", "INSERT INTO t VALUES (1, 'held'), (2, 'held')")
	cfg := f.configure([]string{"t"}, nil)
	topic := kafkax.TableTopic(f.prefix, f.db, "t")
	changes := func(t *testing.T) []string {
		t.Helper()
		var keys []string
		for _, rec := range rowEvents(readTopic(t, f.env.KafkaBrokers, topic)) {
			keys = append(keys, string(rec.ev.Op)+rec.key)
		}
		slices.Sort(keys)
		return keys
	}
	store := NewCheckpointStore(f.env.KafkaBrokers, f.prefix, 1)
	defer store.Close()

	f.exec("INSERT INTO t VALUES (3, 'before the start')", "UPDATE t SET v = 'before the start' WHERE id = 1")
	at := f.sourcePosition()
	f.exec("INSERT INTO t VALUES (4, 'after the start')", "UPDATE t SET v = 'after the start' WHERE id = 2")

	t.Run("a fresh capture streams the changes after the start position only", func(t *testing.T) {
		if at.GTID == "" {
			t.Fatalf("the source's position %s has no GTID state: the test means to start with one", at)
		}
		start := at
		r := f.startWith(cfg, Options{StartAt: &start})
		r.waitAcknowledged(t, f.sourcePosition())
		if err := r.shutdown(); err != nil {
			t.Fatal(err)
		}
		if got, want := changes(t), []string{"c[4]", "u[2]"}; !slices.Equal(got, want) {
			t.Fatalf("row events %v, want %v: those after %s", got, want, at)
		}
	})

	t.Run("a stored checkpoint wins over a later start position", func(t *testing.T) {
		cp, err := store.Load(context.Background())
		if err != nil || cp == nil {
			t.Fatalf("checkpoint after the first run: %+v, %v", cp, err)
		}
		f.exec("INSERT INTO t VALUES (5, 'while stopped')")
		later := f.sourcePosition()
		f.exec("INSERT INTO t VALUES (6, 'after the later position')")
		r := f.startWith(cfg, Options{StartAt: &later})
		r.waitAcknowledged(t, f.sourcePosition())
		if err := r.shutdown(); err != nil {
			t.Fatal(err)
		}
		if got, want := changes(t), []string{"c[4]", "c[5]", "c[6]", "u[2]"}; !slices.Equal(got, want) {
			t.Fatalf("row events %v, want %v: the restart resumes at the checkpoint %s, not at %s", got, want, cp.Position, later)
		}
	})

	if e.SourceFlavor == testenv.MariaDBFlavor {
		t.Run("MariaDB tells the GTID state at a start position given without it", func(t *testing.T) {
			cfg := f.configureWith(f.prefix+"-nogtid", []string{"t"}, nil)
			f.exec("INSERT INTO t VALUES (7, 'fresh prefix')")
			start := f.sourcePosition()
			start.GTID = ""
			f.exec("INSERT INTO t VALUES (8, 'fresh prefix')")
			end := f.sourcePosition()
			r := f.startWith(cfg, Options{StartAt: &start})
			r.waitAcknowledged(t, end)
			if err := r.shutdown(); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, rec := range rowEvents(readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(cfg.Kafka.TopicPrefix, f.db, "t"))) {
				keys = append(keys, string(rec.ev.Op)+rec.key)
			}
			if !slices.Equal(keys, []string{"c[8]"}) {
				t.Fatalf("row events %v, want [c[8]]", keys)
			}
			cp, err := NewCheckpointStore(f.env.KafkaBrokers, cfg.Kafka.TopicPrefix, 1).Load(context.Background())
			if err != nil || cp == nil || !sameMariaDBState(cp.GTID, end.GTID) {
				t.Fatalf("checkpoint %+v, %v: want the source's GTID state %q", cp, err, end.GTID)
			}
		})
	}

	refused := func(t *testing.T, prefix string, start Position, want error) {
		t.Helper()
		c, err := New(f.configureWith(prefix, []string{"t"}, nil), Options{StartAt: &start})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Run(ctx); !errors.Is(err, want) {
			t.Fatalf("Run with StartAt %s = %v, want %v", start, err, want)
		}
	}
	t.Run("a start position in a binlog file the source does not have is refused", func(t *testing.T) {
		gone := at
		idx := atoi(t, gone.File[len(gone.File)-6:])
		gone.File = fmt.Sprintf("%s%06d", gone.File[:len(gone.File)-6], idx+100)
		refused(t, f.prefix+"-gone", gone, ErrPurged)
	})
	if e.SourceFlavor == testenv.MySQLFlavor {
		t.Run("MySQL refuses a start position without its GTID set", func(t *testing.T) {
			noGTID := at
			noGTID.GTID = ""
			refused(t, f.prefix+"-nogtid", noGTID, ErrSource)
		})
	}
}
