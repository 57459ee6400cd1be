package prepare

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// autoIncrementOption is the AUTO_INCREMENT=N table option: the source's next id means
// nothing on a shard, and left in it would make two prepares of one table differ.
var autoIncrementOption = regexp.MustCompile(`\s+AUTO_INCREMENT=\d+`)

// fkName reads the constraint name of a foreign key definition line.
var fkLine = regexp.MustCompile("(?i)^(?:CONSTRAINT\\s+(`(?:[^`]|``)*`|\\S+)\\s+)?FOREIGN\\s+KEY\\b")

// ShardDDL rewrites the source's SHOW CREATE TABLE output (with quoted identifiers, as
// sql_quote_show_create=1 prints it) into the CREATE TABLE statement for the shard
// table db.<same name>:
//
//   - the AUTO_INCREMENT=N table option is removed;
//   - FOREIGN KEY constraints are removed, and their names returned. A parent row may live
//     on another shard than its child (routing decides per table, and broadcast or
//     re-keyed tables break any pairing), and the sinks apply each Kafka partition on its
//     own, not in the order the constraints need: a shard FK would reject or cascade-delete
//     rows that the source holds. Referential integrity stays the source's job;
//   - with addVersion, the bookkeeping column shardmeta.VersionColumn is appended after
//     the last column.
//
// Everything else (columns, indexes, CHECK constraints, engine, charset, collation,
// comments, partitioning) is kept as it is.
func ShardDDL(create, db string, addVersion bool) (ddl string, droppedFKs []string, err error) {
	lines := strings.Split(strings.TrimRight(create, "\n"), "\n")
	header := lines[0]
	const prefix = "CREATE TABLE `"
	if !strings.HasPrefix(header, prefix) || !strings.HasSuffix(header, " (") {
		return "", nil, fmt.Errorf("unexpected SHOW CREATE TABLE header %q (want CREATE TABLE `name` ()", header)
	}
	name := header[len("CREATE TABLE ") : len(header)-len(" (")]

	closing := -1
	for i := 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], ")") {
			closing = i
			break
		}
	}
	if closing < 0 {
		return "", nil, fmt.Errorf("SHOW CREATE TABLE of %s has no closing parenthesis", name)
	}

	// SHOW CREATE TABLE prints one definition per line (string literals have their
	// newlines escaped), each but the last ending in a comma.
	var defs []string
	lastColumn := -1
	for _, l := range lines[1:closing] {
		def := strings.TrimSuffix(strings.TrimSpace(l), ",")
		if m := fkLine.FindStringSubmatch(def); m != nil {
			fk := m[1]
			if fk == "" {
				fk = "(unnamed)"
			}
			droppedFKs = append(droppedFKs, strings.Trim(fk, "`"))
			continue
		}
		defs = append(defs, def)
		if strings.HasPrefix(def, "`") {
			lastColumn = len(defs) - 1
		}
	}
	if lastColumn < 0 {
		return "", nil, fmt.Errorf("SHOW CREATE TABLE of %s lists no quoted column", name)
	}
	if addVersion {
		defs = append(defs[:lastColumn+1], append([]string{shardmeta.VersionColumnDDL}, defs[lastColumn+1:]...)...)
	}

	var b strings.Builder
	b.WriteString("CREATE TABLE " + mysqlx.QuoteIdent(db) + "." + name + " (\n")
	for i, d := range defs {
		b.WriteString("  " + d)
		if i < len(defs)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString(autoIncrementOption.ReplaceAllString(lines[closing], ""))
	for _, l := range lines[closing+1:] {
		b.WriteString("\n" + l)
	}
	return b.String(), droppedFKs, nil
}

// intWidth is the display width of integer types (and YEAR's 4), which MySQL 8.0.19+ no
// longer prints and which changes nothing about the values.
var intWidth = regexp.MustCompile(`^(tinyint|smallint|mediumint|int|bigint|year)\(\d+\)`)

func normalType(columnType string) string {
	return intWidth.ReplaceAllString(strings.ToLower(strings.TrimSpace(columnType)), "$1")
}

// Diff lists how a shard table differs from its source table in what cleave relies on:
// the columns (name, type, nullability, character set and collation, order) and the
// primary key. The bookkeeping column shardmeta.VersionColumn is expected on the shard
// when withVersion is set (and ignored otherwise); it is not a difference. Each entry
// reads "column total: source decimal(12,2), shard decimal(10,2)". Across products (p),
// what the shard's product spells otherwise is no difference: a collation under its name
// there, MySQL's JSON as MariaDB's LONGTEXT COLLATE utf8mb4_bin.
func Diff(source, shard *schema.Table, withVersion bool, p Products) []string {
	var diffs []string
	var shardCols []schema.Column
	var version *schema.Column
	for i, c := range shard.Columns {
		if strings.EqualFold(c.Name, shardmeta.VersionColumn) {
			version = &shard.Columns[i]
			continue
		}
		shardCols = append(shardCols, c)
	}
	if withVersion {
		switch {
		case version == nil:
			diffs = append(diffs, fmt.Sprintf("column %s: missing on the shard (cleave keeps each row's version in it)", shardmeta.VersionColumn))
		case version.DataType != "bigint" || !strings.Contains(strings.ToLower(version.ColumnType), "unsigned") || version.Nullable:
			diffs = append(diffs, fmt.Sprintf("column %s: is %s%s on the shard, want BIGINT UNSIGNED NOT NULL", shardmeta.VersionColumn, version.ColumnType, nullWord(version.Nullable, " ")))
		}
	}

	byName := func(cols []schema.Column, name string) *schema.Column {
		for i := range cols {
			if strings.EqualFold(cols[i].Name, name) {
				return &cols[i]
			}
		}
		return nil
	}
	before := len(diffs)
	for _, sc := range source.Columns {
		dc := byName(shardCols, sc.Name)
		if dc == nil {
			diffs = append(diffs, fmt.Sprintf("column %s: source %s, missing on the shard", sc.Name, sc.ColumnType))
			continue
		}
		if sc.Nullable != dc.Nullable {
			diffs = append(diffs, fmt.Sprintf("column %s: source %s, shard %s", sc.Name, nullWord(sc.Nullable, ""), nullWord(dc.Nullable, "")))
		}
		if sc.DataType == "json" && p.cross() && !p.Shard.NativeJSON() {
			if dc.DataType != "longtext" || dc.Collation != "utf8mb4_bin" {
				diffs = append(diffs, fmt.Sprintf("column %s: source json, shard %s COLLATE %s (%s keeps JSON as longtext COLLATE utf8mb4_bin)", sc.Name, dc.ColumnType, orNone(dc.Collation), p.Shard.Product()))
			}
			continue
		}
		if normalType(sc.ColumnType) != normalType(dc.ColumnType) {
			diffs = append(diffs, fmt.Sprintf("column %s: source %s, shard %s", sc.Name, sc.ColumnType, dc.ColumnType))
		}
		// Collation decides which strings are equal: a primary key that is unique on the
		// source could collide on the shard, and the checker would compare differently.
		if want, ok := p.collation(sc.Collation); !ok || want != dc.Collation {
			diffs = append(diffs, fmt.Sprintf("column %s: source collation %s, shard %s", sc.Name, orNone(sc.Collation), orNone(dc.Collation)))
		}
	}
	for _, dc := range shardCols {
		if byName(source.Columns, dc.Name) == nil {
			diffs = append(diffs, fmt.Sprintf("column %s: shard %s, not in the source", dc.Name, dc.ColumnType))
		}
	}
	if len(diffs) == before {
		// Same columns: their order may still differ.
		src, dst := names(source.Columns), names(shardCols)
		if !strings.EqualFold(strings.Join(src, ","), strings.Join(dst, ",")) {
			diffs = append(diffs, fmt.Sprintf("column order: source (%s), shard (%s)", strings.Join(src, ", "), strings.Join(dst, ", ")))
		}
	}

	if a, b := strings.Join(source.PKNames(), ", "), strings.Join(shard.PKNames(), ", "); !strings.EqualFold(a, b) {
		diffs = append(diffs, fmt.Sprintf("primary key: source (%s), shard (%s)", a, b))
	}
	return diffs
}

func names(cols []schema.Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}

func nullWord(nullable bool, lead string) string {
	if nullable {
		return lead + "NULL"
	}
	return lead + "NOT NULL"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
