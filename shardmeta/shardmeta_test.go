package shardmeta

import (
	"strconv"
	"strings"
	"testing"
)

// The row key column is spelled out in the statement; it must be as wide as RowKeyMax, the
// bound the reverse sink checks keys against.
func TestRowVersionsKeyColumnIsRowKeyMaxWide(t *testing.T) {
	want := "row_key VARBINARY(" + strconv.Itoa(RowKeyMax) + ") NOT NULL"
	if !strings.Contains(RowVersionsStatement, want) {
		t.Errorf("RowVersionsStatement lacks %q:\n%s", want, RowVersionsStatement)
	}
}
