// Package schema owns cleave's view of a table definition: its columns in ordinal order,
// each with the Kind that decides how its values are encoded, compared and written, and its
// primary key. Definitions are read from information_schema of a live server; the package
// never changes a schema.
package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind is how cleave treats the values of a column.
type Kind int

// The kinds of column values. Every MySQL/MariaDB type cleave supports maps to one.
const (
	KindInvalid   Kind = iota
	KindInt            // TINYINT..BIGINT, signed
	KindUint           // TINYINT..BIGINT UNSIGNED
	KindDecimal        // DECIMAL/NUMERIC, exact text
	KindFloat          // FLOAT (32-bit)
	KindDouble         // DOUBLE/REAL
	KindDate           // DATE
	KindTime           // TIME, may be negative
	KindDateTime       // DATETIME(fsp)
	KindTimestamp      // TIMESTAMP(fsp), carried in UTC
	KindYear           // YEAR
	KindString         // CHAR, VARCHAR, TEXT (and MariaDB's JSON, which is LONGTEXT)
	KindBinary         // BINARY, VARBINARY, BLOB
	KindBit            // BIT(n), as an unsigned integer
	KindEnum           // ENUM, as its label
	KindSet            // SET, as its comma-joined labels
	KindJSON           // MySQL 8 native JSON, as JSON text
)

var kindNames = [...]string{"invalid", "int", "uint", "decimal", "float", "double", "date", "time", "datetime", "timestamp", "year", "string", "binary", "bit", "enum", "set", "json"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Integer reports whether values of k are integers (compared numerically).
func (k Kind) Integer() bool {
	return k == KindInt || k == KindUint || k == KindYear || k == KindBit
}

// Column is one column of a table.
type Column struct {
	Name       string
	Kind       Kind
	DataType   string // information_schema DATA_TYPE, lower case: "bigint", "varchar"
	ColumnType string // information_schema COLUMN_TYPE: "bigint(20) unsigned", "enum('a','b')"
	Nullable   bool
	Generated  bool     // virtual or stored generated column: never written by cleave
	FSP        int      // fractional seconds precision of TIME/DATETIME/TIMESTAMP
	Elements   []string // labels of ENUM and SET, in definition order
	Charset    string   // character set of string columns
	Collation  string
	// AutoUpdated: ON UPDATE CURRENT_TIMESTAMP. The server stamps the column with its own
	// clock on every UPDATE (ON DUPLICATE KEY UPDATE too) that changes the row without
	// assigning the column, so a writer that copies rows must always assign it.
	AutoUpdated bool
}

// Table is a table definition.
type Table struct {
	DB, Name string
	Columns  []Column
	// PK holds the indexes into Columns of the primary key, in key order.
	PK []int
}

// ErrNoTable is returned by Load when the table does not exist.
var ErrNoTable = errors.New("table does not exist")

// ErrNoPrimaryKey is returned by Load when the table has no primary key.
var ErrNoPrimaryKey = errors.New("table has no primary key")

// Load reads the definition of db.table. A missing table wraps ErrNoTable; a table without
// a primary key wraps ErrNoPrimaryKey (cleave cannot key its events or check its rows
// without one) and is returned with the error, for callers that only want to report it.
func Load(ctx context.Context, conn *sql.DB, db, table string) (*Table, error) {
	rows, err := conn.QueryContext(ctx, `
		SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, EXTRA,
		       COALESCE(DATETIME_PRECISION, 0), COALESCE(CHARACTER_SET_NAME, ''), COALESCE(COLLATION_NAME, '')
		FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
		ORDER BY ORDINAL_POSITION`, db, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s.%s: %w", db, table, err)
	}
	defer rows.Close()
	t := &Table{DB: db, Name: table}
	for rows.Next() {
		var c Column
		var nullable, extra string
		if err := rows.Scan(&c.Name, &c.DataType, &c.ColumnType, &nullable, &extra, &c.FSP, &c.Charset, &c.Collation); err != nil {
			return nil, fmt.Errorf("read columns of %s.%s: %w", db, table, err)
		}
		c.DataType = strings.ToLower(c.DataType)
		c.Nullable = nullable == "YES"
		c.Generated = generatedExtra(extra)
		// MySQL says "on update CURRENT_TIMESTAMP(6)", MariaDB "on update current_timestamp(6)".
		c.AutoUpdated = strings.Contains(strings.ToLower(extra), "on update")
		k, err := KindOf(c.DataType, c.ColumnType)
		if err != nil {
			return nil, fmt.Errorf("%s.%s column %s: %w", db, table, c.Name, err)
		}
		c.Kind = k
		if k == KindEnum || k == KindSet {
			c.Elements = parseElements(c.ColumnType)
		}
		t.Columns = append(t.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s.%s: %w", db, table, err)
	}
	if len(t.Columns) == 0 {
		return nil, fmt.Errorf("%s.%s: %w", db, table, ErrNoTable)
	}

	keyRows, err := conn.QueryContext(ctx, `
		SELECT COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'
		ORDER BY SEQ_IN_INDEX`, db, table)
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", db, table, err)
	}
	defer keyRows.Close()
	for keyRows.Next() {
		var name string
		if err := keyRows.Scan(&name); err != nil {
			return nil, fmt.Errorf("read primary key of %s.%s: %w", db, table, err)
		}
		i := t.ColumnIndex(name)
		if i < 0 {
			return nil, fmt.Errorf("%s.%s: primary key column %s not among the columns", db, table, name)
		}
		t.PK = append(t.PK, i)
	}
	if err := keyRows.Err(); err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", db, table, err)
	}
	if len(t.PK) == 0 {
		return t, fmt.Errorf("%s.%s: %w: add one (cleave keys every change event and every checked row by it)", db, table, ErrNoPrimaryKey)
	}
	return t, nil
}

// generatedExtra reports whether information_schema's EXTRA marks a generated column:
// "VIRTUAL GENERATED" or "STORED GENERATED" (MariaDB also says "PERSISTENT GENERATED").
// MySQL marks a column whose DEFAULT is an expression (DEFAULT CURRENT_TIMESTAMP) with
// "DEFAULT_GENERATED": that column holds whatever was written to it and must be copied.
func generatedExtra(extra string) bool {
	e := strings.ToUpper(extra)
	return strings.Contains(e, "VIRTUAL GENERATED") || strings.Contains(e, "STORED GENERATED") ||
		strings.Contains(e, "PERSISTENT GENERATED")
}

// ColumnIndex returns the index of the named column (case-insensitive, as MySQL), or -1.
func (t *Table) ColumnIndex(name string) int {
	for i := range t.Columns {
		if strings.EqualFold(t.Columns[i].Name, name) {
			return i
		}
	}
	return -1
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	if i := t.ColumnIndex(name); i >= 0 {
		return &t.Columns[i]
	}
	return nil
}

// PKNames returns the primary key column names in key order.
func (t *Table) PKNames() []string {
	names := make([]string, len(t.PK))
	for i, c := range t.PK {
		names[i] = t.Columns[c].Name
	}
	return names
}

// FullName is db.table.
func (t *Table) FullName() string { return t.DB + "." + t.Name }

// KindOf maps an information_schema DATA_TYPE and COLUMN_TYPE to a Kind. A type cleave
// cannot carry faithfully (spatial types, say) is an error naming it.
func KindOf(dataType, columnType string) (Kind, error) {
	unsigned := strings.Contains(strings.ToLower(columnType), "unsigned")
	switch strings.ToLower(dataType) {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		if unsigned {
			return KindUint, nil
		}
		return KindInt, nil
	case "decimal", "numeric":
		return KindDecimal, nil
	case "float":
		return KindFloat, nil
	case "double", "real", "double precision":
		return KindDouble, nil
	case "date":
		return KindDate, nil
	case "time":
		return KindTime, nil
	case "datetime":
		return KindDateTime, nil
	case "timestamp":
		return KindTimestamp, nil
	case "year":
		return KindYear, nil
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		return KindString, nil
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return KindBinary, nil
	case "bit":
		return KindBit, nil
	case "enum":
		return KindEnum, nil
	case "set":
		return KindSet, nil
	case "json":
		return KindJSON, nil
	}
	return KindInvalid, fmt.Errorf("column type %q is not supported by cleave (supported: integers, DECIMAL, FLOAT, DOUBLE, date and time types, YEAR, CHAR/VARCHAR/TEXT, BINARY/VARBINARY/BLOB, BIT, ENUM, SET, JSON); exclude the table or change the column", columnType)
}

// parseElements extracts the quoted labels of enum('a','b') or set(...); a quote inside a
// label is doubled, as SHOW CREATE TABLE writes it.
func parseElements(columnType string) []string {
	open := strings.IndexByte(columnType, '(')
	close := strings.LastIndexByte(columnType, ')')
	if open < 0 || close <= open {
		return nil
	}
	body := columnType[open+1 : close]
	var out []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(body); i++ {
		ch := body[i]
		switch {
		case !in && ch == '\'':
			in = true
			cur.Reset()
		case in && ch == '\'' && i+1 < len(body) && body[i+1] == '\'':
			cur.WriteByte('\'')
			i++
		case in && ch == '\'':
			in = false
			out = append(out, cur.String())
		case in && ch == '\\' && i+1 < len(body):
			cur.WriteByte(body[i+1])
			i++
		case in:
			cur.WriteByte(ch)
		}
	}
	return out
}
