package capture

import (
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/shardmeta"
)

// Design note: cleave's own applies are not captured.
//
// With reverse replication a server is both a sink's target and a capture's source: after
// a cut-over each shard's binlog is captured and applied back to the monolith, while the
// forward sinks may still apply to the shards. Were capture to stream the rows a sink
// applied, each change would go around: monolith, shard, monolith, shard... So capture
// leaves out every transaction that a sink committed.
//
// The tag is the sink's own bookkeeping. Every apply transaction of a sink (sink/apply.go,
// writeOffsets) begins with an UPDATE of _cleave.offsets (shardmeta.Database,
// shardmeta.Offsets), in the same transaction as the rows it applies, and that UPDATE
// always changes a row (offsets only grow; an UPDATE that matches fewer rows fences the
// batch off and rolls it back). In row format a statement logs the table maps of the
// tables it changes before its rows, so the first table map of such a transaction names
// _cleave.offsets. The rule:
//
//	A transaction whose first table map names _cleave.offsets is cleave's own apply: none
//	of its row changes is emitted.
//
// Why this tag rather than the server ids or GTIDs of the applier's session: it needs
// nothing of the servers (no server_id per applier, no GTID tags, which MariaDB lacks and
// MySQL only has from 8.4), it reads the same on MariaDB and MySQL, and being a row of the
// transaction itself it cannot be lost or separated from the rows it tags: a transaction
// is in the binlog whole or not at all. Both directions are covered by the one rule: a
// forward sink's apply on a shard is skipped by the reverse capture of that shard, and a
// reverse sink's apply on the monolith by the forward capture of the monolith, so nothing
// loops.
//
// Only the first table map counts. A transaction that changed any other table before it
// wrote _cleave.offsets is not a sink's (a sink writes the offsets first) but someone's by
// hand: it is captured whole, with a warning, rather than cut in two at the offsets write.
//
// A skipped transaction is still a transaction for everything but its rows: its commit is
// a boundary like any other, so positions, checkpoints and heartbeats advance through it,
// and a cut-over journal write in it still ends it with a heartbeat (marker.go).
// Compressed transactions need nothing of their own: the events of a MySQL
// Transaction_payload pass through handle one by one (compressed.go), their table maps
// too, and MariaDB compresses rows events, never table maps. Skipped rows are dropped
// before they would be collected for a net emission.
//
// Cost: a name compare on the first table map of each transaction, nothing per row.

// isOwnApplyTag reports whether a table map names the sinks' offsets table, the tag of
// cleave's own apply transactions. Names compare as capture compares configured tables:
// exactly.
func isOwnApplyTag(tm *replication.TableMapEvent) bool {
	return string(tm.Table) == shardmeta.Offsets && string(tm.Schema) == shardmeta.Database
}

// tableMap notes a table map of the group being read: whether it is the group's first and
// tags it as cleave's own apply (see the design note).
func (r *reader) tableMap(h *replication.EventHeader, tm *replication.TableMapEvent) {
	first := !r.grp.mapped
	r.grp.mapped = true
	if !isOwnApplyTag(tm) || r.grp.ownApply {
		return
	}
	if first {
		r.grp.ownApply = true
		return
	}
	if !r.grp.lateTag {
		r.grp.lateTag = true
		r.c.log.Warn("a transaction wrote "+shardmeta.Database+"."+shardmeta.Offsets+" after other tables: not a sink's apply (a sink writes its offsets first), so it is captured whole",
			zap.String("position", r.pos(h)))
	}
}

// endOwnApply counts the own apply transaction that ends at the event with header h.
func (r *reader) endOwnApply(h *replication.EventHeader, g group) {
	r.c.metrics.ownApplySkipped.Inc()
	r.c.log.Debug("own apply transaction skipped", zap.String("position", r.pos(h)), zap.Int("row_changes", g.skippedRows))
}
