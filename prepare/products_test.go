package prepare

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

var (
	mysql97   = mysqlx.FlavorOf("9.7.4-2")
	mariadb11 = mysqlx.FlavorOf("10.11.19-MariaDB-0+deb12u1-log")
)

func TestForShardRenamesOrRefusesCollations(t *testing.T) {
	accounts := func(login, name string) *schema.Table {
		return &schema.Table{DB: "shop", Name: "accounts", PK: []int{0}, Columns: []schema.Column{
			{Name: "id", DataType: "bigint", ColumnType: "bigint unsigned"},
			{Name: "login", DataType: "varchar", ColumnType: "varchar(64)", Charset: "utf8mb4", Collation: login},
			{Name: "name", DataType: "varchar", ColumnType: "varchar(100)", Charset: "utf8mb4", Collation: name},
			{Name: "prefs", DataType: "json", ColumnType: "json"},
		}}
	}
	const body = "CREATE TABLE `shop`.`accounts` (\n" +
		"  `id` bigint unsigned NOT NULL,\n" +
		"  `login` varchar(64) CHARACTER SET utf8mb4 COLLATE %s NOT NULL COMMENT 'was COLLATE utf8mb4_0900_bin',\n" +
		"  `name` varchar(100) CHARACTER SET utf8mb4 COLLATE %s DEFAULT NULL,\n" +
		"  `prefs` json DEFAULT NULL,\n" +
		"  PRIMARY KEY (`id`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
	ddl := func(login, name, options string) string {
		return strings.Replace(strings.Replace(body, "%s", login, 1), "%s", name, 1) + options
	}
	tests := []struct {
		name       string
		def        *schema.Table
		collation  string
		products   Products
		ddl        string
		want       string
		wantNotes  int
		wantRefuse []string
	}{
		{
			name: "one product: the table's collation is stated where the server left it out",
			def:  accounts("utf8mb4_0900_bin", "utf8mb4_general_ci"), collation: "utf8mb4_0900_ai_ci",
			products: Products{mysql97, mysqlx.FlavorOf("8.0.36")},
			ddl:      ddl("utf8mb4_0900_bin", "utf8mb4_general_ci", ""),
			want:     ddl("utf8mb4_0900_bin", "utf8mb4_general_ci", " COLLATE=utf8mb4_0900_ai_ci"),
		},
		{
			name: "MySQL to MariaDB: utf8mb4_0900_bin is renamed outside quotes, a default no column uses is left to the shard",
			def:  accounts("utf8mb4_0900_bin", "utf8mb4_unicode_520_ci"), collation: "utf8mb4_0900_ai_ci",
			products:  Products{mysql97, mariadb11},
			ddl:       ddl("utf8mb4_0900_bin", "utf8mb4_unicode_520_ci", " COLLATE=utf8mb4_0900_ai_ci"),
			want:      ddl("utf8mb4_nopad_bin", "utf8mb4_unicode_520_ci", ""),
			wantNotes: 1,
		},
		{
			name: "MariaDB to MySQL: utf8mb4_nopad_bin becomes utf8mb4_0900_bin, a shared default stays",
			def:  accounts("utf8mb4_nopad_bin", "utf8mb4_general_ci"), collation: "utf8mb4_general_ci",
			products: Products{mariadb11, mysql97},
			ddl:      ddl("utf8mb4_nopad_bin", "utf8mb4_general_ci", " COLLATE=utf8mb4_general_ci"),
			want:     ddl("utf8mb4_0900_bin", "utf8mb4_general_ci", " COLLATE=utf8mb4_general_ci"),
		},
		{
			name: "MySQL to MariaDB: a column in utf8mb4_0900_ai_ci is refused by name",
			def:  accounts("utf8mb4_0900_bin", "utf8mb4_0900_ai_ci"), collation: "utf8mb4_0900_ai_ci",
			products:   Products{mysql97, mariadb11},
			ddl:        ddl("utf8mb4_0900_bin", "utf8mb4_0900_ai_ci", " COLLATE=utf8mb4_0900_ai_ci"),
			wantRefuse: []string{"shop.accounts.name varchar(100) COLLATE utf8mb4_0900_ai_ci"},
		},
		{
			name: "MariaDB to MySQL: UCA 14 and a nopad variant are refused, each by name",
			def:  accounts("utf8mb4_general_nopad_ci", "utf8mb4_uca1400_ai_ci"), collation: "utf8mb4_general_ci",
			products: Products{mariadb11, mysql97},
			ddl:      ddl("utf8mb4_general_nopad_ci", "utf8mb4_uca1400_ai_ci", " COLLATE=utf8mb4_general_ci"),
			wantRefuse: []string{"shop.accounts.login varchar(64) COLLATE utf8mb4_general_nopad_ci",
				"shop.accounts.name varchar(100) COLLATE utf8mb4_uca1400_ai_ci"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, notes, refused := forShard(sourceTable{ddl: tt.ddl, def: tt.def, collation: tt.collation}, tt.products)
			var names []string
			for _, r := range refused {
				names = append(names, r.String())
			}
			if !reflect.DeepEqual(names, tt.wantRefuse) {
				t.Fatalf("refused %q, want %q", names, tt.wantRefuse)
			}
			if refused != nil {
				return
			}
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if len(notes) != tt.wantNotes {
				t.Errorf("notes %q, want %d", notes, tt.wantNotes)
			}
		})
	}
}

func TestUnfaithfulErrorSaysWhatToDo(t *testing.T) {
	err := &UnfaithfulError{Shard: "shard0", Products: Products{mysql97, mariadb11}, Columns: []Refused{
		{Table: "shop.users", Column: "name", Type: "varchar(64)", Collation: "utf8mb4_0900_ai_ci"},
	}}
	msg := err.Error()
	for _, want := range []string{
		"shard0 (MariaDB 10.11.19) cannot hold these columns of the MySQL 9.7.4 source faithfully",
		"shop.users.name varchar(64) COLLATE utf8mb4_0900_ai_ci",
		"ALTER TABLE `shop`.`users` MODIFY `name` varchar(64) COLLATE utf8mb4_bin",
		"or use MySQL shards",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
}

func TestDiffAcrossProducts(t *testing.T) {
	source := &schema.Table{DB: "shop", Name: "a", PK: []int{0}, Columns: []schema.Column{
		{Name: "id", DataType: "int", ColumnType: "int"},
		{Name: "login", DataType: "varchar", ColumnType: "varchar(64)", Collation: "utf8mb4_0900_bin"},
		{Name: "prefs", DataType: "json", ColumnType: "json", Nullable: true},
		{Name: "y", DataType: "year", ColumnType: "year"},
	}}
	shard := func(login, prefsType, prefsColl string) *schema.Table {
		return &schema.Table{DB: "shop", Name: "a", PK: []int{0}, Columns: []schema.Column{
			{Name: "id", DataType: "int", ColumnType: "int(11)"},
			{Name: "login", DataType: "varchar", ColumnType: "varchar(64)", Collation: login},
			{Name: "prefs", DataType: prefsType, ColumnType: prefsType, Nullable: true, Collation: prefsColl},
			{Name: "y", DataType: "year", ColumnType: "year(4)"},
		}}
	}
	p := Products{mysql97, mariadb11}
	if d := Diff(source, shard("utf8mb4_nopad_bin", "longtext", "utf8mb4_bin"), false, p); d != nil {
		t.Errorf("MariaDB's spelling of the same table differs: %q", d)
	}
	if d := Diff(source, shard("utf8mb4_bin", "longtext", "utf8mb4_general_ci"), false, p); len(d) != 2 {
		t.Errorf("another collation and a JSON column in another collation: %q, want 2 differences", d)
	}
	if d := Diff(source, shard("utf8mb4_nopad_bin", "longtext", "utf8mb4_bin"), false, Products{}); len(d) != 3 {
		t.Errorf("within one product the renamed collation, LONGTEXT and its collation are differences: %q", d)
	}
}

func TestForShardParenthesizesMariaDBDefaultsForMySQL(t *testing.T) {
	create := "CREATE TABLE `shop`.`d` (\n" +
		"  `id` int(11) NOT NULL,\n" +
		"  `a` int(11) DEFAULT (1 + 2),\n" +
		"  `b` varchar(10) DEFAULT 'it''s',\n" +
		"  `c` text DEFAULT 'x',\n" +
		"  `e` date DEFAULT curdate(),\n" +
		"  `f` varchar(36) DEFAULT uuid(),\n" +
		"  `g` bit(3) DEFAULT b'101',\n" +
		"  `h` decimal(5,2) DEFAULT -1.50,\n" +
		"  `j` datetime(6) DEFAULT current_timestamp(6),\n" +
		"  `m` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT '{}' CHECK (json_valid(`m`)),\n" +
		"  PRIMARY KEY (`id`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
	want := strings.NewReplacer("DEFAULT 'x'", "DEFAULT ('x')", "DEFAULT curdate()", "DEFAULT (curdate())",
		"DEFAULT uuid()", "DEFAULT (uuid())", "DEFAULT '{}'", "DEFAULT ('{}')").Replace(create)
	def := &schema.Table{DB: "shop", Name: "d", PK: []int{0}}
	defaults := map[string]string{}
	for _, c := range []struct{ name, typ, coll, dflt string }{
		{"id", "int", "", ""}, {"a", "int", "", "(1 + 2)"}, {"b", "varchar", "utf8mb4_general_ci", "'it''s'"},
		{"c", "text", "utf8mb4_general_ci", "'x'"}, {"e", "date", "", "curdate()"}, {"f", "varchar", "utf8mb4_general_ci", "uuid()"},
		{"g", "bit", "", "b'101'"}, {"h", "decimal", "", "-1.50"}, {"j", "datetime", "", "current_timestamp(6)"},
		{"m", "longtext", "utf8mb4_bin", "'{}'"},
	} {
		def.Columns = append(def.Columns, schema.Column{Name: c.name, DataType: c.typ, ColumnType: c.typ, Collation: c.coll})
		if c.dflt != "" {
			defaults[c.name] = c.dflt
		}
	}
	got, _, refused := forShard(sourceTable{ddl: create, def: def, collation: "utf8mb4_general_ci", defaults: defaults}, Products{mariadb11, mysql97})
	if refused != nil || got != want {
		t.Errorf("refused %v; got\n%s\nwant\n%s", refused, got, want)
	}
	if got, _, _ := forShard(sourceTable{ddl: create, def: def, collation: "utf8mb4_general_ci", defaults: defaults}, Products{mariadb11, mariadb11}); got != create {
		t.Errorf("a MariaDB shard got its defaults rewritten:\n%s", got)
	}
}
