package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
)

// leastSchema is the source database of the least-privilege tests.
const leastSchema = `
CREATE DATABASE shop;
CREATE TABLE shop.users (id BIGINT NOT NULL PRIMARY KEY, email VARCHAR(100) NOT NULL, created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));
CREATE TABLE shop.orders (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, total DECIMAL(12,2) NOT NULL, KEY (user_id));
CREATE TABLE shop.countries (code CHAR(2) NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL);
INSERT INTO shop.countries VALUES ('DE', 'Germany'), ('FR', 'France'), ('NL', 'Netherlands');
`

// leastGrants are the grants the README documents for the least-privilege users of a
// flavor ("... TO <user>"): on the source, the user capture, the backfill and reconcile read
// it with; on the shards, the user prepare, the sinks and a repair write them with.
type leastGrants struct {
	source, shard []string
}

// documentedGrants reads them from the README's Grants section: the test creates its users
// from the very statements an operator copies.
func documentedGrants(t *testing.T, f testenv.Flavor) leastGrants {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## Grants\n")
	if start < 0 {
		t.Fatal("README.md has no Grants section")
	}
	section := text[start+1:]
	if end := strings.Index(section[len("## Grants"):], "\n## "); end >= 0 {
		section = section[:len("## Grants")+end]
	}
	heading := "\n### MariaDB"
	if f == testenv.MySQLFlavor {
		heading = "\n### MySQL"
	}
	at := strings.Index(section, heading)
	if at < 0 {
		t.Fatalf("the README's Grants section has no %q heading", strings.TrimSpace(heading))
	}
	block := section[at:]
	open := strings.Index(block, "```sql\n")
	if open < 0 {
		t.Fatalf("no sql block after %q in the README", strings.TrimSpace(heading))
	}
	block = block[open+len("```sql\n"):]
	block = block[:strings.Index(block, "```")]
	var g leastGrants
	dst := &g.source
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "-- on every shard"):
			dst = &g.shard
		case strings.HasPrefix(l, "GRANT "):
			*dst = append(*dst, strings.TrimSuffix(strings.ReplaceAll(l, "'cleave'@'%'", "<user>"), ";"))
		}
	}
	if len(g.source) == 0 || len(g.shard) == 0 {
		t.Fatalf("the README's %s block lacks source or shard grants: %q", strings.TrimSpace(heading), block)
	}
	return g
}

// leastSetup is a private source and shard of one flavor with a least-privilege user on
// each, and a configuration that uses them.
type leastSetup struct {
	flavor        testenv.Flavor
	source, shard testenv.Server
	brokers       []string
	prefix        string
	dir           string
}

func newLeastSetup(t *testing.T, f testenv.Flavor) *leastSetup {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	s := &leastSetup{flavor: f, brokers: brokers, prefix: testenv.TopicPrefix(t), dir: t.TempDir()}
	s.source = testenv.StartServer(t, f, testenv.ServerOptions{})
	s.shard = testenv.StartServer(t, f, testenv.ServerOptions{})
	s.source.RootExec(leastSchema)
	var rows []string
	for i := 1; i <= 300; i++ {
		rows = append(rows, fmt.Sprintf("(%d, 'u%d@example.com', '2024-01-01 00:00:00')", i, i))
	}
	s.source.RootExec("INSERT INTO shop.users VALUES " + strings.Join(rows, ","))
	rows = rows[:0]
	for i := 1; i <= 600; i++ {
		rows = append(rows, fmt.Sprintf("(%d, %d, %d.25)", i, 1+i%300, i))
	}
	s.source.RootExec("INSERT INTO shop.orders VALUES " + strings.Join(rows, ","))
	return s
}

// user creates account name on srv with exactly the grants given (each "... TO <user>").
func createUser(srv testenv.Server, name string, grants []string) {
	account := "'" + name + "'@'%'"
	stmts := []string{"CREATE USER " + account + " IDENTIFIED BY 'pw-" + name + "'"}
	for _, g := range grants {
		stmts = append(stmts, strings.ReplaceAll(g, "<user>", account))
	}
	srv.RootExec(strings.Join(stmts, "; "))
}

// config writes a configuration for the source user and shard user and returns its path.
func (s *leastSetup) config(t *testing.T, sourceUser, shardUser string) string {
	t.Helper()
	c := deploy.Defaults(t)
	c.Source = config.Source{DSN: s.source.DSNFor(sourceUser, "pw-"+sourceUser), Flavor: string(s.flavor), ServerID: 4000 + s.source.ServerID()%1000}
	c.Kafka.Brokers, c.Kafka.TopicPrefix, c.Kafka.Partitions = s.brokers[:1], s.prefix, 2
	c.Shards = []config.Shard{{Name: "s0", DSN: s.shard.DSNFor(shardUser, "pw-"+shardUser)}}
	c.Tables = []config.Table{
		{Name: "shop.users", Strategy: config.StrategyHash, ShardKey: "id"},
		{Name: "shop.orders", Strategy: config.StrategyHash, ShardKey: "user_id"},
		{Name: "shop.countries", Strategy: config.StrategyBroadcast},
	}
	c.Capture.HeartbeatInterval, c.Capture.CheckpointInterval = 200*time.Millisecond, 200*time.Millisecond
	c.Reconcile.Interval = time.Hour
	c.HTTP.Listen = "127.0.0.1:0"
	path := filepath.Join(s.dir, sourceUser+"-"+shardUser+".yaml")
	deploy.WriteConfig(t, path, &c)
	return path
}

// startCleave runs the cleave binary in the background; stop sends it SIGTERM and returns
// what it printed and its exit code.
func startCleave(t *testing.T, args ...string) (stop func() (string, int)) {
	t.Helper()
	cmd := exec.Command(testenv.CleaveBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			done <- exitOK
		case errors.As(err, &ee):
			done <- ee.ExitCode()
		default:
			done <- -1
		}
	}()
	var stopped bool
	var code int
	halt := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGTERM)
			code = <-done
		}
	}
	t.Cleanup(halt)
	return func() (string, int) {
		halt()
		return out.String(), code
	}
}

type reconcileReport struct {
	Status string `json:"status"`
	Tables []struct {
		Table       string            `json:"table"`
		RowsChecked int64             `json:"rows_checked"`
		InFlight    []json.RawMessage `json:"in_flight"`
		Error       string            `json:"error"`
	} `json:"tables"`
}

// TestLeastPrivilegeUsers creates, per flavor, a private source and shard, and on them users
// with exactly the grants the README documents: check passes and every part of cleave
// runs with them. Then it takes each privilege away in turn, and check must fail naming
// it with the GRANT that gives it back. Roles and MySQL's partial revokes come last.
func TestLeastPrivilegeUsers(t *testing.T) {
	for _, f := range testenv.MatrixFlavors() {
		t.Run(string(f), func(t *testing.T) {
			s := newLeastSetup(t, f)
			g := documentedGrants(t, f)
			createUser(s.source, "reader", g.source)
			createUser(s.shard, "writer", g.shard)
			t.Run("the documented grants pass check and run every part", func(t *testing.T) { documentedGrantsRun(t, s) })
			t.Run("check fails naming each missing privilege", func(t *testing.T) { missingPrivileges(t, s, g) })
			t.Run("grants through roles count once the role is active", func(t *testing.T) { grantsThroughRoles(t, s, g) })
			if f == testenv.MySQLFlavor {
				t.Run("a partial revoke takes a privilege away", func(t *testing.T) { partialRevokes(t, s) })
			}
		})
	}
}

func documentedGrantsRun(t *testing.T, s *leastSetup) {
	cfg := s.config(t, "reader", "writer")
	out, errOut, code := runCleave(t, "check", "--config", cfg)
	if code != exitOK {
		t.Fatalf("check with the documented grants: exit %d\n%s%s", code, out, errOut)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "WARN") || strings.HasPrefix(l, "FAIL") {
			t.Errorf("check: %s", l)
		}
	}
	if out, errOut, code := runCleave(t, "prepare", "--config", cfg); code != exitOK {
		t.Fatalf("prepare with the documented grants: exit %d\n%s%s", code, out, errOut)
	}
	stop := startCleave(t, "run", "--config", cfg, "--log-level", "warn")
	shardDB := testenv.OpenDB(t, s.shard.DSN())
	counts := func(users, orders int, total string) func() bool {
		return func() bool {
			var u, o int
			var tot string
			err := shardDB.QueryRow("SELECT (SELECT COUNT(*) FROM shop.users), (SELECT COUNT(*) FROM shop.orders), (SELECT total FROM shop.orders WHERE id = 1)").Scan(&u, &o, &tot)
			return err == nil && u == users && o == orders && tot == total
		}
	}
	testenv.Eventually(t, 3*time.Minute, "the backfill to copy the tables to the shard", counts(300, 600, "1.25"))
	// Changes after the copy reach the shard through capture and the sink: an insert, an
	// update and a delete.
	s.source.RootExec("INSERT INTO shop.users VALUES (1000, 'late@example.com', '2024-02-02 00:00:00'); UPDATE shop.orders SET total = 1 WHERE id = 1; DELETE FROM shop.orders WHERE id = 5")
	testenv.Eventually(t, time.Minute, "the changes to stream to the shard", counts(301, 599, "1.00"))

	jsonPath := filepath.Join(s.dir, "report.json")
	out, errOut, code = runCleave(t, "reconcile", "--config", cfg, "--json", jsonPath, "--no-progress", "--state", "", "--alert-state", "")
	if code != exitOK {
		t.Fatalf("reconcile with the documented grants: exit %d\n%s%s", code, out, errOut)
	}
	var r reconcileReport
	if data, err := os.ReadFile(jsonPath); err != nil || json.Unmarshal(data, &r) != nil {
		t.Fatalf("report %s: %v", jsonPath, err)
	}
	for _, tr := range r.Tables {
		if len(tr.InFlight) > 0 || tr.Error != "" {
			t.Errorf("reconcile of %s: %d rows in flight, error %q", tr.Table, len(tr.InFlight), tr.Error)
		}
	}
	// A repair writes, updates and deletes through the shard user.
	s.shard.RootExec("UPDATE shop.orders SET total = 7 WHERE id = 2; DELETE FROM shop.users WHERE id = 3; INSERT INTO shop.users (id, email) VALUES (5000, 'extra')")
	if out, errOut, code := runCleave(t, "reconcile", "--config", cfg, "--repair", "--no-progress", "--state", "", "--alert-state", ""); code != exitOK {
		t.Errorf("reconcile --repair with the documented grants: exit %d\n%s%s", code, out, errOut)
	}
	if out, code := stop(); code != exitOK {
		t.Errorf("run with the documented grants: exit %d\n%s", code, out)
	}
}

// without returns the grants with privilege p taken out of statement i (the statement
// left out when p was its only privilege).
func without(grants []string, i int, p string) []string {
	var out []string
	for j, g := range grants {
		if j != i {
			out = append(out, g)
			continue
		}
		privs, rest, _ := strings.Cut(strings.TrimPrefix(g, "GRANT "), " ON ")
		var keep []string
		for _, q := range strings.Split(privs, ",") {
			if q = strings.TrimSpace(q); q != p {
				keep = append(keep, q)
			}
		}
		if len(keep) > 0 {
			out = append(out, "GRANT "+strings.Join(keep, ", ")+" ON "+rest)
		}
	}
	return out
}

func missingPrivileges(t *testing.T, s *leastSetup, g leastGrants) {
	n := 0
	for _, side := range []struct {
		name   string
		grants []string
		srv    testenv.Server
	}{{"source", g.source, s.source}, {"shard", g.shard, s.shard}} {
		for i, stmt := range side.grants {
			privs, rest, _ := strings.Cut(strings.TrimPrefix(stmt, "GRANT "), " ON ")
			on, _, _ := strings.Cut(rest, " TO ")
			for _, p := range strings.Split(privs, ",") {
				p = strings.TrimSpace(p)
				n++
				user := fmt.Sprintf("m%d", n)
				t.Run(side.name+" without "+p+" on "+on, func(t *testing.T) {
					createUser(side.srv, user, without(side.grants, i, p))
					src, shard := user, "writer"
					if side.name == "shard" {
						src, shard = "reader", user
					}
					out, errOut, code := runCleave(t, "check", "--config", s.config(t, src, shard))
					if code != exitFinding {
						t.Fatalf("check exit %d, want 1\n%s%s", code, out, errOut)
					}
					fix := "GRANT " + p + " ON " + on + " TO '" + user + "'@'%'"
					var fails []string
					found := false
					for _, l := range strings.Split(out, "\n") {
						if strings.HasPrefix(l, "FAIL") {
							fails = append(fails, l)
							if strings.Contains(l, p) && strings.Contains(l, "Fix: "+fix) {
								found = true
							}
						}
					}
					if !found {
						t.Errorf("no FAIL naming %s with the fix %q; failures:\n%s", p, fix, strings.Join(fails, "\n"))
					}
				})
			}
		}
	}
}

func grantsThroughRoles(t *testing.T, s *leastSetup, g leastGrants) {
	role, account := "cleave_reader", "'roleuser'@'%'"
	var stmts []string
	if s.flavor == testenv.MySQLFlavor {
		stmts = append(stmts, "CREATE ROLE 'cleave_reader'")
		for _, st := range g.source {
			stmts = append(stmts, strings.ReplaceAll(st, "<user>", "'cleave_reader'"))
		}
		stmts = append(stmts, "CREATE USER "+account+" IDENTIFIED BY 'pw-roleuser'", "GRANT 'cleave_reader' TO "+account)
	} else {
		stmts = append(stmts, "CREATE ROLE cleave_reader")
		for _, st := range g.source {
			stmts = append(stmts, strings.ReplaceAll(st, "<user>", "cleave_reader"))
		}
		stmts = append(stmts, "CREATE USER "+account+" IDENTIFIED BY 'pw-roleuser'", "GRANT cleave_reader TO "+account)
	}
	s.source.RootExec(strings.Join(stmts, "; "))
	cfg := s.config(t, "roleuser", "writer")

	out, _, code := runCleave(t, "check", "--config", cfg)
	want := "SET DEFAULT ROLE ALL TO " + account
	if s.flavor != testenv.MySQLFlavor {
		want = "SET DEFAULT ROLE `" + role + "` FOR " + account
	}
	if code != exitFinding || !strings.Contains(out, want) {
		t.Errorf("a granted role that is not active: check exit %d, want 1 with the fix %q:\n%s", code, want, out)
	}

	if s.flavor == testenv.MySQLFlavor {
		s.source.RootExec("SET DEFAULT ROLE ALL TO " + account)
	} else {
		s.source.RootExec("SET DEFAULT ROLE cleave_reader FOR " + account)
	}
	out, errOut, code := runCleave(t, "check", "--config", cfg)
	if code != exitOK {
		t.Errorf("grants through the default role: check exit %d, want 0:\n%s%s", code, out, errOut)
	}
}

func partialRevokes(t *testing.T, s *leastSetup) {
	s.source.RootExec("SET GLOBAL partial_revokes = ON; " +
		"CREATE USER 'revoked'@'%' IDENTIFIED BY 'pw-revoked'; " +
		"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, LOCK TABLES ON *.* TO 'revoked'@'%'; " +
		"REVOKE LOCK TABLES ON shop.* FROM 'revoked'@'%'")
	out, _, code := runCleave(t, "check", "--config", s.config(t, "revoked", "writer"))
	if want := "FAIL source grant LOCK TABLES on shop: 'revoked'@'%' lacks it"; code != exitFinding || !strings.Contains(out, want) {
		t.Errorf("check exit %d, want 1 with %q:\n%s", code, want, out)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
