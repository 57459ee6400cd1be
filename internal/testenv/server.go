package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// serverProc is what the private servers of both flavors share: the port and process of the
// server, its users' DSNs, starting it and waiting until it answers, stopping and killing
// it. MariaDB and PrivateMySQL embed it and fill in how their server is started.
type serverProc struct {
	t    testing.TB
	what string // names the server in messages: "private mariadbd"
	port int
	p    *core.Proc
	// Set by the flavor:
	rootDSN  func() string                      // root over the unix socket
	command  func() (bin string, args []string) // the server's command line
	socket   string                             // removed before a start, so a stale one cannot answer
	errorLog string
	stdout   string
}

// errPortTaken: the port chosen by freePort was taken before the server could bind it.
var errPortTaken = errors.New("port already in use")

// Port is the server's TCP port on 127.0.0.1; it stays the same across Stop and Start.
func (s *serverProc) Port() int { return s.port }

// Addr is "127.0.0.1:port".
func (s *serverProc) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// DSN is the go-sql-driver DSN of user cleave (all privileges) over TCP, no database.
func (s *serverProc) DSN() string { return s.DSNFor("cleave", "cleave") }

// DSNFor is the DSN of another user over TCP, for tests of missing grants.
func (s *serverProc) DSNFor(user, password string) string {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = s.Addr()
	return cfg.FormatDSN()
}

// Running reports whether the server process is alive.
func (s *serverProc) Running() bool { return s.p != nil && !s.p.Exited() }

// String names the instance in messages.
func (s *serverProc) String() string { return fmt.Sprintf("%s %s", s.what, s.Addr()) }

// RootExec runs sql (several statements allowed) as root through the socket.
func (s *serverProc) RootExec(query string, args ...any) {
	s.t.Helper()
	db, err := sql.Open("mysql", s.rootDSN())
	if err == nil {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		_, err = db.ExecContext(ctx, query, args...)
	}
	if err != nil {
		s.t.Fatalf("testenv: %s: %s: %v", s, query, err)
	}
}

// startOnFreePort starts the server for the first time on a free port. A port found free
// can be taken by another process before the server binds it: the start is retried on a
// fresh one. before runs ahead of each attempt, with the port chosen.
func (s *serverProc) startOnFreePort(before func(attempt int)) {
	s.t.Helper()
	for attempt := 1; ; attempt++ {
		var err error
		if s.port, err = core.FreePort(); err != nil {
			s.t.Fatalf("testenv: free port: %v", err)
		}
		before(attempt)
		err = s.start()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			s.t.Fatalf("testenv: %v", err)
		}
	}
	s.RootExec("SET SESSION sql_log_bin = 0; " +
		"CREATE USER IF NOT EXISTS 'cleave'@'%' IDENTIFIED BY 'cleave'; " +
		"GRANT ALL PRIVILEGES ON *.* TO 'cleave'@'%' WITH GRANT OPTION")
}

// Start starts the server (again) on the same port and data directory and waits until it
// answers. Starting a running server is a no-op.
func (s *serverProc) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("testenv: %v", err)
	}
}

func (s *serverProc) start() error {
	if s.Running() {
		return nil
	}
	os.Remove(s.socket)
	logStart := fileSize(s.errorLog)
	bin, args := s.command()
	p, err := startProc(s.stdout, bin, args...)
	if err != nil {
		return err
	}
	s.p = p
	deadline := time.Now().Add(startDeadline)
	for {
		err := s.ping()
		if err == nil {
			return nil
		}
		if p.Exited() {
			if logHas(s.errorLog, logStart, "Address already in use") {
				return fmt.Errorf("%s: %w", s, errPortTaken)
			}
			return fmt.Errorf("%s exited during start-up (%v)\ncommand: %s %s\n%s",
				s, p.Err(), bin, quoteArgs(args), tail(s.errorLog, 30))
		}
		if time.Now().After(deadline) {
			s.p.Kill()
			return fmt.Errorf("%s did not answer within %s: %v\n%s", s, startDeadline, err, tail(s.errorLog, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *serverProc) ping() error {
	db, err := sql.Open("mysql", s.rootDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// Stop shuts the server down gracefully (SIGTERM) and waits for it to exit; it kills it if
// it has not exited after a minute.
func (s *serverProc) Stop() {
	s.t.Helper()
	if s.p == nil {
		return
	}
	if !stopProc(s.p) {
		s.t.Logf("testenv: %s did not stop within %s and was killed", s, stopDeadline)
	}
}

// Kill kills the server with SIGKILL (a crash) and waits for it to exit.
func (s *serverProc) Kill() {
	if s.p != nil {
		s.p.Kill()
	}
}
