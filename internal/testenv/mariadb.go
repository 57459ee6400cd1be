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
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDBOptions configures a private mariadbd. The zero value is a correct cleave
// source: binlog on, ROW format, FULL row image, FULL row metadata, GTID strict mode.
type MariaDBOptions struct {
	// DisableBinlog starts the server without a binlog (--skip-log-bin).
	DisableBinlog bool
	// BinlogFormat is --binlog-format: ROW (default), STATEMENT or MIXED.
	BinlogFormat string
	// BinlogRowImage is --binlog-row-image: FULL (default), MINIMAL or NOBLOB.
	BinlogRowImage string
	// BinlogRowMetadata is --binlog-row-metadata: FULL (default), MINIMAL or NO_LOG.
	BinlogRowMetadata string
	// ServerID is --server-id; 0 picks a random one in [1000, 1000000).
	ServerID uint32
	// ExtraArgs are appended to the mariadbd command line, e.g. "--gtid-domain-id=7".
	ExtraArgs []string
	// TLS, when set, gives the server its certificate (NewServerTLS): the files are written
	// into the server's folder before it starts.
	TLS *ServerTLS
}

// MariaDB is a private mariadbd in the test's temporary directory, on a free loopback
// port, with the user cleave/cleave holding ALL PRIVILEGES. Its methods fail the test on
// error, so call them from the test's goroutine. It is killed and removed at t.Cleanup.
type MariaDB struct {
	t       testing.TB
	opts    MariaDBOptions
	bin     string
	dir     string
	sockDir string
	port    int
	p       *proc
}

// StartMariaDB initialises a data directory, starts mariadbd and waits until it answers.
func StartMariaDB(t testing.TB, opts MariaDBOptions) *MariaDB {
	t.Helper()
	skipIfShort(t)
	bin, err := lookPath("mariadbd")
	if err != nil {
		unavailable(t, "mariadbd", "PATH", err)
		return nil
	}
	install, err := lookPath("mariadb-install-db")
	if err != nil {
		unavailable(t, "mariadb-install-db", "PATH", err)
		return nil
	}
	if opts.ServerID == 0 {
		opts.ServerID = uint32(1000 + rand.IntN(999000))
	}
	m := &MariaDB{t: t, opts: opts, bin: bin, dir: t.TempDir()}
	m.sockDir, err = shortTempDir("cleave-my")
	if err != nil {
		t.Fatalf("testenv: socket dir: %v", err)
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if m.p != nil {
			m.p.kill()
		}
		os.RemoveAll(m.sockDir)
	})

	// A private tmpdir: nothing another program does in /tmp can reach the server's
	// temporary tables.
	if err := os.Mkdir(m.tmpDir(), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if opts.TLS != nil {
		if err := opts.TLS.writeTLS(m.HostPath); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	cmd := exec.Command(install, "--no-defaults", "--datadir="+m.dataDir(), "--tmpdir="+m.tmpDir(),
		"--user=root", "--auth-root-authentication-method=normal", "--skip-test-db")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: mariadb-install-db in %s: %v\n%s", m.dataDir(), err, out)
	}
	// A port found free can be taken by another process before mariadbd binds it: retry
	// the first start on a fresh port.
	for attempt := 1; ; attempt++ {
		if m.port, err = freePort(); err != nil {
			t.Fatalf("testenv: free port: %v", err)
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

func (m *MariaDB) dataDir() string { return filepath.Join(m.dir, "data") }
func (m *MariaDB) socket() string  { return filepath.Join(m.sockDir, "mysqld.sock") }
func (m *MariaDB) tmpDir() string  { return filepath.Join(m.dir, "tmp") }

// ErrorLog is the path of the server's error log.
func (m *MariaDB) ErrorLog() string { return filepath.Join(m.dir, "error.log") }

// HostPath is the path of rel inside the server's own folder, as seen from here.
func (m *MariaDB) HostPath(rel string) string { return filepath.Join(m.dir, rel) }

// DataDir is the server's data directory (binlogs are in it, named mysql-bin.*).
func (m *MariaDB) DataDir() string { return m.dataDir() }

// Port is the server's TCP port on 127.0.0.1; it stays the same across Stop and Start.
func (m *MariaDB) Port() int { return m.port }

// Addr is "127.0.0.1:port".
func (m *MariaDB) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

// ServerID is the server's --server-id.
func (m *MariaDB) ServerID() uint32 { return m.opts.ServerID }

// DSN is the go-sql-driver DSN of user cleave (all privileges) over TCP, no database.
func (m *MariaDB) DSN() string { return m.DSNFor("cleave", "cleave") }

// DSNFor is the DSN of another user over TCP, for tests of missing grants.
func (m *MariaDB) DSNFor(user, password string) string {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = m.Addr()
	return cfg.FormatDSN()
}

// RootDSN is root's DSN over the unix socket.
func (m *MariaDB) RootDSN() string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = m.socket()
	cfg.MultiStatements = true
	return cfg.FormatDSN()
}

// Running reports whether the server process is alive.
func (m *MariaDB) Running() bool { return m.p != nil && !m.p.exited() }

// RootExec runs sql (several statements allowed) as root through the socket.
func (m *MariaDB) RootExec(sql string, args ...any) {
	m.t.Helper()
	if err := m.rootExec(sql, args...); err != nil {
		m.t.Fatalf("testenv: private mariadbd %s: %s: %v", m.Addr(), sql, err)
	}
}

func (m *MariaDB) rootExec(query string, args ...any) error {
	db, err := sql.Open("mysql", m.RootDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, err = db.ExecContext(ctx, query, args...)
	return err
}

func (m *MariaDB) args() []string {
	o := m.opts
	a := []string{
		"--no-defaults", "--user=root",
		"--datadir=" + m.dataDir(), "--tmpdir=" + m.tmpDir(),
		"--port=" + strconv.Itoa(m.port), "--bind-address=127.0.0.1",
		"--socket=" + m.socket(),
		"--pid-file=" + filepath.Join(m.dir, "mariadbd.pid"),
		"--log-error=" + m.ErrorLog(),
		"--server-id=" + strconv.FormatUint(uint64(o.ServerID), 10),
		"--skip-name-resolve", "--max-connections=200", "--max-allowed-packet=64M",
		"--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
		"--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2",
	}
	if o.DisableBinlog {
		a = append(a, "--skip-log-bin")
	} else {
		a = append(a, "--log-bin="+filepath.Join(m.dataDir(), "mysql-bin"),
			"--log-slave-updates", "--gtid-strict-mode=ON", "--sync-binlog=0",
			"--max-binlog-size=64M", "--binlog-expire-logs-seconds=86400")
	}
	a = append(a,
		"--binlog-format="+orDefault(o.BinlogFormat, "ROW"),
		"--binlog-row-image="+orDefault(o.BinlogRowImage, "FULL"),
		"--binlog-row-metadata="+orDefault(o.BinlogRowMetadata, "FULL"))
	if o.TLS != nil {
		a = append(a, "--ssl-ca="+m.HostPath(tlsCAFile), "--ssl-cert="+m.HostPath(tlsCertFile), "--ssl-key="+m.HostPath(tlsKeyFile))
		if o.TLS.Require {
			a = append(a, "--require-secure-transport=ON")
		}
	}
	return append(a, o.ExtraArgs...)
}

// Start starts the server (again) on the same port and data directory and waits until it
// answers. Starting a running server is a no-op.
func (m *MariaDB) Start() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatalf("testenv: %v", err)
	}
}

// errPortTaken: the port chosen by freePort was taken before mariadbd could bind it.
var errPortTaken = errors.New("port already in use")

func (m *MariaDB) start() error {
	if m.Running() {
		return nil
	}
	os.Remove(m.socket())
	logStart := fileSize(m.ErrorLog())
	args := m.args()
	p, err := startProc(filepath.Join(m.dir, "stdout.log"), m.bin, args...)
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
				return fmt.Errorf("private mariadbd on %s: %w", m.Addr(), errPortTaken)
			}
			return fmt.Errorf("private mariadbd on %s exited during start-up (%v)\ncommand: %s %s\n%s",
				m.Addr(), p.err, m.bin, quoteArgs(args), tail(m.ErrorLog(), 30))
		}
		if time.Now().After(deadline) {
			m.p.kill()
			return fmt.Errorf("private mariadbd on %s did not answer within %s: %v\n%s",
				m.Addr(), startDeadline, err, tail(m.ErrorLog(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *MariaDB) ping() error {
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
func (m *MariaDB) Stop() {
	m.t.Helper()
	if m.p == nil {
		return
	}
	if !m.p.stop() {
		m.t.Logf("testenv: private mariadbd on %s did not stop within %s and was killed", m.Addr(), stopDeadline)
	}
}

// Kill kills the server with SIGKILL (a crash) and waits for it to exit.
func (m *MariaDB) Kill() {
	if m.p != nil {
		m.p.kill()
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// String names the instance in messages.
func (m *MariaDB) String() string { return fmt.Sprintf("private mariadbd %s", m.Addr()) }
