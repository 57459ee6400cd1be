package preflight

import (
	"reflect"
	"testing"
	"time"
)

func TestParseGrant(t *testing.T) {
	tests := []struct {
		name string
		line string
		want grant
		ok   bool
	}{
		{"MariaDB global grant with the 10.5 privilege names and a password hash",
			"GRANT REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR ON *.* TO `u1`@`%` IDENTIFIED BY PASSWORD '*7B9EBEED26AA52ED10C0F549FA863F13C39E0209'",
			grant{privs: []string{"REPLICATION SLAVE", "BINLOG MONITOR", "SLAVE MONITOR"}, db: "*", table: "*"}, true},
		{"MariaDB ALL PRIVILEGES with grant option",
			"GRANT ALL PRIVILEGES ON *.* TO `cleave`@`%` IDENTIFIED BY PASSWORD '*82D4' WITH GRANT OPTION",
			grant{privs: []string{"ALL PRIVILEGES"}, db: "*", table: "*"}, true},
		{"database grant keeps the LIKE escape of its pattern",
			"GRANT SELECT ON `sh\\_%`.* TO `u1`@`%`",
			grant{privs: []string{"SELECT"}, db: `sh\_%`, table: "*"}, true},
		{"column-level SELECT is not a table-wide SELECT",
			"GRANT SELECT (`a`, `b`), INSERT ON `x`.`y` TO `u1`@`%`",
			grant{privs: []string{"INSERT"}, db: "x", table: "y"}, true},
		{"a grant to the active role counts like one to the user",
			"GRANT SELECT ON `z`.* TO `r1`",
			grant{privs: []string{"SELECT"}, db: "z", table: "*"}, true},
		{"MySQL 5.7 quotes the account with single quotes",
			"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%'",
			grant{privs: []string{"REPLICATION SLAVE", "REPLICATION CLIENT"}, db: "*", table: "*"}, true},
		{"MySQL 8 lists global privileges one by one",
			"GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`",
			grant{privs: []string{"SELECT", "RELOAD", "SHOW DATABASES", "REPLICATION SLAVE", "REPLICATION CLIENT"}, db: "*", table: "*"}, true},
		{"MySQL 8 dynamic privileges have no space after the comma",
			"GRANT BACKUP_ADMIN,BINLOG_ADMIN ON *.* TO `cdc`@`%`",
			grant{privs: []string{"BACKUP_ADMIN", "BINLOG_ADMIN"}, db: "*", table: "*"}, true},
		{"MySQL 8 table grant",
			"GRANT SELECT ON `shop`.`orders` TO `cdc`@`%`",
			grant{privs: []string{"SELECT"}, db: "shop", table: "orders"}, true},
		{"MySQL 8 explicit TABLE object type",
			"GRANT SELECT ON TABLE `shop`.`orders` TO `cdc`@`%`",
			grant{privs: []string{"SELECT"}, db: "shop", table: "orders"}, true},
		{"MySQL 8 partial revoke",
			"REVOKE SELECT ON `mysql`.* FROM `cdc`@`%`",
			grant{revoke: true, privs: []string{"SELECT"}, db: "mysql", table: "*"}, true},
		{"unquoted names and lower case keywords",
			"grant select on shop.* to cdc@localhost",
			grant{privs: []string{"SELECT"}, db: "shop", table: "*"}, true},
		{"a backtick doubled inside a name",
			"GRANT SELECT ON `we``ird`.* TO `u`@`%`",
			grant{privs: []string{"SELECT"}, db: "we`ird", table: "*"}, true},
		{"a role grant gives no table privileges", "GRANT `r1` TO `u1`@`%`", grant{}, false},
		{"a MySQL role grant", "GRANT `reader`@`%` TO `cdc`@`%`", grant{}, false},
		{"PROXY is not a table privilege", "GRANT PROXY ON `u2`@`%` TO `u3`@`%`", grant{}, false},
		{"PROXY on the anonymous user", "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION", grant{}, false},
		{"routine grants are left out", "GRANT EXECUTE ON PROCEDURE `x`.`p` TO `u3`@`%`", grant{}, false},
		{"SET DEFAULT ROLE is not a grant", "SET DEFAULT ROLE `r1` FOR `u1`@`%`", grant{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseGrant(tt.line)
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseGrant(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestGrantsDecideTheCaptureUsersPrivileges(t *testing.T) {
	mariaAll := []string{"GRANT ALL PRIVILEGES ON *.* TO `cleave`@`%` IDENTIFIED BY PASSWORD '*82D4' WITH GRANT OPTION"}
	mariaMinimal := []string{
		"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cdc`@`%`",
		"GRANT SELECT ON `shop`.* TO `cdc`@`%`",
	}
	mariaSlaveMonitor := []string{"GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO `cdc`@`%`"}
	mysqlMinimal := []string{
		"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`",
		"GRANT SELECT ON `shop`.`orders` TO `cdc`@`%`",
	}
	mysqlRevoked := []string{
		"GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`",
		"REVOKE SELECT ON `hr`.* FROM `cdc`@`%`",
	}
	pattern := []string{"GRANT SELECT ON `shop\\_%`.* TO `cdc`@`%`"}
	onlyDBSelect := []string{"GRANT SELECT ON `shop`.* TO `cdc`@`%`"}
	columnsOnly := []string{"GRANT SELECT (`id`) ON `shop`.`orders` TO `cdc`@`%`"}

	client := []string{"REPLICATION CLIENT", "BINLOG MONITOR"}
	tests := []struct {
		name  string
		lines []string
		check func(grants) bool
		want  bool
	}{
		{"ALL PRIVILEGES on *.* includes REPLICATION SLAVE", mariaAll, func(g grants) bool { return g.global("REPLICATION SLAVE") }, true},
		{"ALL PRIVILEGES on *.* includes REPLICATION CLIENT", mariaAll, func(g grants) bool { return g.global(client...) }, true},
		{"ALL PRIVILEGES on *.* includes SELECT everywhere", mariaAll, func(g grants) bool { return g.canSelect("shop", "orders") }, true},
		{"MariaDB BINLOG MONITOR stands for REPLICATION CLIENT", mariaMinimal, func(g grants) bool { return g.global(client...) }, true},
		{"MariaDB SLAVE MONITOR does not stand for REPLICATION CLIENT", mariaSlaveMonitor, func(g grants) bool { return g.global(client...) }, false},
		{"SELECT on a database covers its tables", mariaMinimal, func(g grants) bool { return g.canSelect("shop", "orders") }, true},
		{"SELECT on a database does not cover another", mariaMinimal, func(g grants) bool { return g.canSelect("hr", "staff") }, false},
		{"MySQL REPLICATION CLIENT", mysqlMinimal, func(g grants) bool { return g.global(client...) }, true},
		{"MySQL table grant covers that table", mysqlMinimal, func(g grants) bool { return g.canSelect("shop", "orders") }, true},
		{"MySQL table grant does not cover a sibling", mysqlMinimal, func(g grants) bool { return g.canSelect("shop", "users") }, false},
		{"a partial revoke takes a database away from a global SELECT", mysqlRevoked, func(g grants) bool { return g.canSelect("hr", "staff") }, false},
		{"a partial revoke leaves other databases alone", mysqlRevoked, func(g grants) bool { return g.canSelect("shop", "orders") }, true},
		{"a database pattern matches by LIKE", pattern, func(g grants) bool { return g.canSelect("shop_eu", "orders") }, true},
		{"an escaped underscore matches only an underscore", pattern, func(g grants) bool { return g.canSelect("shopXeu", "orders") }, false},
		{"a database grant is not a replication grant", onlyDBSelect, func(g grants) bool { return g.global("REPLICATION SLAVE") }, false},
		{"column privileges do not let cleave read whole rows", columnsOnly, func(g grants) bool { return g.canSelect("shop", "orders") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.check(grants(parseGrants(tt.lines))); got != tt.want {
				t.Errorf("got %v, want %v for %q", got, tt.want, tt.lines)
			}
		})
	}
}

func TestLikeMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"shop", "shop", true},
		{"shop", "shops", false},
		{"shop%", "shop", true},
		{"shop%", "shop_eu", true},
		{"%eu", "shop_eu", true},
		{"sh_p", "ship", true},
		{"sh_p", "shp", false},
		{`sh\_p`, "sh_p", true},
		{`sh\_p`, "ship", false},
		{`100\%`, "100%", true},
		{`100\%`, "1000", false},
		{"%", "", true},
	}
	for _, tt := range tests {
		if got := likeMatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("likeMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestBinlogRetention(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want time.Duration
	}{
		{"MariaDB 10.6+ keeps both, seconds win", map[string]string{"binlog_expire_logs_seconds": "86400", "expire_logs_days": "1.000000"}, 24 * time.Hour},
		{"MariaDB 10.5 has only fractional days", map[string]string{"expire_logs_days": "0.500000"}, 12 * time.Hour},
		{"MySQL 8 default of 30 days", map[string]string{"binlog_expire_logs_seconds": "2592000", "expire_logs_days": "0"}, 30 * 24 * time.Hour},
		{"MySQL 8 with only the old days setting", map[string]string{"binlog_expire_logs_seconds": "0", "expire_logs_days": "7"}, 7 * 24 * time.Hour},
		{"zero everywhere means never purged", map[string]string{"binlog_expire_logs_seconds": "0", "expire_logs_days": "0.000000"}, 0},
		{"MySQL 5.7 without expiry", map[string]string{"expire_logs_days": "0"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, from := binlogRetention(tt.vars); got != tt.want {
				t.Errorf("binlogRetention(%v) = %s (%s), want %s", tt.vars, got, from, tt.want)
			}
		})
	}
}

func TestFindingLine(t *testing.T) {
	tests := []struct {
		f    Finding
		want string
	}{
		{Finding{Status: OK, Subject: "source binlog_format", Detail: "ROW"}, "OK   source binlog_format: ROW"},
		{Finding{Status: Warn, Subject: "source GTID", Detail: "gtid_mode OFF", Fix: "turn it on"}, "WARN source GTID: gtid_mode OFF. Fix: turn it on"},
		{Finding{Status: Fail, Subject: "tables[1].shard_key", Detail: `column "uid" not found in shop.orders`, Fix: "name one of its columns"},
			`FAIL tables[1].shard_key: column "uid" not found in shop.orders. Fix: name one of its columns`},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

func TestPrivilegesOnADatabaseAndRolesFromShowGrants(t *testing.T) {
	mysqlDB := []string{
		"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`",
		"GRANT SELECT, LOCK TABLES ON `shop`.* TO `cdc`@`%`",
		"GRANT SELECT ON `hr`.`staff` TO `cdc`@`%`",
	}
	revoked := []string{
		"GRANT SELECT, LOCK TABLES ON *.* TO `cdc`@`%`",
		"REVOKE LOCK TABLES ON `shop`.* FROM `cdc`@`%`",
	}
	pattern := []string{"GRANT INSERT, UPDATE ON `shop\\_%`.* TO `w`@`%`"}
	for _, tc := range []struct {
		name  string
		lines []string
		check func(grants) bool
		want  bool
	}{
		{"LOCK TABLES on the database", mysqlDB, func(g grants) bool { return g.can("shop", "*", "LOCK TABLES") }, true},
		{"no LOCK TABLES on another database", mysqlDB, func(g grants) bool { return g.can("hr", "*", "LOCK TABLES") }, false},
		{"a table grant is not a grant on its database", mysqlDB, func(g grants) bool { return g.can("hr", "*", "SELECT") }, false},
		{"a table grant covers its table", mysqlDB, func(g grants) bool { return g.can("hr", "staff", "SELECT") }, true},
		{"a partial revoke takes LOCK TABLES away from one database", revoked, func(g grants) bool { return g.can("shop", "*", "LOCK TABLES") }, false},
		{"and leaves it on the others", revoked, func(g grants) bool { return g.can("hr", "*", "LOCK TABLES") }, true},
		{"a pattern grant covers a matching database", pattern, func(g grants) bool { return g.can("shop_eu", "*", "UPDATE") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.check(grants(parseGrants(tc.lines))); got != tc.want {
				t.Errorf("got %v, want %v for %q", got, tc.want, tc.lines)
			}
		})
	}

	for _, tc := range []struct {
		name  string
		lines []string
		want  []string
	}{
		{"MariaDB role grant", []string{"GRANT `cleave_reader` TO `u1`@`%`", "GRANT USAGE ON *.* TO `u1`@`%`", "SET DEFAULT ROLE `cleave_reader` FOR `u1`@`%`"}, []string{"`cleave_reader`"}},
		{"MySQL role grants", []string{"GRANT USAGE ON *.* TO `cdc`@`%`", "GRANT `r1`@`%`,`r2`@`%` TO `cdc`@`%`"}, []string{"`r1`@`%`", "`r2`@`%`"}},
		{"privileges and PROXY are not roles", []string{"GRANT SELECT ON `z`.* TO `u`@`%`", "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := roleGrants(tc.lines); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("roleGrants(%q) = %q, want %q", tc.lines, got, tc.want)
			}
		})
	}
}
