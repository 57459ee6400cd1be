package cutover

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// SwitchNotice is what the switch hook receives (the webhook's POST body, the command's
// standard input). It is sent after the point of no return: the moved tables refuse writes
// on the source from then on, and the application must write them to the shards. The same
// notice may arrive more than once for one cut-over (cleave died before it recorded the
// acknowledgement); the application must treat a repeat of an id it has done as done.
type SwitchNotice struct {
	// Event is "switched" (a cut-over: write the moved tables to the shards) or
	// "rolled_back" (a rollback: write them to the source again).
	Event string `json:"event"`
	// CutoverID identifies the cut-over; repeats carry the same id.
	CutoverID   uint64 `json:"cutover_id"`
	TopicPrefix string `json:"topic_prefix"`
	// Tables are the moved tables (db.table); Shards the shards' names, in configuration
	// order.
	Tables []string `json:"tables"`
	Shards []string `json:"shards"`
	// SourcePosition is the source's binlog position at the fence: every change before it
	// is on the shards.
	SourcePosition *Position `json:"source_position"`
	// ShardPositions are, for a rollback, each shard's binlog position at its fence: every
	// change before them is on the source.
	ShardPositions map[string]*Position `json:"shard_positions,omitempty"`
	SwitchedAt     time.Time            `json:"switched_at"`
}

// hook calls the application's switch hook: the webhook, the command, or both.
type hook struct {
	url     string
	command string
	client  *http.Client
}

// call delivers the notice once to each configured hook; every one must acknowledge.
func (h *hook) call(ctx context.Context, n *SwitchNotice) error {
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if h.url != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("switch webhook %s: %w", h.url, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "cleave-cutover-"+strconv.FormatUint(n.CutoverID, 10))
		resp, err := h.client.Do(req)
		if err != nil {
			return fmt.Errorf("switch webhook %s: %w", h.url, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("switch webhook %s answered %s: %s (a 2xx answer acknowledges the switch)", h.url, resp.Status, strings.TrimSpace(string(msg)))
		}
	}
	if h.command != "" {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", h.command)
		cmd.Stdin = bytes.NewReader(body)
		cmd.Env = append(os.Environ(),
			"CLEAVE_CUTOVER_EVENT="+n.Event,
			"CLEAVE_CUTOVER_ID="+strconv.FormatUint(n.CutoverID, 10),
			"CLEAVE_CUTOVER_TABLES="+strings.Join(n.Tables, ","),
			"CLEAVE_CUTOVER_SHARDS="+strings.Join(n.Shards, ","))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("switch command %q: %w: %s (exit status 0 acknowledges the switch)", h.command, err, lastLine(out))
		}
	}
	return nil
}

// deliver calls the hook until it acknowledges or timeout passes, with exponential backoff
// and jitter between attempts; attempts counts every call made.
func (h *hook) deliver(ctx context.Context, n *SwitchNotice, timeout time.Duration, attempts *int) error {
	deadline := time.Now().Add(timeout)
	wait := 200 * time.Millisecond
	for {
		*attempts++
		err := h.call(ctx, n)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%w (gave up after %d attempts in %s: run `cleave cutover` again to retry)", err, *attempts, timeout)
		}
		jitter := time.Duration(rand.Int64N(int64(wait) / 2))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait + jitter):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
