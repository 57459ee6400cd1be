// Package reverse runs reverse replication, the rollback half of a migration: from the
// moment a cut-over switches the application's writes to the shards, every change made on
// a shard to a moved table flows back to the source, so the source stays a complete,
// current copy for as long as the rollback window lasts.
//
// Each shard gets a window of its own: a capture whose source is the shard, reading its
// binlog from the position the cut-over journaled with the switch (cutover.ReverseStart),
// into topics under a prefix of the cut-over and the shard (kafkax.ReversePrefix), and a
// sink in reverse mode that applies those topics to the source (sink.Reverse). Both are
// the ordinary parts
// of the forward path, so reverse changes get the same guarantees: nothing lost across
// crashes (capture's checkpoints, the sink's offsets stored in the source in the same
// transaction), per-row order (the row's primary key is its Kafka key), idempotent and
// version-checked apply.
//
// Design note: why nothing loops.
//
// Every apply transaction of a sink begins by moving its offsets in _cleave.offsets of the
// database it writes. Capture skips every transaction that writes that table (capture's
// own-apply skip): a forward sink's batch on a shard is not read back by the shard's
// reverse capture, and a reverse sink's batch on the source is not read forward again by
// the source's capture. The tag is in the same transaction as the rows it marks, so it is
// committed with them or not at all, on MariaDB and MySQL alike, with no server ids,
// GTID domains or replication filters to configure.
//
// Design note: why versions compare.
//
// A version is a position in one server's binlog; a shard's positions say nothing about
// the source's. The source's tables carry no version column (cleave does not alter the
// application's tables), so the reverse sink keeps each row's version in
// _cleave.row_versions on the source, paired with an epoch, the cut-over's id. No version
// the source produced itself is ever stored there: a row without an entry was last written
// by the source, before the switch, and any reverse change is newer. Every change of epoch
// E orders after those and after every change of an earlier epoch (a cut-over after a
// rollback has a higher id); within one epoch a row's changes all come from the one shard
// that holds it, whose binlog versions increase in commit order. So (epoch, version)
// orders every change a row can receive on the source.
//
// The limits: a row whose shard key moves it to another shard during the rollback window
// arrives as a delete from one shard and an insert from another, whose versions do not
// compare; schema changes made on a shard are not read back.
package reverse
