package prepare

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/schema"
)

func TestShardDDL(t *testing.T) {
	tests := []struct {
		name       string
		create     string
		addVersion bool
		want       string
		wantFKs    []string
	}{
		{
			name: "AUTO_INCREMENT=N goes, the column's AUTO_INCREMENT stays, the version column follows the last column",
			create: "CREATE TABLE `users` (\n" +
				"  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n" +
				"  `email` varchar(190) NOT NULL,\n" +
				"  PRIMARY KEY (`id`),\n" +
				"  UNIQUE KEY `email` (`email`)\n" +
				") ENGINE=InnoDB AUTO_INCREMENT=1001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
			addVersion: true,
			want: "CREATE TABLE `shop`.`users` (\n" +
				"  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n" +
				"  `email` varchar(190) NOT NULL,\n" +
				"  `_cleave_version` BIGINT UNSIGNED NOT NULL DEFAULT 0,\n" +
				"  PRIMARY KEY (`id`),\n" +
				"  UNIQUE KEY `email` (`email`)\n" +
				") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
		},
		{
			name: "named and unnamed foreign keys go, CHECK constraints and the FK's index stay, the last comma is fixed",
			create: "CREATE TABLE `orders` (\n" +
				"  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n" +
				"  `user_id` bigint(20) unsigned NOT NULL,\n" +
				"  `total` decimal(12,2) DEFAULT NULL,\n" +
				"  PRIMARY KEY (`id`,`user_id`),\n" +
				"  KEY `user_id` (`user_id`),\n" +
				"  CONSTRAINT `fk_u` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE CASCADE,\n" +
				"  CONSTRAINT `ck` CHECK (`total` > 0),\n" +
				"  FOREIGN KEY (`id`) REFERENCES `users` (`id`)\n" +
				") ENGINE=InnoDB AUTO_INCREMENT=100 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci COMMENT='orders'",
			want: "CREATE TABLE `shop`.`orders` (\n" +
				"  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n" +
				"  `user_id` bigint(20) unsigned NOT NULL,\n" +
				"  `total` decimal(12,2) DEFAULT NULL,\n" +
				"  PRIMARY KEY (`id`,`user_id`),\n" +
				"  KEY `user_id` (`user_id`),\n" +
				"  CONSTRAINT `ck` CHECK (`total` > 0)\n" +
				") ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci COMMENT='orders'",
			wantFKs: []string{"fk_u", "(unnamed)"},
		},
		{
			name: "text that mentions a foreign key or AUTO_INCREMENT=5 inside a column comment stays",
			create: "CREATE TABLE `notes` (\n" +
				"  `id` int(11) NOT NULL,\n" +
				"  `body` varchar(50) NOT NULL DEFAULT 'a\\nb' COMMENT 'was CONSTRAINT `x` FOREIGN KEY, AUTO_INCREMENT=5',\n" +
				"  PRIMARY KEY (`id`)\n" +
				") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
			want: "CREATE TABLE `shop`.`notes` (\n" +
				"  `id` int(11) NOT NULL,\n" +
				"  `body` varchar(50) NOT NULL DEFAULT 'a\\nb' COMMENT 'was CONSTRAINT `x` FOREIGN KEY, AUTO_INCREMENT=5',\n" +
				"  PRIMARY KEY (`id`)\n" +
				") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
		},
		{
			name: "MySQL 8 form with a partition clause after the table options",
			create: "CREATE TABLE `events` (\n" +
				"  `id` bigint NOT NULL AUTO_INCREMENT,\n" +
				"  `at` datetime(6) NOT NULL,\n" +
				"  PRIMARY KEY (`id`,`at`),\n" +
				"  CONSTRAINT `events_ibfk_1` FOREIGN KEY (`id`) REFERENCES `other` (`id`)\n" +
				") ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci\n" +
				"/*!50100 PARTITION BY RANGE (year(`at`))\n" +
				"(PARTITION p0 VALUES LESS THAN (2020) ENGINE = InnoDB,\n" +
				" PARTITION p1 VALUES LESS THAN MAXVALUE ENGINE = InnoDB) */",
			addVersion: true,
			want: "CREATE TABLE `shop`.`events` (\n" +
				"  `id` bigint NOT NULL AUTO_INCREMENT,\n" +
				"  `at` datetime(6) NOT NULL,\n" +
				"  `_cleave_version` BIGINT UNSIGNED NOT NULL DEFAULT 0,\n" +
				"  PRIMARY KEY (`id`,`at`)\n" +
				") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci\n" +
				"/*!50100 PARTITION BY RANGE (year(`at`))\n" +
				"(PARTITION p0 VALUES LESS THAN (2020) ENGINE = InnoDB,\n" +
				" PARTITION p1 VALUES LESS THAN MAXVALUE ENGINE = InnoDB) */",
			wantFKs: []string{"events_ibfk_1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fks, err := ShardDDL(tt.create, "shop", tt.addVersion)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if !reflect.DeepEqual(fks, tt.wantFKs) {
				t.Errorf("dropped foreign keys %q, want %q", fks, tt.wantFKs)
			}
		})
	}
}

func TestShardDDLRefusesWhatItCannotRead(t *testing.T) {
	for _, create := range []string{
		"CREATE TABLE orders (\n  id int NOT NULL,\n  PRIMARY KEY (id)\n) ENGINE=InnoDB",
		"CREATE VIEW `v` AS select 1",
		"CREATE TABLE `t` (\n  `id` int NOT NULL",
	} {
		if _, _, err := ShardDDL(create, "shop", true); err == nil {
			t.Errorf("ShardDDL accepted %q", create)
		}
	}
}

func col(name, columnType string, nullable bool) schema.Column {
	dataType, _, _ := strings.Cut(columnType, "(")
	dataType, _, _ = strings.Cut(dataType, " ")
	c := schema.Column{Name: name, DataType: dataType, ColumnType: columnType, Nullable: nullable}
	if dataType == "varchar" {
		c.Charset, c.Collation = "utf8mb4", "utf8mb4_bin"
	}
	return c
}

func TestDiff(t *testing.T) {
	source := func() *schema.Table {
		return &schema.Table{DB: "shop", Name: "orders", PK: []int{0}, Columns: []schema.Column{
			col("id", "bigint(20) unsigned", false),
			col("user_id", "bigint(20) unsigned", false),
			col("total", "decimal(12,2)", false),
			col("note", "varchar(20)", true),
		}}
	}
	withVersion := func(tb *schema.Table) *schema.Table {
		tb.Columns = append(tb.Columns, col("_cleave_version", "bigint(20) unsigned", false))
		return tb
	}
	tests := []struct {
		name        string
		shard       func() *schema.Table
		withVersion bool
		want        []string
	}{
		{"the source plus the version column is no difference", func() *schema.Table { return withVersion(source()) }, true, nil},
		{"a table with a version_column needs no bookkeeping column", source, false, nil},
		{"a leftover bookkeeping column is no difference", func() *schema.Table { return withVersion(source()) }, false, nil},
		{"MySQL 8 without integer display widths is no difference", func() *schema.Table {
			tb := withVersion(source())
			tb.Columns[0].ColumnType, tb.Columns[1].ColumnType, tb.Columns[4].ColumnType = "bigint unsigned", "bigint unsigned", "bigint unsigned"
			return tb
		}, true, nil},
		{"a missing bookkeeping column", source, true,
			[]string{"column _cleave_version: missing on the shard (cleave keeps each row's version in it)"}},
		{"a changed type", func() *schema.Table {
			tb := withVersion(source())
			tb.Columns[2].ColumnType = "decimal(10,2)"
			return tb
		}, true, []string{"column total: source decimal(12,2), shard decimal(10,2)"}},
		{"a changed nullability", func() *schema.Table {
			tb := withVersion(source())
			tb.Columns[3].Nullable = false
			return tb
		}, true, []string{"column note: source NULL, shard NOT NULL"}},
		{"a changed collation", func() *schema.Table {
			tb := withVersion(source())
			tb.Columns[3].Collation = "utf8mb4_general_ci"
			return tb
		}, true, []string{"column note: source collation utf8mb4_bin, shard utf8mb4_general_ci"}},
		{"a missing and an extra column", func() *schema.Table {
			tb := withVersion(source())
			tb.Columns[3] = col("memo", "text", true)
			return tb
		}, true, []string{"column note: source varchar(20), missing on the shard", "column memo: shard text, not in the source"}},
		{"another column order", func() *schema.Table {
			tb := withVersion(source())
			tb.Columns[1], tb.Columns[2] = tb.Columns[2], tb.Columns[1]
			tb.PK = []int{0}
			return tb
		}, true, []string{"column order: source (id, user_id, total, note), shard (id, total, user_id, note)"}},
		{"another primary key", func() *schema.Table {
			tb := withVersion(source())
			tb.PK = []int{0, 1}
			return tb
		}, true, []string{"primary key: source (id), shard (id, user_id)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(source(), tt.shard(), tt.withVersion, Products{})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff = %q\nwant   %q", got, tt.want)
			}
		})
	}
}
