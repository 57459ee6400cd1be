package mysqlx

import "testing"

func TestFlavorOfTellsTheProductByItsVersion(t *testing.T) {
	for _, tc := range []struct {
		version, name, product, status string
	}{
		{"10.11.19-MariaDB-0+deb12u1-log", MariaDB, "MariaDB 10.11.19", "SHOW MASTER STATUS"},
		{"11.8.1-MariaDB", MariaDB, "MariaDB 11.8.1", "SHOW MASTER STATUS"},
		{"8.0.36", MySQL, "MySQL 8.0.36", "SHOW MASTER STATUS"},
		{"8.4.3", MySQL, "MySQL 8.4.3", "SHOW BINARY LOG STATUS"},
		{"9.7.4-2", MySQL, "MySQL 9.7.4", "SHOW BINARY LOG STATUS"},
	} {
		f := FlavorOf(tc.version)
		if f.Name() != tc.name || f.Product() != tc.product || f.BinlogStatusStatement() != tc.status {
			t.Errorf("FlavorOf(%q) = %s, %q, %q; want %s, %q, %q", tc.version,
				f.Name(), f.Product(), f.BinlogStatusStatement(), tc.name, tc.product, tc.status)
		}
		if f.Version() != tc.version {
			t.Errorf("FlavorOf(%q).Version() = %q", tc.version, f.Version())
		}
	}
}
