// Package sink owns the apply side of one shard: a member of the shard's consumer group
// (<prefix>.sink.<shard>) that reads the change events of every table topic, keeps the rows
// the router gives to its shard, and writes them to the shard in batches, each batch one
// shard transaction that also stores the Kafka offsets that produced it. It never writes to
// another shard, never writes a row without its version guard, and never drops an event
// without recording and counting it.
//
// # Exactly-once effect
//
// The shard's _cleave.offsets table is the truth about progress: on every assignment a
// partition resumes from the next_offset stored there (falling back to the group's Kafka
// commit, then to the partition's first offset), and a batch's rows and its offsets commit
// or roll back together. Kafka commits happen after the shard commit, only so that
// standard lag tools see progress.
//
// Two members can briefly both believe they own a partition (a member that outlived its
// session, a rebalance racing a slow batch). The first statement of every batch therefore
// moves its partitions' stored offsets with an UPDATE that only matches rows still at the
// offsets this member started from, and holds their locks until the commit. If another
// member has moved one, fewer rows change: the batch rolls back and the member re-reads
// its partitions from the shard. So at most one applier's batch commits per stored
// position, whatever the group protocol does. The same check settles a commit whose
// outcome was lost with its connection: the retry finds the offsets moved and re-reads.
//
// Within a member, the assigned partitions are dealt to lanes (Options.Lanes), each a
// pipeline of its own: readers, a planner that decodes, routes and collapses the next
// batch while the applier writes this one, and the applier on its own shard session. A
// partition stays in one lane, so the changes of a row keep their order.
//
// # Version guard, and why deletes need no tombstone
//
// Every row carries the version of the change that wrote it (the bookkeeping column
// _cleave_version, or the table's version_column). An upsert replaces a row only with a
// newer version; a delete removes a row only if it holds an older one. Within a batch the
// changes of one row collapse to the newest, and all upserts run before all deletes, so a
// batch has the same effect as its changes applied one by one.
//
// A delete leaves nothing behind, so a replayed older insert of a deleted row finds no row
// and inserts it again. That is safe because replay only ever covers a suffix of the
// partition, in order: the insert's own later delete (or update) is in the same suffix and
// is replayed after it, and the row ends as the last change left it. The row is briefly
// back during the replay; the final state of the shard is the same as after one clean pass.
// What must never happen is an applier committing an old batch after another applier moved
// past it, which is what the offsets fencing above prevents.
//
// # Reverse replication
//
// After a cut-over, a rollback must find the monolith holding what the shards took
// meanwhile. Each shard's binlog is then captured (a capture whose source is the shard)
// into topics of their own, and a sink with Options.Reverse applies those changes back to
// the monolith: the configuration it is given names the monolith as its shard. What
// differs from a shard's sink:
//
//   - Nothing is routed: every event on the reverse topics belongs to the monolith.
//   - The applier's session, like every sink's, sets @cleave_apply = 1, which the guard
//     triggers cut-over installed on the moved tables let through (every other writer is
//     refused).
//   - The monolith's tables are the application's and have no version column (cleave
//     never alters them). Each row's version lives instead in _cleave.row_versions, keyed
//     by (db, tbl, row_key), row_key being the primary key in a canonical, length-prefixed
//     encoding (at most shardmeta.RowKeyMax bytes; a longer key is refused with an error
//     naming the table). A table's own version_column is an ordinary column here:
//     row_versions orders its changes too, since the column's values need not grow
//     across shards and epochs.
//   - Rows are applied one by one, a table's in stream order, in the batch's transaction,
//     after its offsets (the first statement, as always: the write to _cleave.offsets is
//     also the tag by which the monolith's own capture knows this transaction for cleave's
//     and skips it). For each row: a locking read of its (epoch, version); the change is
//     skipped as stale unless its own pair is greater (compared as pairs, epoch first);
//     otherwise the row is upserted (every column the change carries) or deleted by
//     primary key, and its pair stored. A delete keeps its entry, a tombstone, so that a
//     replayed older insert cannot bring the row back; replay from the monolith's stored
//     offsets leaves it as it was. (On a shard a delete leaves nothing to compare with,
//     and a replay brings the row back until its delete is replayed too; here the entry
//     outlives the row at no cost, so not even briefly, on a monolith the application may
//     return to at any time.)
//   - Schema changes from the shards are not applied: the monolith's schema is the
//     application's, and every shard would send the same change. The partition moves past
//     the change, the table's definition is read again from the monolith, and a row that
//     no longer fits it stops the sink with the error that names the column (the
//     bookkeeping column _cleave_version of the shards' rows is dropped silently).
//
// Why (epoch, version) orders the changes of a row, with Reverse.Epoch the cut-over's id:
// versions written by the monolith itself never enter row_versions, and a row without an
// entry takes any reverse change, because every reverse change of a cut-over happened on
// a shard after its switch, so after every write the monolith made to that row before it.
// Every reverse change of epoch E also orders after all changes of earlier epochs: a
// later cut-over happens after the earlier one's rollback, whatever the shards' binlog
// positions (which may have started anew). Within an epoch, the changes of a row come from
// one shard's binlog, where versions grow in commit order (event.Version).
//
// The limit of that argument: a row whose shard key moves it to another shard during the
// rollback window arrives as a delete from one shard and an insert from another, whose
// versions come from two binlogs and do not compare. Which of the two the monolith keeps
// depends on the two shards' positions, not on the order of the changes, so the row may
// end missing from the monolith: the application should not move rows between shards
// while a rollback may follow, and a reconcile of the monolith against the shards after
// the rollback names the rows to fix.
// The monolith's foreign keys are not checked by the reverse applier's session: tables of
// different topics arrive each in its own order, so a child row may come before its
// parent; the shards, where the constraints held, are the truth the monolith converges to
// once every topic is applied. Each row costs three statements (read, write, store),
// so a reverse sink applies fewer rows per second than a shard's.
//
// # Schema changes
//
// A DDL event (op "s") is applied once per shard: the shard records it in
// _cleave.applied_ddl by (db, table, version) and skips it when it is already there. It runs
// between batches, never inside one (DDL commits implicitly). Capture sends a table's DDL to
// every partition of its topic, and partitions are consumed independently, so a partition
// that is behind can still hold row events of the old schema after another partition has
// applied the change: those events write only the columns that exist on the shard, and a
// column the shard no longer has is dropped from them only when a recorded DDL of that
// table is newer than the event. Any other missing column stops the sink.
package sink
