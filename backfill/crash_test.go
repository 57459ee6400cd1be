package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// proc is one `cleave run` process.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startRun(t *testing.T, bin, cfgPath, logPath string) *proc {
	t.Helper()
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
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

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// progressHistory reads every progress record of table in the backfill topic, in the
// order they were stored.
func progressHistory(t *testing.T, brokers []string, prefix, table string) []Progress {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], Topic(prefix), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	first, last, err := conn.ReadOffsets()
	if err != nil {
		t.Fatal(err)
	}
	var out []Progress
	for off := first; off < last; {
		if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
			t.Fatal(err)
		}
		batch := conn.ReadBatch(1, 16<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			off = m.Offset + 1
			if string(m.Key) != progressPrefix+table {
				continue
			}
			var p Progress
			if err := json.Unmarshal(m.Value, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		batch.Close()
	}
	return out
}

func coordOf(t *testing.T, file string, pos uint64) uint64 {
	t.Helper()
	v, err := event.NewVersion(file, pos, 0)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(v)
}

// TestKill9DuringTheCopy kills `cleave run` with SIGKILL five times while it copies a table
// of 60,000 rows under a write load. Each restart resumes from the last stored chunk: no
// row of a chunk whose progress was stored is copied again at a later snapshot, only the
// chunks in flight at a kill are, and after the last run the shards equal the source.
func TestKill9DuringTheCopy(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		const rows, chunk, kills = 60_000, 500, 5
		w := newWorld(t, e, []tableSpec{{"items", itemsColumns, hashOn("id")}},
			func(c *config.Config) { c.Backfill.ChunkSize, c.Backfill.MaxRowsPerSecond = chunk, 5000 })
		seedItems(t, w, rows)
		table := w.table("items")
		bin := testenv.CleaveBinary(t)
		store := NewStore(w.Env.KafkaBrokers, w.Prefix, 1)
		defer store.Close()
		ctx := context.Background()
		progress := func() Progress {
			if _, err := store.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			if p := store.State().Current(table); p != nil {
				return *p
			}
			return Progress{}
		}

		var cursor atomicKey
		load := &cursorLoad{db: w.DB, chunk: chunk, maxID: rows, deleted: map[int64]bool{}, counts: map[string]int{}, cursor: cursor.get}
		lctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), 11))
				for lctx.Err() == nil {
					_ = load.step(lctx, w, r)
					time.Sleep(2 * time.Millisecond) // a steady application, not a flood
				}
			}()
		}
		defer func() { stop(); wg.Wait() }()

		logPath := filepath.Join(t.TempDir(), "cleave.log")
		for i := 0; i < kills; i++ {
			p := startRun(t, bin, w.Path, logPath)
			before := progress().Chunks
			testenv.Eventually(t, time.Minute, fmt.Sprintf("run %d to store 4 chunks", i+1), func() bool {
				if p.exited() {
					t.Fatalf("cleave run exited: %v\n%s", p.err, tail(logPath, 30))
				}
				pr := progress()
				cursor.set(pr)
				if pr.Done {
					t.Fatalf("the copy finished before kill %d: the test meant to kill it mid-copy", i+1)
				}
				return pr.Chunks >= before+4
			})
			if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-p.done
		}
		p := startRun(t, bin, w.Path, logPath)
		testenv.Eventually(t, 3*time.Minute, "the copy to finish", func() bool {
			if p.exited() {
				t.Fatalf("cleave run exited: %v\n%s", p.err, tail(logPath, 30))
			}
			pr := progress()
			cursor.set(pr)
			return pr.Done
		})
		stop()
		wg.Wait()
		w.waitEqual(t, nil, 3*time.Minute, "items")
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.done:
			if p.err != nil {
				t.Fatalf("cleave run did not exit 0 on SIGTERM: %v\n%s", p.err, tail(logPath, 20))
			}
		case <-time.After(time.Minute):
			t.Fatal("cleave run did not stop within a minute of SIGTERM")
		}

		// Which rows were copied at which snapshot, from the topic; what was stored when.
		final := progress()
		history := progressHistory(t, w.Env.KafkaBrokers, w.Prefix, table)
		type stored struct {
			at      uint64
			lastKey int64
		}
		var marks []stored
		for _, h := range history {
			file, pos, _ := strings.Cut(h.At, ":")
			if file == "" {
				continue
			}
			n, _ := strconv.ParseUint(pos, 10, 64)
			var k []json.Number
			if err := json.Unmarshal(h.LastKey, &k); err != nil || len(k) != 1 {
				t.Fatalf("stored key %s", h.LastKey)
			}
			id, _ := k[0].Int64()
			marks = append(marks, stored{coordOf(t, file, n), id})
		}
		snapshots := map[uint64]int{}
		copies := 0
		for _, r := range readTopic(t, w.Env.KafkaBrokers, kafkax.TableTopic(w.Prefix, w.DB, "items")) {
			if r.ev.Op != event.OpRead {
				continue
			}
			copies++
			at := coordOf(t, r.ev.Source.File, r.ev.Source.Pos)
			snapshots[at]++
			id, _ := r.ev.After["id"].(json.Number).Int64()
			for _, m := range marks {
				if m.at < at && id <= m.lastKey {
					t.Fatalf("row %d copied at a snapshot (%d) after the chunk holding it was stored (up to key %d, snapshot %d)", id, at, m.lastKey, m.at)
				}
			}
		}
		again := len(snapshots) - int(final.Chunks)
		t.Logf("%d kills; %d chunks stored, %d chunk copies in the topic (%d copied again, all in flight at a kill), %d rows copied in the topic for %d stored; load: %v",
			kills, final.Chunks, len(snapshots), again, copies, final.Rows, load.counts)
		if again < 0 || again > kills*6 {
			t.Errorf("%d chunks copied again over %d kills: more than the chunks a kill can catch in flight", again, kills)
		}
	})
}

// atomicKey holds the copy's cursor for the load.
type atomicKey struct {
	mu sync.Mutex
	id int64
}

func (a *atomicKey) set(p Progress) {
	var k []json.Number
	if json.Unmarshal(p.LastKey, &k) == nil && len(k) == 1 {
		id, _ := k[0].Int64()
		a.mu.Lock()
		a.id = id
		a.mu.Unlock()
	}
}

func (a *atomicKey) get() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}
