package reconcile

import (
	"crypto/sha1"
	"encoding/binary"
	"strings"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// The row hash.
//
// Every hashed column becomes one text part, the parts are joined with '|' and hashed:
//
//	row_hash = first 8 bytes, big endian, of SHA1(CONCAT_WS('|', part_1, ..., part_n))
//
// computed by the server (RowHashSQL) on the source and on every shard, so no row crosses
// the network to be checked. The parts are chosen so that two different stored values never
// give the same text:
//
//	kind                              part
//	CHAR/VARCHAR/TEXT, BINARY/BLOB,   HEX(col): the stored bytes, so trailing spaces, case,
//	ENUM, SET, JSON                   and the character set all count, and '|' inside a
//	                                  value cannot shift the parts
//	FLOAT                             CAST(col AS DOUBLE): the float's exact value (its own
//	                                  text keeps 6 digits, hiding the last bits)
//	DOUBLE                            the server's shortest round-trip text
//	BIT                               col+0, the number
//	integers, DECIMAL, YEAR, dates    the server's text: exact digits, DECIMAL with its scale,
//	and times                         DATETIME/TIME with their fraction digits, TIMESTAMP in
//	                                  UTC (mysqlx pins the session time zone)
//	NULL                              'N', which no part of a non-NULL value can be
//
// CONCAT_WS skips NULL arguments, so each part of a column the source declares nullable is
// wrapped in IFNULL: without it (a, NULL) and (NULL, a) would hash alike. A NOT NULL column's
// part is left bare, which renders exactly the same text (IFNULL only passes its argument's
// text through), so the hash of a row does not depend on the wrapper and RowHash needs no
// schema. Should a shard hold a NULL in a column that is NOT NULL on the source, CONCAT_WS
// skips that part there: no part contains '|' (strings are hex), so that row's text has one
// separator fewer than any source row's, and it cannot match. SHA1 rather than MD5 because the server computes it about
// twice as fast (hardware SHA instructions), and the checker's speed is the server's hash
// speed. The per-chunk aggregate is COUNT(*) and SUM(row_hash), the sum being an exact
// DECIMAL: sums over shards add up exactly to the source's sum, and unlike BIT_XOR two rows
// changed the same way do not cancel.
const nullPart = "N"

// partSQL is the SQL text of one column's part, NULL marked whatever the schema says (the
// form that reads one row's parts back, for naming changed columns).
func partSQL(c *schema.Column) string {
	return "IFNULL(" + valueSQL(c) + ",'" + nullPart + "')"
}

// hashPartSQL is partSQL as the row hash uses it: a NOT NULL column is rendered bare, which
// saves an IFNULL per column and row on both sides.
func hashPartSQL(c *schema.Column) string {
	if !c.Nullable {
		return valueSQL(c)
	}
	return partSQL(c)
}

// valueSQL renders a non-NULL value of c as its part.
func valueSQL(c *schema.Column) string {
	q := mysqlx.QuoteIdent(c.Name)
	var e string
	switch c.Kind {
	case schema.KindString, schema.KindBinary, schema.KindEnum, schema.KindSet, schema.KindJSON:
		e = "HEX(" + q + ")"
	case schema.KindFloat:
		e = "CAST(" + q + " AS DOUBLE)"
	case schema.KindBit:
		e = "(" + q + "+0)"
	default:
		e = q
	}
	return e
}

// concatSQL joins the parts of cols as the hash input.
func concatSQL(cols []*schema.Column) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = hashPartSQL(c)
	}
	return "CONCAT_WS('|'," + strings.Join(parts, ",") + ")"
}

// RowHashSQL is the SQL expression of the row hash over cols: a BIGINT UNSIGNED.
func RowHashSQL(cols []*schema.Column) string {
	return "CAST(CONV(LEFT(SHA1(" + concatSQL(cols) + "),16),16,10) AS UNSIGNED)"
}

// RowHash computes in Go what RowHashSQL computes on the server, from the parts as the
// server renders them (partSQL of each column).
func RowHash(parts []string) uint64 {
	sum := sha1.Sum([]byte(strings.Join(parts, "|")))
	return binary.BigEndian.Uint64(sum[:8])
}
