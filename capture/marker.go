package capture

import (
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/shardmeta"
)

// Design note: the cut-over journal is an in-band marker.
//
// The cut-over fences writes on the source, writes a row to the journal (_cleave.cutover
// on the source), reads the source's binlog position and waits until every sink's
// applied_version has passed it. A sink's applied_version moves with the events and the
// heartbeats of its partitions; on a fenced source no configured table changes, so only a
// heartbeat can move it, and a scheduled one comes up to capture.heartbeat_interval later.
// The journal write is in the binlog, in order with everything else, so capture reacts to
// it: a transaction that wrote the journal ends with a heartbeat on every partition of
// every table topic, at its commit, carrying the version of that boundary. That is what a
// scheduled heartbeat at the same boundary would carry, so sinks need nothing new, and on
// an idle source it is exactly the version of the position read right after the commit.
//
// Cheap: the journal is not a configured table, so its rows are never decoded
// (rowsdecode.go) and its rows events end at the ignored-table check. The only cost is a
// name compare on each table map event, which the reader receives anyway; nothing per row.
// A table map of the journal is taken as a write to it: a statement logs the maps of the
// tables it writes to, and a heartbeat too many is harmless.
//
// Acknowledged prefix: the heartbeats are added before the producer records the commit
// boundary, so they belong to the chunk that boundary closes. The safe position (and so
// the checkpoint) passes the journal's transaction only once Kafka has acknowledged them;
// a restart before that reads the transaction again and sends them again. The boundary
// flushes the chunk at once, since it holds messages, and the writer's batch timeout is a
// few milliseconds: the heartbeats leave as soon as the commit is read. They count as the
// scheduled heartbeat, whose clock restarts.
//
// Backfill: chunks are woven only between transactions, so never between the journal's
// rows and its heartbeats; a chunk woven after them carries the version of its snapshot,
// at or below the stream's position, as after any scheduled heartbeat.

// isJournal reports whether a table map names the cut-over journal. Names compare as
// capture compares configured tables: exactly.
func isJournal(tm *replication.TableMapEvent) bool {
	return string(tm.Table) == shardmeta.Cutover && string(tm.Schema) == shardmeta.Database
}

// journalHeartbeat writes a heartbeat at p, the boundary of a transaction that wrote the
// journal, to every partition of every table topic. The caller records p as the boundary
// right after, which flushes them.
func (r *reader) journalHeartbeat(h *replication.EventHeader, p Position) error {
	now := time.Now()
	r.nextHeartbeat = now.Add(r.c.cfg.Capture.HeartbeatInterval)
	if err := r.heartbeat(now, p); err != nil {
		return err
	}
	r.c.log.Info("cut-over journal written: heartbeat on every partition", zap.String("position", r.pos(h)), zap.Stringer("boundary", p))
	return nil
}
