// Package backfill copies the rows that exist in the configured tables into the change
// stream, while the source keeps writing: in chunks along the primary key, each chunk read
// inside a short consistent snapshot whose binlog position is known exactly, as op "r"
// events that capture weaves into the table's topic (capture.Weave). The sinks apply them
// like any other event. It never locks a table for longer than a few milliseconds, never
// holds a snapshot open for longer than one chunk, never writes to the source, and never
// stores progress for a chunk before Kafka has acknowledged its rows.
//
// # Why a copied row never overwrites a newer change
//
// For one chunk of table T:
//
//  1. capture.WatchTable opens a watch on T: capture's reader records, from now on, each
//     key of T it emits with its version. The watch also notes the version of the last
//     row capture had emitted when it opened (from).
//  2. A snapshot is taken at binlog position P, exactly:
//     on MariaDB, START TRANSACTION WITH CONSISTENT SNAPSHOT and then the status variables
//     binlog_snapshot_file / binlog_snapshot_position, which MariaDB defines as the binlog
//     position of that very snapshot (no lock at all);
//     on MySQL, which has no such variable (the source's mysqlx.Flavor tells), the way
//     Vitess' row streamer does it: a second connection holds LOCK TABLES T READ
//     (lock_wait_timeout 1 s) while the position is read with SHOW BINARY LOG STATUS
//     and the snapshot is started, then unlocks: writes to T wait a
//     few milliseconds, and since none can commit in between, T at the snapshot equals T at P.
//     A snapshot with P below the watch's from is refused and taken again a moment later.
//     This is not hypothetical: MariaDB and MySQL write a transaction to the binlog, and
//     send it to replicas, before the engine makes it visible, so capture can emit a change
//     that a snapshot taken just after does not see (its P lies before the change). With
//     P >= from, every change after P was emitted after the watch opened and is recorded.
//  3. The chunk is SELECTed in that snapshot: the rows after the last key copied, in key
//     order, at most backfill.chunk_size of them. It is exactly T's content at P for the key
//     range (last key, last row read] (all of it above the last key when fewer rows came
//     back: the copy is complete).
//  4. Each row becomes an op "r" event with version(P) (event.NewVersion of P, row 0) and
//     the message key capture gives the row. Every binlog change at or before P has a lower
//     version (it lies before P), every change after P a higher one (P is a transaction
//     boundary; the first row event after it starts after it).
//  5. Capture puts the rows into the stream between two transactions, once its reader has
//     read past P, and leaves out every row whose key it emitted a change for after P.
//
// So for each key k of the chunk, the partition of k holds, in order: k's changes at or
// before P (all read before the weaving point), then either the copy of k at P (no change
// of k after P was emitted yet) followed by k's changes after P, or — when a change after
// P was already emitted — that change and the later ones, without the copy. In the first
// case the sequence is exactly k's history cut at P; in the second the stream holds a full
// row image (or the delete) newer than P, so the copy adds nothing, and leaving it out is
// what keeps a row deleted after P from coming back (a delete leaves no tombstone on the
// shard, so a late copy would insert it again). The shards' version guard is a second line
// of defence, not the argument: a copy is never older than a change before it for its key.
//
// A key absent from the snapshot needs nothing: its state at P is "no row", and every
// change after P is streamed. Key ranges of successive chunks are adjacent and the last
// one is open above, so every key lies in exactly one chunk.
//
// Capture must stream from a position at or before every P: the copier takes its first
// snapshot only after capture's first session streams (capture.WaitStreaming), and capture
// resumes after a restart from its acknowledged position, never later.
//
// # Resuming
//
// Progress (the last key copied, rows, chunks, done) is stored per table in the compacted
// topic <prefix>.backfill, and only after Kafka has acknowledged the chunk's rows and
// everything before them in the stream (capture's Ticket). A crash loses at most the chunks
// in flight, which are copied again at a new snapshot: the repeat is correct by the
// argument above (it is just another chunk, at a later P), and a chunk whose progress is
// stored is never copied again. Capture's own checkpoint may lag behind a stored chunk;
// after a restart capture re-emits changes from its checkpoint, some of them older than
// the copied rows: those are stale for the sinks' version guard (upserts skipped, deletes
// guarded by version < copy's version), and the copy already reflects them.
//
// # Requests
//
// `cleave backfill --table t` does not copy anything itself: it writes a request (a new id)
// for t to the same topic and follows the progress. The copier in the process that runs
// capture (`cleave run`) sees the request, abandons what it had for t and copies t again
// from the start under the new id; re-copying is safe for the same reason as resuming.
// A configured table without stored progress for its current request is copied when the
// process starts: a table added to the configuration is copied while the others stream.
package backfill
