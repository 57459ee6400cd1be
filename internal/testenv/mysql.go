package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Server is a private database server of either flavor, for tests that stop, crash or
// misconfigure one. Its methods fail the test on error; it is killed and removed at
// t.Cleanup.
type Server interface {
	Flavor() Flavor
	DSN() string
	DSNFor(user, password string) string
	RootDSN() string
	RootExec(sql string, args ...any)
	Addr() string
	Port() int
	ServerID() uint32
	DataDir() string
	// HostPath is the path of rel inside the server's own folder, as seen from here.
	HostPath(rel string) string
	ErrorLog() string
	Running() bool
	Start()
	Stop()
	Kill()
	String() string
}

var (
	_ Server = (*MariaDB)(nil)
	_ Server = (*PrivateMySQL)(nil)
)

// ServerOptions configures a private server of either flavor; the zero value is a correct
// cleave source (see MariaDBOptions).
type ServerOptions = MariaDBOptions

// StartServer starts a private server of the flavor with opts.
func StartServer(t testing.TB, f Flavor, opts ServerOptions) Server {
	t.Helper()
	if f == MySQLFlavor {
		return StartMySQL(t, opts)
	}
	return StartMariaDB(t, opts)
}

// Flavor is MariaDBFlavor.
func (m *MariaDB) Flavor() Flavor { return MariaDBFlavor }

// PrivateMySQL is a private mysqld run inside the MySQL root (CLEAVE_MYSQL_ROOT, built by
// scripts/services.sh), on a free loopback port, with the user cleave/cleave holding ALL
// PRIVILEGES. Its folder lives inside the root (mysqld runs chrooted there) and is removed
// at t.Cleanup. ServerOptions map to MySQL's settings: DisableBinlog is --skip-log-bin,
// BinlogRowMetadata NO_LOG is MINIMAL (MySQL has no NO_LOG), ExtraArgs are appended to the
// mysqld command line, TLS files go into the server's folder and its config.
type PrivateMySQL struct {
	t     testing.TB
	opts  ServerOptions
	root  string // the root's path here
	inner string // the server's folder inside the root ("/srv/p-…")
	port  int
	p     *proc
}

// MySQLRoot returns the root MySQL runs in, or fails (CI) or skips the test.
func MySQLRoot(t testing.TB) string {
	t.Helper()
	root := getenv(EnvMySQLRoot, "")
	if root == "" {
		if r, err := repoRoot(); err == nil {
			root = filepath.Join(r, ".local", "mysql-root")
		}
	}
	if _, err := os.Stat(filepath.Join(root, ".complete")); err != nil {
		unavailable(t, "the MySQL root", root, fmt.Errorf("not built (%v): scripts/services.sh mysql-root builds it", err))
		return ""
	}
	return root
}

// StartMySQL initialises a data directory, starts mysqld and waits until it answers.
func StartMySQL(t testing.TB, opts ServerOptions) *PrivateMySQL {
	t.Helper()
	skipIfShort(t)
	root := MySQLRoot(t)
	if root == "" {
		return nil
	}
	if opts.ServerID == 0 {
		opts.ServerID = uint32(1000 + rand.IntN(999000))
	}
	m := &PrivateMySQL{t: t, opts: opts, root: root, inner: "/srv/p-" + randomHex(t, 5)}
	if err := os.MkdirAll(m.host("tmp"), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if opts.TLS != nil {
		// mysqld runs inside the root: its files must be in the server's folder there.
		if err := opts.TLS.writeTLS(m.HostPath); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	t.Cleanup(func() {
		if m.p != nil {
			m.p.kill()
		}
		os.RemoveAll(m.host(""))
	})
	for attempt := 1; ; attempt++ {
		var err error
		if m.port, err = freePort(); err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		m.writeConfig()
		if attempt == 1 {
			cmd := m.inRoot("mysqld", "--defaults-file="+m.inner+"/my.cnf", "--initialize-insecure")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("testenv: mysqld --initialize-insecure in %s: %v\n%s\n%s", m.host("data"), err, out, tail(m.ErrorLog(), 20))
			}
		}
		err = m.start()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("testenv: %v", err)
		}
	}
	m.RootExec("SET SESSION sql_log_bin = 0; " +
		"CREATE USER IF NOT EXISTS 'cleave'@'%' IDENTIFIED BY 'cleave'; " +
		"GRANT ALL PRIVILEGES ON *.* TO 'cleave'@'%' WITH GRANT OPTION")
	return m
}

// host is a path inside the server's folder, as seen from here.
func (m *PrivateMySQL) host(rel string) string {
	return filepath.Join(m.root, m.inner, rel)
}

func (m *PrivateMySQL) inRoot(name string, args ...string) *exec.Cmd {
	return exec.Command("chroot", append([]string{m.root, name}, args...)...)
}

func (m *PrivateMySQL) writeConfig() {
	o := m.opts
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("[mysqld]")
	// As root, unlike the shared servers: a process that changes its user loses the
	// parent-death signal, and a private server must die with the test binary.
	w("user=root")
	w("datadir=%s/data", m.inner)
	w("tmpdir=%s/tmp", m.inner)
	w("socket=%s/mysqld.sock", m.inner)
	w("pid-file=%s/mysqld.pid", m.inner)
	w("log-error=%s/error.log", m.inner)
	w("port=%d", m.port)
	w("bind-address=127.0.0.1")
	w("mysqlx=OFF")
	w("secure_file_priv=NULL")
	w("skip_name_resolve=ON")
	w("performance_schema=OFF")
	w("server_id=%d", o.ServerID)
	w("max_connections=200")
	w("max_allowed_packet=64M")
	w("innodb_buffer_pool_size=64M")
	w("innodb_flush_log_at_trx_commit=2")
	w("gtid_mode=ON")
	w("enforce_gtid_consistency=ON")
	if o.DisableBinlog {
		w("skip_log_bin")
	} else {
		w("log_bin=mysql-bin")
		w("sync_binlog=0")
		w("max_binlog_size=64M")
		w("binlog_expire_logs_seconds=86400")
	}
	w("binlog_format=%s", orDefault(o.BinlogFormat, "ROW"))
	w("binlog_row_image=%s", orDefault(o.BinlogRowImage, "FULL"))
	if o.TLS != nil {
		w("ssl_ca=%s/%s", m.inner, tlsCAFile)
		w("ssl_cert=%s/%s", m.inner, tlsCertFile)
		w("ssl_key=%s/%s", m.inner, tlsKeyFile)
		if o.TLS.Require {
			w("require_secure_transport=ON")
		}
	}
	meta := orDefault(o.BinlogRowMetadata, "FULL")
	if strings.EqualFold(meta, "NO_LOG") {
		meta = "MINIMAL"
	}
	w("binlog_row_metadata=%s", meta)
	if err := os.WriteFile(m.host("my.cnf"), []byte(b.String()), 0o644); err != nil {
		m.t.Fatalf("testenv: %v", err)
	}
}

// Flavor is MySQLFlavor.
func (m *PrivateMySQL) Flavor() Flavor { return MySQLFlavor }

// ErrorLog is the path of the server's error log.
func (m *PrivateMySQL) ErrorLog() string { return m.host("error.log") }

// HostPath is the path of rel inside the server's own folder (in the MySQL root), as seen
// from here.
func (m *PrivateMySQL) HostPath(rel string) string { return m.host(rel) }

// DataDir is the server's data directory as seen from here (binlogs are in it, named
// mysql-bin.*).
func (m *PrivateMySQL) DataDir() string { return m.host("data") }

// Port is the server's TCP port on 127.0.0.1; it stays the same across Stop and Start.
func (m *PrivateMySQL) Port() int { return m.port }

// Addr is "127.0.0.1:port".
func (m *PrivateMySQL) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

// ServerID is the server's server_id.
func (m *PrivateMySQL) ServerID() uint32 { return m.opts.ServerID }

// DSN is the go-sql-driver DSN of user cleave (all privileges) over TCP, no database.
func (m *PrivateMySQL) DSN() string { return m.DSNFor("cleave", "cleave") }

// DSNFor is the DSN of another user over TCP, for tests of missing grants.
func (m *PrivateMySQL) DSNFor(user, password string) string {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = m.Addr()
	return cfg.FormatDSN()
}

// RootDSN is root's DSN over the unix socket (root has no password).
func (m *PrivateMySQL) RootDSN() string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = m.host("mysqld.sock")
	cfg.MultiStatements = true
	return cfg.FormatDSN()
}

// Running reports whether the server process is alive.
func (m *PrivateMySQL) Running() bool { return m.p != nil && !m.p.exited() }

// RootExec runs sql (several statements allowed) as root through the socket.
func (m *PrivateMySQL) RootExec(query string, args ...any) {
	m.t.Helper()
	db, err := sql.Open("mysql", m.RootDSN())
	if err == nil {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		_, err = db.ExecContext(ctx, query, args...)
	}
	if err != nil {
		m.t.Fatalf("testenv: %s: %s: %v", m, query, err)
	}
}

// Start starts the server (again) on the same port and data directory and waits until it
// answers. Starting a running server is a no-op.
func (m *PrivateMySQL) Start() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatalf("testenv: %v", err)
	}
}

func (m *PrivateMySQL) start() error {
	if m.Running() {
		return nil
	}
	os.Remove(m.host("mysqld.sock"))
	logStart := fileSize(m.ErrorLog())
	args := append([]string{m.root, "mysqld", "--defaults-file=" + m.inner + "/my.cnf"}, m.opts.ExtraArgs...)
	p, err := startProc(m.host("stdout.log"), "chroot", args...)
	if err != nil {
		return err
	}
	m.p = p
	deadline := time.Now().Add(startDeadline)
	for {
		err := m.ping()
		if err == nil {
			return nil
		}
		if p.exited() {
			if logHas(m.ErrorLog(), logStart, "Address already in use") {
				return fmt.Errorf("%s: %w", m, errPortTaken)
			}
			return fmt.Errorf("%s exited during start-up (%v)\ncommand: chroot %s\n%s",
				m, p.err, quoteArgs(args), tail(m.ErrorLog(), 30))
		}
		if time.Now().After(deadline) {
			m.p.kill()
			return fmt.Errorf("%s did not answer within %s: %v\n%s", m, startDeadline, err, tail(m.ErrorLog(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *PrivateMySQL) ping() error {
	db, err := sql.Open("mysql", m.RootDSN())
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
func (m *PrivateMySQL) Stop() {
	m.t.Helper()
	if m.p == nil {
		return
	}
	if !m.p.stop() {
		m.t.Logf("testenv: %s did not stop within %s and was killed", m, stopDeadline)
	}
}

// Kill kills the server with SIGKILL (a crash) and waits for it to exit.
func (m *PrivateMySQL) Kill() {
	if m.p != nil {
		m.p.kill()
	}
}

// String names the instance in messages.
func (m *PrivateMySQL) String() string { return fmt.Sprintf("private mysqld %s", m.Addr()) }
