package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// Rows runs query on db and returns each row as one line of text: every column quoted,
// NULL as NULL, separated by |. Tests compare servers with it, independently of cleave's
// own readers.
func Rows(t testing.TB, ctx context.Context, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []string
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if i > 0 {
				b.WriteByte('|')
			}
			if v == nil {
				b.WriteString("NULL")
			} else {
				fmt.Fprintf(&b, "%q", v)
			}
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

// Columns lists the columns of database.table on db in their order.
func Columns(t testing.TB, ctx context.Context, db *sql.DB, database, table string) []string {
	t.Helper()
	var cols []string
	for _, line := range Rows(t, ctx, db, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", database, table) {
		name, err := strconv.Unquote(line)
		if err != nil {
			t.Fatalf("column of %s.%s: %v", database, table, err)
		}
		cols = append(cols, name)
	}
	return cols
}
