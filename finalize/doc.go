// Package finalize owns the last step of a migration: after the cut-over is done, it removes
// cleave's bookkeeping from the shards so that they are plain databases: the version column
// _cleave_version that `cleave prepare` added to every shard table whose configuration
// names no version_column, the deployment's rows in the shards' _cleave database (and the
// database itself once no other deployment keeps anything there) and, when asked, the
// deployment's Kafka topics. It never writes a row of an application table, never touches
// the source's tables (their guard triggers stay: the source's copy of a moved table is a
// frozen copy that refuses writes) and never removes the source's cut-over journal, which
// is the record of the migration.
//
// Design note: gate, plan, act; each step safe to repeat.
//
// Finalize first reads the cut-over journal on the source: without a done cut-over of the
// topic prefix nothing else happens. It then plans by looking at what is still there (a
// version column, a _cleave database, rows of the deployment's consumer groups, topics),
// so a second run, or a run after one that died half-way, plans only what is left; with
// nothing left it says so and stops. Before it acts on a plan it proves that nothing is
// unverified: no sink runs (the shards' offsets rows of the deployment's groups are
// idle, and the Kafka consumer groups have no members), and a reconcile of every table,
// run by finalize itself, finds the shards consistent with the source, no row drifted and
// none in flight. Once the version column is gone the sinks can no longer apply a change,
// so the check is the last one that can still be repaired by cleave. Without Options.Apply
// it is a dry run: every check runs and every statement is reported, nothing changes.
//
// A shard's _cleave database may hold the bookkeeping of other deployments (another topic
// prefix migrating into the same shard servers): finalize deletes only the rows of its own
// consumer groups and tables, and drops the database only when nothing else is left in it.
//
// Reverse replication (the shards' changes applied back to the source, for a rollback)
// does not exist yet. When it does, finalize stops it first and removes what it keeps:
// see stopReverse in plan.go, the one place for it.
package finalize
