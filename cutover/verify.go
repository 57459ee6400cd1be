package cutover

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/reconcile"
)

// verify re-checks, table by table, the rows whose changes lie between the Kafka offsets
// from and to of the table's topics, plus the rows carried over from the previous round.
// Under the fence a row that is not proven equal fails the attempt; under live writes a
// row in flight (still changing, or its sink behind) is carried into the next round, which
// ends under the fence. A rollback's rounds under live writes also carry the rows that
// differ: the checker's re-check waits for the forward sinks, while the rows a rollback
// verifies come back through the reverse ones, so only the round under the fence, with
// nothing in flight, may call a row drift. It returns how many rows it checked.
func (c *Cutover) verify(ctx context.Context, from, to map[string][]int64, carry map[string][][]byte, fenced bool) (int, map[string][][]byte, error) {
	total := 0
	left := map[string][][]byte{}
	for _, t := range c.tables {
		seen := map[string]bool{}
		var keys [][]byte
		add := func(k []byte) {
			if !seen[string(k)] {
				seen[string(k)] = true
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for _, k := range carry[t] {
			add(k)
		}
		for _, topic := range c.verifyTopics[t] {
			if err := kafkax.ReadKeys(ctx, c.cfg.Kafka.Brokers, topic, from[topic], to[topic], func(_ int, key []byte) error {
				add(key)
				return nil
			}); err != nil {
				return total, nil, fmt.Errorf("verify: read the changed keys of %s: %w", t, err)
			}
		}
		if len(keys) == 0 {
			continue
		}
		total += len(keys)
		tr, err := c.check.CheckKeys(ctx, t, keys)
		if err != nil {
			return total, nil, fmt.Errorf("verify %s: %w", t, err)
		}
		if tr.Error != "" {
			return total, nil, fmt.Errorf("verify %s: %s", t, tr.Error)
		}
		if len(tr.Drift) > 0 && c.rollingBack && !fenced {
			for _, d := range tr.Drift {
				k, err := json.Marshal(d.Key)
				if err != nil {
					return total, nil, fmt.Errorf("carry a differing row of %s: %w", t, err)
				}
				left[t] = append(left[t], k)
			}
			tr.Drift = nil
		}
		if len(tr.Drift) > 0 {
			var rows []string
			for i, d := range tr.Drift {
				if i == 5 {
					rows = append(rows, fmt.Sprintf("and %d more", len(tr.Drift)-5))
					break
				}
				k, _ := json.Marshal(d.Key)
				rows = append(rows, fmt.Sprintf("%s %s on %s", d.Kind, k, d.Shard))
			}
			return total, nil, fmt.Errorf("verify: %d rows of %s differ between the source and the shards (%s): find out why (`cleave reconcile --table %s`), repair, and run the cut-over again",
				len(tr.Drift), t, strings.Join(rows, ", "), t)
		}
		if len(tr.InFlight) > 0 {
			if fenced {
				return total, nil, fmt.Errorf("verify under the fence: %d rows of %s could not be proven equal (%s): nothing switched", len(tr.InFlight), t, tr.InFlight[0].Reason)
			}
			keys, err := inFlightKeys(tr)
			if err != nil {
				return total, nil, err
			}
			left[t] = append(left[t], keys...)
		}
	}
	return total, left, nil
}

// inFlightKeys are the message keys of the rows a check left in flight, to be verified
// again.
func inFlightKeys(tr *reconcile.TableReport) ([][]byte, error) {
	var keys [][]byte
	for _, r := range tr.InFlight {
		k, err := json.Marshal(r.Key)
		if err != nil {
			return nil, fmt.Errorf("carry a row in flight of %s: %w", tr.Table, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}
