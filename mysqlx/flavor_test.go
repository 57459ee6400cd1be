package mysqlx

import "testing"

func TestFlavorOfTellsTheProductByItsVersion(t *testing.T) {
	for _, tc := range []struct {
		version, name, product, status string
		md5                            bool
		monitor                        string
	}{
		{"10.4.34-MariaDB", MariaDB, "MariaDB 10.4.34", "SHOW MASTER STATUS", true, "REPLICATION CLIENT"},
		{"10.11.19-MariaDB-0+deb12u1-log", MariaDB, "MariaDB 10.11.19", "SHOW MASTER STATUS", true, "BINLOG MONITOR"},
		{"11.8.1-MariaDB", MariaDB, "MariaDB 11.8.1", "SHOW MASTER STATUS", true, "BINLOG MONITOR"},
		{"8.0.36", MySQL, "MySQL 8.0.36", "SHOW MASTER STATUS", true, "REPLICATION CLIENT"},
		{"8.4.3", MySQL, "MySQL 8.4.3", "SHOW BINARY LOG STATUS", true, "REPLICATION CLIENT"},
		{"9.5.0", MySQL, "MySQL 9.5.0", "SHOW BINARY LOG STATUS", true, "REPLICATION CLIENT"},
		{"9.7.4-2", MySQL, "MySQL 9.7.4", "SHOW BINARY LOG STATUS", false, "REPLICATION CLIENT"},
	} {
		f := FlavorOf(tc.version)
		if f.Name() != tc.name || f.Product() != tc.product || f.BinlogStatusStatement() != tc.status ||
			f.BuiltinMD5() != tc.md5 || f.BinlogMonitorPrivilege() != tc.monitor {
			t.Errorf("FlavorOf(%q) = %s, %q, %q, MD5 %v, %q; want %s, %q, %q, MD5 %v, %q", tc.version,
				f.Name(), f.Product(), f.BinlogStatusStatement(), f.BuiltinMD5(), f.BinlogMonitorPrivilege(),
				tc.name, tc.product, tc.status, tc.md5, tc.monitor)
		}
		if f.Version() != tc.version {
			t.Errorf("FlavorOf(%q).Version() = %q", tc.version, f.Version())
		}
	}
}
