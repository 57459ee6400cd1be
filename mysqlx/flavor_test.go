package mysqlx

import (
	"fmt"
	"strings"
	"testing"
)

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

func TestUpsertNamesTheInsertedRowAsEachProductWants(t *testing.T) {
	for _, tc := range []struct {
		version, alias, value string
	}{
		{"10.11.19-MariaDB-0+deb12u1-log", "", "VALUES(`c`)"},
		{"5.7.44-log", "", "VALUES(`c`)"},
		{"8.0.18", "", "VALUES(`c`)"},
		{"8.0.19", " AS `_cleave_new`", "`_cleave_new`.`c`"},
		{"8.4.3", " AS `_cleave_new`", "`_cleave_new`.`c`"},
		{"9.7.4-2", " AS `_cleave_new`", "`_cleave_new`.`c`"},
	} {
		f := FlavorOf(tc.version)
		if a, v := f.UpsertRowAlias(), f.UpsertValue("`c`"); a != tc.alias || v != tc.value {
			t.Errorf("%s: UpsertRowAlias() = %q, UpsertValue(`c`) = %q; want %q, %q", tc.version, a, v, tc.alias, tc.value)
		}
	}
}

func TestCollationIsVouchedForOnlyWhereItComparesAlike(t *testing.T) {
	mariadb, mysql := FlavorOf("10.11.19-MariaDB"), FlavorOf("9.7.4")
	for _, tc := range []struct {
		name     string
		to, from Flavor
		coll     string
		want     string // "" for none
	}{
		{"the same product keeps every collation", mysql, FlavorOf("8.0.36"), "utf8mb4_0900_ai_ci", "utf8mb4_0900_ai_ci"},
		{"the same product keeps its own", mariadb, mariadb, "utf8mb4_uca1400_ai_ci", "utf8mb4_uca1400_ai_ci"},
		{"a shared collation crosses", mariadb, mysql, "utf8mb4_general_ci", "utf8mb4_general_ci"},
		{"a shared collation crosses back", mysql, mariadb, "utf8mb4_unicode_520_ci", "utf8mb4_unicode_520_ci"},
		{"latin1 crosses", mysql, mariadb, "latin1_swedish_ci", "latin1_swedish_ci"},
		{"MySQL's code point order is MariaDB's nopad_bin", mariadb, mysql, "utf8mb4_0900_bin", "utf8mb4_nopad_bin"},
		{"and back", mysql, mariadb, "utf8mb4_nopad_bin", "utf8mb4_0900_bin"},
		{"MySQL's default has no equal on MariaDB", mariadb, mysql, "utf8mb4_0900_ai_ci", ""},
		{"nor its accent-sensitive sibling", mariadb, mysql, "utf8mb4_0900_as_cs", ""},
		{"MariaDB's UCA 14 has no equal on MySQL", mysql, mariadb, "utf8mb4_uca1400_ai_ci", ""},
		{"nor its nopad variants of old collations", mysql, mariadb, "utf8mb4_general_nopad_ci", ""},
		{"a language collation rebuilt by MariaDB does not cross", mysql, mariadb, "utf8mb4_croatian_ci", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.to.Collation(tc.from, tc.coll)
			if ok != (tc.want != "") || got != tc.want {
				t.Errorf("%s.Collation(%s, %s) = %q, %v; want %q", tc.to.Product(), tc.from.Product(), tc.coll, got, ok, tc.want)
			}
		})
	}
}

func TestFlavorNamesWhatDiffersForCaptureAndCheck(t *testing.T) {
	for _, tc := range []struct {
		version        string
		family         string
		oldest         [2]int
		strictVar      string
		zeroLogPos     bool
		parenthesized  bool
		monitorGrants  string
		grantsNeedRole bool
	}{
		{"10.5.27-MariaDB", "MariaDB", [2]int{10, 5}, "gtid_strict_mode", false, false, "REPLICATION CLIENT,BINLOG MONITOR", false},
		{"10.11.19-MariaDB-0+deb12u1-log", "MariaDB", [2]int{10, 5}, "gtid_strict_mode", false, false, "REPLICATION CLIENT,BINLOG MONITOR", false},
		{"11.4.5-MariaDB", "MariaDB", [2]int{10, 5}, "gtid_strict_mode", true, false, "REPLICATION CLIENT,BINLOG MONITOR", false},
		{"5.7.44-log", "MySQL", [2]int{5, 7}, "", false, true, "SUPER", false},
		{"8.0.36", "MySQL", [2]int{5, 7}, "", false, true, "SUPER", true},
		{"9.7.4-2", "MySQL", [2]int{5, 7}, "", false, true, "SUPER", true},
	} {
		f := FlavorOf(tc.version)
		major, minor := f.OldestSupported()
		got := fmt.Sprint(f.Family(), [2]int{major, minor}, f.GTIDStrictModeVariable(), f.BinlogZeroLogPos(),
			f.ParenthesizedDefaults(), strings.Join(f.BinlogMonitorGrants(), ","), f.ShowGrantsNeedsRoles())
		want := fmt.Sprint(tc.family, tc.oldest, tc.strictVar, tc.zeroLogPos, tc.parenthesized, tc.monitorGrants, tc.grantsNeedRole)
		if got != want {
			t.Errorf("%s: family, oldest supported, GTID strict mode variable, zero log positions, parenthesized defaults, binlog monitor grants, SHOW GRANTS needs roles =\n %s\nwant\n %s", tc.version, got, want)
		}
		if !f.AtLeast(major, minor) {
			t.Errorf("%s is older than its own oldest supported %d.%d", tc.version, major, minor)
		}
	}
	if f := FlavorOf("10.4.34-MariaDB"); f.AtLeast(f.OldestSupported()) {
		t.Errorf("MariaDB 10.4 counts as supported")
	}
	if f := FlavorOf("5.6.51-log"); f.AtLeast(f.OldestSupported()) {
		t.Errorf("MySQL 5.6 counts as supported")
	}
}

func TestInstantDropColumnFromTheFirstReleaseThatHasIt(t *testing.T) {
	for _, tc := range []struct {
		version string
		instant bool
	}{
		{"10.3.39-MariaDB", false},
		{"10.4.34-MariaDB", true},
		{"10.11.19-MariaDB-0+deb12u1-log", true},
		{"5.7.44-log", false},
		{"8.0.28", false},
		{"8.0.29", true},
		{"8.0.36", true},
		{"8.4.3", true},
		{"9.7.4-2", true},
	} {
		if got := FlavorOf(tc.version).InstantDropColumn(); got != tc.instant {
			t.Errorf("FlavorOf(%q).InstantDropColumn() = %v, want %v", tc.version, got, tc.instant)
		}
	}
}
