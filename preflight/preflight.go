// Package preflight owns `cleave check`: it looks at the real source, shards and Kafka a
// configuration names and reports, one finding at a time, whether cleave can run against
// them, and if not, what exactly to change. It reads server settings, grants and table
// definitions, and proves that shards and Kafka accept writes; it never changes the
// source, and on shards and Kafka it only touches cleave's own scratch objects (an empty
// _cleave.check_write table on each shard, a <prefix>.cleave-check topic that it deletes
// again).
//
// Findings have three levels. FAIL means cleave would lose or misroute data, or cannot
// start: `cleave check` exits 1. WARN means cleave works, but an operator should know
// (for example, without GTIDs a failover of the source loses capture's position). OK is
// a requirement met, with what was seen.
package preflight

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/mysqlx"
)

// Status is the level of a finding.
type Status int

// The levels of a finding, in increasing severity.
const (
	OK Status = iota
	Warn
	Fail
)

// String returns "OK", "WARN" or "FAIL".
func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	case Fail:
		return "FAIL"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Finding is one requirement checked.
type Finding struct {
	// Check identifies the requirement, stable across releases: "source.binlog_format",
	// "table.shard_key", "shard.writable", ... Several findings may share one Check (one
	// per table or shard).
	Check string
	// Status is OK, Warn or Fail.
	Status Status
	// Subject says what was checked: "source binlog_format", "tables[1].shard_key",
	// "shards[0] shard0 127.0.0.1:3308".
	Subject string
	// Detail is what was seen (OK) or what is wrong and why it matters (Warn, Fail).
	Detail string
	// Fix says what to do; empty on OK findings.
	Fix string
}

// String renders the finding on one line: "FAIL <subject>: <detail>. Fix: <fix>".
func (f Finding) String() string {
	s := fmt.Sprintf("%-4s %s: %s", f.Status, f.Subject, f.Detail)
	if f.Fix != "" {
		s += ". Fix: " + f.Fix
	}
	return s
}

// Report holds the findings of one run, in the order they were checked.
type Report struct {
	Findings []Finding
}

// Count returns how many findings have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, f := range r.Findings {
		if f.Status == s {
			n++
		}
	}
	return n
}

// OK reports whether no finding failed.
func (r *Report) OK() bool { return r.Count(Fail) == 0 }

// Find returns the findings of the given check.
func (r *Report) Find(check string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

func (r *Report) ok(check, subject, detail string, args ...any) {
	r.add(Finding{Check: check, Status: OK, Subject: subject, Detail: fmt.Sprintf(detail, args...)})
}

func (r *Report) warn(check, subject, detail, fix string) {
	r.add(Finding{Check: check, Status: Warn, Subject: subject, Detail: detail, Fix: fix})
}

func (r *Report) fail(check, subject, detail, fix string) {
	r.add(Finding{Check: check, Status: Fail, Subject: subject, Detail: detail, Fix: fix})
}

// stepTimeout bounds each group of queries against one server, so that a server that
// accepts connections but never answers costs a bounded time, not a hung check.
const stepTimeout = 20 * time.Second

// Run checks everything cfg depends on and returns the findings. It does not stop at the
// first failure: an operator fixing a setup wants the whole list. Checks that depend on a
// server that could not be reached are left out (the reachability finding says why).
func Run(ctx context.Context, cfg *config.Config) Report {
	var r Report
	if err := cfg.Validate(); err != nil {
		r.fail("config", "config", err.Error(), "correct the keys named above")
		return r
	}
	r.ok("config", "config", "valid (%d shards, %d tables)", len(cfg.Shards), len(cfg.Tables))

	src := checkSource(ctx, &r, cfg)
	if src != nil {
		defer src.db.Close()
		checkTables(ctx, &r, cfg, src)
	}
	checkShards(ctx, &r, cfg, src)
	checkKafka(ctx, &r, cfg)
	return r
}

// server is an open connection to a MySQL/MariaDB server and what identifies it.
type server struct {
	db   *sql.DB
	vars map[string]string
	// fl is the server's product, told by its version: for what differs between them.
	fl mysqlx.Flavor
	// id distinguishes servers: two DSNs that reach one server (a shard configured on the
	// source) have the same id.
	id string
}
