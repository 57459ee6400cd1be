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
