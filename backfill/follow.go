package backfill

import (
	"context"
	"time"
)

// Followed is one table's backfill as Follow sees it.
type Followed struct {
	Table string
	// Request is the id of the table's current request ("" for the first copy).
	Request string
	// Progress is the stored progress of the current request; nil until the copier has
	// stored its first chunk (or while no process runs the copier).
	Progress *Progress
	// RowsPerSecond is the copy's rate over the last minute as seen from the topic, 0 while
	// unknown; ETASeconds follows from it (nil while unknown, 0 when done).
	RowsPerSecond float64
	ETASeconds    *float64
}

// Done reports whether the current request's copy is done.
func (f *Followed) Done() bool { return f.Progress != nil && f.Progress.Done }

// Follow reads the backfill topic every interval and calls report with the state of each
// of tables, until every one of them is done (it returns nil) or ctx ends.
func Follow(ctx context.Context, store *Store, tables []string, interval time.Duration, report func([]Followed)) error {
	type sample struct {
		at   time.Time
		rows int64
	}
	history := map[string][]sample{}
	for {
		if _, err := store.Poll(ctx); err != nil {
			return err
		}
		st := store.State()
		now := time.Now()
		out := make([]Followed, 0, len(tables))
		done := true
		for _, t := range tables {
			f := Followed{Table: t, Request: st.RequestID(t)}
			if p := st.Current(t); p != nil {
				cp := *p
				f.Progress = &cp
			}
			if !f.Done() {
				done = false
			}
			if f.Progress != nil {
				h := append(history[t], sample{now, f.Progress.Rows})
				for len(h) > 1 && now.Sub(h[0].at) > time.Minute {
					h = h[1:]
				}
				if len(h) > 0 && h[len(h)-1].rows < h[0].rows {
					h = h[len(h)-1:] // a new request started over
				}
				history[t] = h
				if el := now.Sub(h[0].at).Seconds(); el > 0 && len(h) > 1 {
					f.RowsPerSecond = float64(h[len(h)-1].rows-h[0].rows) / el
				}
				switch {
				case f.Done():
					zero := 0.0
					f.ETASeconds = &zero
				case f.RowsPerSecond > 0:
					eta := float64(max(f.Progress.Estimate-f.Progress.Rows, 0)) / f.RowsPerSecond
					f.ETASeconds = &eta
				}
			}
			out = append(out, f)
		}
		report(out)
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
