package testenv

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

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
	serverProc
	opts    MariaDBOptions
	bin     string
	dir     string
	sockDir string
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
	m := &MariaDB{serverProc: serverProc{t: t, what: "private mariadbd"}, opts: opts, bin: bin, dir: t.TempDir()}
	m.sockDir, err = shortTempDir("cleave-my")
	if err != nil {
		t.Fatalf("testenv: socket dir: %v", err)
	}
	m.rootDSN, m.socket, m.errorLog, m.stdout = m.RootDSN, m.socketPath(), m.ErrorLog(), filepath.Join(m.dir, "stdout.log")
	m.command = func() (string, []string) { return m.bin, m.args() }
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if m.p != nil {
			m.p.Kill()
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
	m.startOnFreePort(func(int) {})
	return m
}

func (m *MariaDB) dataDir() string    { return filepath.Join(m.dir, "data") }
func (m *MariaDB) socketPath() string { return filepath.Join(m.sockDir, "mysqld.sock") }
func (m *MariaDB) tmpDir() string     { return filepath.Join(m.dir, "tmp") }

// ErrorLog is the path of the server's error log.
func (m *MariaDB) ErrorLog() string { return filepath.Join(m.dir, "error.log") }

// HostPath is the path of rel inside the server's own folder, as seen from here.
func (m *MariaDB) HostPath(rel string) string { return filepath.Join(m.dir, rel) }

// DataDir is the server's data directory (binlogs are in it, named mysql-bin.*).
func (m *MariaDB) DataDir() string { return m.dataDir() }

// ServerID is the server's --server-id.
func (m *MariaDB) ServerID() uint32 { return m.opts.ServerID }

// RootDSN is root's DSN over the unix socket.
func (m *MariaDB) RootDSN() string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = m.socketPath()
	cfg.MultiStatements = true
	return cfg.FormatDSN()
}

func (m *MariaDB) args() []string {
	o := m.opts
	a := []string{
		"--no-defaults", "--user=root",
		"--datadir=" + m.dataDir(), "--tmpdir=" + m.tmpDir(),
		"--port=" + strconv.Itoa(m.port), "--bind-address=127.0.0.1",
		"--socket=" + m.socketPath(),
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

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
