// Package reconcile owns cleave's checker: it proves that the shards hold exactly the rows
// of the source, chunk by chunk along the source's primary key, and names every row that
// differs.
//
// Per chunk it compares the row count and the exact sum of a 64-bit row hash (the first 8
// bytes of SHA1 over every column's NULL-marked text, computed in SQL identically on the
// source and the shards) with the sum over all shards for the same key range; each shard
// also counts the rows that routing says belong elsewhere. A mismatched chunk is bisected,
// then compared row by row (key and row hash), and each differing row is classified:
// missing, extra, wrong_shard, duplicate or changed (with the column names).
//
// Under live writes a difference may only be replication lag. Before calling a row drift the
// checker notes the source binlog position, waits until every shard's sink has applied past
// it (the applied_version in _cleave.offsets), and reads the row again on both sides, a few
// rounds with backoff. Rows still different are drift; rows whose source row kept changing,
// or whose sinks stayed behind, are reported in flight, never as drift.
//
// It never writes to the source. It writes to the shards only when asked to repair, and
// then only through version-guarded statements, so that a later real change still wins.
package reconcile
