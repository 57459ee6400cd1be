package backfill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/kafkax"
)

// Topic is the compacted topic that holds the backfill's progress and requests.
func Topic(prefix string) string { return prefix + ".backfill" }

// Record keys: compaction keeps the latest progress and the latest request of each table.
const (
	progressPrefix = "progress/"
	requestPrefix  = "request/"
)

// Progress is what the copier stores about one table after each acknowledged chunk.
type Progress struct {
	Table string `json:"table"`
	// Request is the id of the request this copy serves; empty for the copy every table
	// gets once without being asked.
	Request string `json:"request,omitempty"`
	// LastKey is the primary key of the last row copied, in event form (the message key's
	// JSON array): the next chunk starts after it. Null before the first chunk.
	LastKey json.RawMessage `json:"last_key,omitempty"`
	// At is the snapshot position of the last chunk stored (file:pos).
	At string `json:"at,omitempty"`
	// Rows and Chunks count what was copied and acknowledged for this request; rows left
	// out because the stream already carried a newer change of them count as copied.
	Rows   int64 `json:"rows"`
	Chunks int64 `json:"chunks"`
	// Estimate is the table's row count as the copy saw it (the server's estimate, at
	// least Rows), for progress ratios and ETAs.
	Estimate int64 `json:"estimate"`
	// Done: every row the table held at the last chunk's snapshot is copied.
	Done        bool  `json:"done"`
	StartedAtMs int64 `json:"started_at_ms"`
	UpdatedAtMs int64 `json:"updated_at_ms"`
}

// Ratio is the share of the table copied, 1 when done.
func (p *Progress) Ratio() float64 {
	if p.Done {
		return 1
	}
	if p.Estimate <= 0 {
		return 0
	}
	return min(float64(p.Rows)/float64(p.Estimate), 0.99)
}

// Request asks the copier to copy a table again from the start.
type Request struct {
	Table string `json:"table"`
	ID    string `json:"id"`
	AtMs  int64  `json:"at_ms"`
}

// State is the content of the topic: the latest progress and request of each table.
type State struct {
	Progress map[string]*Progress
	Requests map[string]*Request
}

// RequestID returns the id of the latest request for table, or "".
func (s *State) RequestID(table string) string {
	if r := s.Requests[table]; r != nil {
		return r.ID
	}
	return ""
}

// Current returns the progress of table's current request, or nil when that copy has not
// stored anything yet.
func (s *State) Current(table string) *Progress {
	p := s.Progress[table]
	if p == nil || p.Request != s.RequestID(table) {
		return nil
	}
	return p
}

// Store reads and writes the backfill topic: one partition, compacted, written with acks
// from every in-sync replica. It is safe for concurrent use; Poll runs on one goroutine
// at a time.
type Store struct {
	brokers []string
	topic   string
	rf      int
	w       *kafka.Writer

	next int64 // offset of the next record to read; Poll's

	mu    sync.Mutex
	state State
}

// NewStore returns the store of the deployment with topic prefix prefix.
func NewStore(brokers []string, prefix string, replicationFactor int) *Store {
	topic := Topic(prefix)
	return &Store{
		brokers: brokers,
		topic:   topic,
		rf:      replicationFactor,
		w:       kafkax.NewStateWriter(brokers, topic),
		state:   State{Progress: map[string]*Progress{}, Requests: map[string]*Request{}},
	}
}

// Topic is the store's topic.
func (s *Store) Topic() string { return s.topic }

// Ensure creates the topic when it does not exist. Segments roll every hour so that
// compaction keeps the topic small: a progress record is written per chunk.
func (s *Store) Ensure(ctx context.Context) error {
	err := kafkax.EnsureTopics(ctx, s.brokers, []kafkax.Topic{{
		Name:              s.topic,
		Partitions:        1,
		ReplicationFactor: s.rf,
		Configs: map[string]string{
			"cleanup.policy":        "compact",
			"min.compaction.lag.ms": "0",
			"segment.ms":            "3600000",
		},
	}})
	if err != nil {
		return fmt.Errorf("create backfill topic %s: %w", s.topic, err)
	}
	return nil
}

// State returns a copy of the state read and written so far (call Poll first).
func (s *Store) State() *State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &State{Progress: make(map[string]*Progress, len(s.state.Progress)), Requests: make(map[string]*Request, len(s.state.Requests))}
	for k, v := range s.state.Progress {
		st.Progress[k] = v
	}
	for k, v := range s.state.Requests {
		st.Requests[k] = v
	}
	return st
}

// Poll reads the records written since the last Poll (all of them the first time) into
// the state, and reports whether anything changed.
func (s *Store) Poll(ctx context.Context) (bool, error) {
	changed := false
	err := kafkax.RetryTemporary(ctx, pollRetryTime, func() error {
		var errs []error
		for _, b := range s.brokers {
			c, err := s.pollFrom(ctx, b)
			changed = changed || c
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return fmt.Errorf("read backfill topic %s: %w", s.topic, errors.Join(errs...))
	})
	return changed, err
}

// pollRetryTime bounds how long Poll retries temporary Kafka errors, such as a partition
// whose leader is still being elected right after the topic was created.
const pollRetryTime = 30 * time.Second

func (s *Store) pollFrom(ctx context.Context, broker string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", broker, s.topic, 0)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return false, err
	}
	if s.next < first {
		s.next = first
	}
	changed := false
	for s.next < last {
		if _, err := conn.Seek(s.next, kafka.SeekAbsolute); err != nil {
			return changed, err
		}
		batch := conn.ReadBatch(1, 16<<20)
		read := false
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			read = true
			s.next = m.Offset + 1
			if err := s.apply(m); err != nil {
				batch.Close()
				return changed, err
			}
			changed = true
		}
		if err := batch.Close(); err != nil {
			return changed, err
		}
		if !read {
			// Only compacted-away offsets or control records up to last: nothing to read.
			break
		}
	}
	return changed, nil
}

func (s *Store) apply(m kafka.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := string(m.Key)
	switch {
	case strings.HasPrefix(key, progressPrefix):
		table := key[len(progressPrefix):]
		if m.Value == nil {
			delete(s.state.Progress, table)
			return nil
		}
		var p Progress
		if err := json.Unmarshal(m.Value, &p); err != nil {
			return fmt.Errorf("progress of %s at offset %d is not valid JSON (%q): %w", table, m.Offset, m.Value, err)
		}
		// Within a request progress only moves forward; a record read back after the
		// copier stored a newer one (Poll beside SaveProgress) must not move it back.
		if cur := s.state.Progress[table]; cur != nil && cur.Request == p.Request && (cur.Done || cur.Chunks > p.Chunks) {
			return nil
		}
		s.state.Progress[table] = &p
	case strings.HasPrefix(key, requestPrefix):
		table := key[len(requestPrefix):]
		if m.Value == nil {
			delete(s.state.Requests, table)
			return nil
		}
		var r Request
		if err := json.Unmarshal(m.Value, &r); err != nil {
			return fmt.Errorf("request for %s at offset %d is not valid JSON (%q): %w", table, m.Offset, m.Value, err)
		}
		s.state.Requests[table] = &r
	}
	return nil
}

// SaveProgress writes p and returns once every in-sync replica has it.
func (s *Store) SaveProgress(ctx context.Context, p Progress) error {
	p.UpdatedAtMs = time.Now().UnixMilli()
	val, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.w.WriteMessages(ctx, kafka.Message{Key: []byte(progressPrefix + p.Table), Value: val}); err != nil {
		return fmt.Errorf("store backfill progress of %s in topic %s: %w", p.Table, s.topic, err)
	}
	cp := p
	s.mu.Lock()
	s.state.Progress[p.Table] = &cp
	s.mu.Unlock()
	return nil
}

// RequestCopy asks for table to be copied again from the start and returns the request.
func (s *Store) RequestCopy(ctx context.Context, table string) (*Request, error) {
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	r := Request{Table: table, ID: time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id), AtMs: time.Now().UnixMilli()}
	val, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if err := s.w.WriteMessages(ctx, kafka.Message{Key: []byte(requestPrefix + table), Value: val}); err != nil {
		return nil, fmt.Errorf("store backfill request for %s in topic %s: %w", table, s.topic, err)
	}
	s.mu.Lock()
	s.state.Requests[table] = &r
	s.mu.Unlock()
	return &r, nil
}

// Close releases the store's producer.
func (s *Store) Close() error { return s.w.Close() }
