// Package cutover owns the end of a migration's forward half: the fenced switch of the
// application's writes to the moved tables from the source to the shards. It never copies
// rows (capture and the sinks do) and never decides drift (reconcile does): it gates on
// them, fences the source, reads the fact that everything is applied from the stream, asks
// the checker to verify what changed, and records each step in a journal on the source.
//
// Design note: one session, one journal, one point of no return.
//
// Everything that must be atomic with the fence happens on a single source connection, the
// control session:
//
//   - it holds GET_LOCK(<prefix's lock>) for the whole run, so two cut-overs of one topic
//     prefix never run at once, and a later process learns that the holder is gone when the
//     lock is free (the server frees it when the session ends: kill -9, network loss);
//   - it writes every journal row (_cleave.cutover) before the step the row names acts;
//   - it fences with LOCK TABLES <moved tables> READ, _cleave.cutover WRITE,
//     _cleave.guard WRITE. Writers of the moved tables wait (their statement blocks on the
//     table's metadata lock, up to their lock_wait_timeout); readers go on. Taking the lock
//     waits for open transactions that wrote a moved table, so once it is held every write
//     to them is committed and in the binlog;
//   - under the fence it writes the journal (the in-band marker: capture sends a heartbeat
//     right after every journal transaction) and reads the binlog position P after it. A
//     sink whose applied version on a partition reaches version(P) has read that partition's
//     stream past the marker, so "drained" is read from the stream, not estimated from lag;
//   - the switch is one transaction on it: the guard rows of the moved tables plus the
//     journal's state "switched". Its commit is the point of no return. The guard triggers
//     (installed before the fence, inert while the guard table is empty) then refuse every
//     write to a moved table on the source, so a stray write fails loudly instead of being
//     lost; releasing the fence lets the waiting writers through to that refusal.
//
// The session's wait_timeout is set to the write-pause limit (rounded up) while it fences, so
// the server itself ends the fence if cleave hangs; the switch, needing that session, then
// cannot commit. Any failure before the commit ends the session (or unlocks), drops the
// triggers and journals "aborted": the source took every write it was given, nothing moved.
//
// Resolution after a crash reads the journal under the lock. A run whose last state is
// before "switched" died with its session, so its fence is gone: it is resolved to aborted
// (triggers dropped). A run at "switched" is past the point of no return whatever happened
// after: it is resolved forward (the hook is called again until acknowledged, then "done").
// The journal is the only truth, also for a commit whose acknowledgement was lost.
package cutover
