package testenv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/internal/testenv/core"
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
	serverProc
	opts  ServerOptions
	root  string // the root's path here
	inner string // the server's folder inside the root ("/srv/p-…")
}

// MySQLRoot returns the root MySQL runs in, or fails (CI) or skips the test.
func MySQLRoot(t testing.TB) string {
	t.Helper()
	root := strings.TrimSpace(os.Getenv(EnvMySQLRoot))
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

// StartMySQLWithClassicHashing is StartMySQL with component_classic_hashing installed, which
// gives MySQL 9.6+ back its MD5() and SHA1(): the server on which the SQL forms of cleave's
// routing hash can run (a stock MySQL 9 leaves that to Go).
func StartMySQLWithClassicHashing(t testing.TB, opts ServerOptions) *PrivateMySQL {
	t.Helper()
	m := StartMySQL(t, opts)
	if m != nil {
		m.RootExec("INSTALL COMPONENT 'file://component_classic_hashing'")
	}
	return m
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
	m := &PrivateMySQL{serverProc: serverProc{t: t, what: "private mysqld"}, opts: opts, root: root, inner: "/srv/p-" + core.RandomHex(5)}
	m.rootDSN, m.socket, m.errorLog, m.stdout = m.RootDSN, m.host("mysqld.sock"), m.ErrorLog(), m.host("stdout.log")
	m.command = func() (string, []string) {
		return "chroot", append([]string{m.root, "mysqld", "--defaults-file=" + m.inner + "/my.cnf"}, m.opts.ExtraArgs...)
	}
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
			m.p.Kill()
		}
		os.RemoveAll(m.host(""))
	})
	m.startOnFreePort(func(attempt int) {
		m.writeConfig()
		if attempt == 1 {
			cmd := m.inRoot("mysqld", "--defaults-file="+m.inner+"/my.cnf", "--initialize-insecure")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("testenv: mysqld --initialize-insecure in %s: %v\n%s\n%s", m.host("data"), err, out, tail(m.ErrorLog(), 20))
			}
		}
	})
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

// ServerID is the server's server_id.
func (m *PrivateMySQL) ServerID() uint32 { return m.opts.ServerID }

// RootDSN is root's DSN over the unix socket (root has no password).
func (m *PrivateMySQL) RootDSN() string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = m.host("mysqld.sock")
	cfg.MultiStatements = true
	return cfg.FormatDSN()
}
