package reconcile

import (
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// The row hash.
//
// Every hashed column becomes one text part, the parts are joined with '|' and hashed:
//
//	row_hash = first 8 bytes, big endian, of SHA-256(CONCAT_WS('|', part_1, ..., part_n))
//
// computed by the server (RowHashSQL) on the source and on every shard, so no row crosses
// the network to be checked. The parts are chosen so that two different stored values never
// give the same text, and so that MariaDB and MySQL render a value the same way (a split may
// mix them; TestRowHashIsTheSameOnMariaDBAndMySQL holds every kind to it):
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
// Three kinds have no text both products share, and are rendered in Go on a split that
// mixes them (markCanon; TestRowHashIsTheSameOnMariaDBAndMySQL found the first two):
//
//   - DOUBLE: both render the exact value, but not alike: 1.35429804664959e-10 on MySQL is
//     0.000000000135429804664959 on MariaDB (279 of 20,000 random doubles differed).
//   - FLOAT: CAST(f AS DOUBLE) on MySQL loses the 17th digit of some negative values
//     (-1.1754943508222875e-38 becomes -1.175494350822288e-38; 1,710 of 20,000 random
//     floats), which still tells floats apart but differs from MariaDB's text.
//   - JSON: MySQL stores a document and renders it normalized (keys sorted by length, 1e2
//     as 100.0, "\u00e9" as é); MariaDB's JSON is LONGTEXT, kept as written.
//
// There the server sends, per row, the SHA-256 of its other parts (so that it still does
// the work of rendering and hashing them) and the raw text of these columns; Go renders
// each by value (a double by its shortest exact form, a float as float32, JSON by
// canonicalJSON) and hashes the lot:
//
//	row_hash = first 8 bytes of SHA-256(hex(SHA-256(CONCAT_WS('|', other parts))) '|' canon_1 '|' ...)
//
// a different value than RowHashSQL's, but the same on every server of that split, which is
// all the comparison needs. Every row then crosses the network: a mixed split with such
// columns checks slower (see streamAggregate).
//
// CONCAT_WS skips NULL arguments, so each part of a column the source declares nullable is
// wrapped in IFNULL: without it (a, NULL) and (NULL, a) would hash alike. A NOT NULL column's
// part is left bare, which renders exactly the same text (IFNULL only passes its argument's
// text through), so the hash of a row does not depend on the wrapper and RowHash needs no
// schema. Should a shard hold a NULL in a column that is NOT NULL on the source, CONCAT_WS
// skips that part there: no part contains '|' (strings are hex), so that row's text has one
// separator fewer than any source row's, and it cannot match.
//
// The per-chunk aggregate is COUNT(*) and SUM(row_hash), the sum being an exact DECIMAL:
// sums over shards add up exactly to the source's sum, and unlike BIT_XOR two rows changed
// the same way do not cancel. The row hash behaves as a random function of the row text
// (SHA-256), so a set of changed rows leaves the sum unchanged with probability about 2^-64,
// whatever the changes have in common.
//
// Why SHA-256: it is the one non-linear digest every server has. MySQL 9.6 removed MD5()
// and SHA1() (component_classic_hashing brings them back, but a checker cannot require a
// component), and a split may mix products, so both sides must use a function both have;
// CRC32 is linear. On MariaDB 10.11 SHA2(...,256) costs what the SHA1 this hash used before
// cost: the full aggregate over 1M rows of a 9-column table, five runs of each interleaved,
// took 2.15-2.80 s of server CPU with SHA1 and 2.27-2.86 s with SHA-256 (a shared machine
// under load; the digest itself is about 0.15 µs of the per-row cost below either way).
//
// What it costs, per row on MariaDB 10.11 (the same table): reading the row 0.08 µs,
// rendering the parts and joining them about 0.85 µs (a DOUBLE's text alone 0.2, a TEXT's
// hex 0.16), the digest 0.15, CONV and CAST to a number 0.25, the DECIMAL SUM 0.07: about
// 1.3 µs in all on a quiet machine. Cheaper digests were measured and rejected: MD5 costs
// 0.5 µs a call there. A 64-bit non-linear value from CRCs (CRC32(text) * CRC32C(text))
// must render the row twice, since the server does not share a subexpression, and measured
// as slow as a digest with CONV for a weaker guarantee (and MySQL has no CRC32C). Raw
// strings with their lengths instead of HEX measured slower.
//
// A change of this definition changes every sum: the state file of a resumable run records
// the hash it was made with (stateVersion).
const nullPart = "N"

// canonKind says how a column's part is rendered on a split whose products render it
// differently.
type canonKind uint8

const (
	canonNone   canonKind = iota // the server's part (partSQL), the same on every product
	canonDouble                  // the server's exact text, re-rendered from its value
	canonFloat                   // CAST AS DOUBLE's text, read back as the float it is
	canonJSON                    // the document, rendered by canonicalJSON
)

// markCanon marks the columns of t whose parts a shard of another product, or whose JSON
// column of the other storage, would render differently from the source.
func (t *tableInfo) markCanon(shard *schema.Table, mixed bool) {
	if t.canon == nil {
		t.canon = make([]canonKind, len(t.hashed))
	}
	for i, c := range t.hashed {
		sc := shard.Column(c.Name)
		switch {
		case (c.Kind == schema.KindJSON) != (sc.Kind == schema.KindJSON):
			t.canon[i] = canonJSON
		case !mixed:
		case c.Kind == schema.KindDouble:
			t.canon[i] = canonDouble
		case c.Kind == schema.KindFloat:
			t.canon[i] = canonFloat
		}
	}
}

// planHash builds the select lists of the table's hash: rowHash for SQL and, when a column
// is canonical, hashSels and partSels for Go.
func (t *tableInfo) planHash() {
	if t.canon == nil {
		t.canon = make([]canonKind, len(t.hashed))
	}
	t.rowHash = RowHashSQL(t.hashed)
	t.partSels = make([]string, len(t.hashed))
	t.goHash, t.subHash, t.hashSels = false, false, nil
	var rest []*schema.Column
	var raw []string
	for i, c := range t.hashed {
		q := mysqlx.QuoteIdent(c.Name)
		switch t.canon[i] {
		case canonNone:
			t.partSels[i] = partSQL(c)
			rest = append(rest, c)
			continue
		case canonFloat:
			q = "CAST(" + q + " AS DOUBLE)"
		}
		t.goHash = true
		t.partSels[i] = q
		raw = append(raw, q)
	}
	if len(rest) > 0 {
		t.subHash = true
		t.hashSels = append(t.hashSels, "SHA2("+concatSQL(rest)+",256)")
	}
	t.hashSels = append(t.hashSels, raw...)
}

// canonPart renders a canonical column's raw text (nil: NULL) as its part.
func canonPart(k canonKind, b []byte) string {
	if b == nil {
		return nullPart
	}
	switch k {
	case canonDouble:
		if f, err := strconv.ParseFloat(string(b), 64); err == nil {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	case canonFloat:
		if f, err := strconv.ParseFloat(string(b), 64); err == nil {
			return strconv.FormatFloat(float64(float32(f)), 'g', -1, 32)
		}
	case canonJSON:
		if doc, ok := canonicalJSON(b); ok {
			b = doc
		}
		return strings.ToUpper(hex.EncodeToString(b))
	}
	return string(b)
}

// renderParts turns a row's partSels, as a server sent them, into its parts.
func (t *tableInfo) renderParts(raw []sql.RawBytes) []string {
	parts := make([]string, len(raw))
	for i, b := range raw {
		if t.canon[i] == canonNone {
			parts[i] = string(b)
		} else {
			parts[i] = canonPart(t.canon[i], b)
		}
	}
	return parts
}

// goRowHash is the row hash of a row's hashSels, as a server sent them.
func (t *tableInfo) goRowHash(raw []sql.RawBytes) uint64 {
	parts := make([]string, 0, len(raw))
	i := 0
	if t.subHash {
		parts = append(parts, string(raw[0]))
		i = 1
	}
	for _, k := range t.canon {
		if k != canonNone {
			parts = append(parts, canonPart(k, raw[i]))
			i++
		}
	}
	return RowHash(parts)
}

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
	return "CAST(CONV(LEFT(SHA2(" + concatSQL(cols) + ",256),16),16,10) AS UNSIGNED)"
}

// RowHash computes in Go what RowHashSQL computes on the server, from the parts as the
// server renders them (partSQL of each column).
func RowHash(parts []string) uint64 {
	sum := sha256.Sum256([]byte(strings.Join(parts, "|")))
	return binary.BigEndian.Uint64(sum[:8])
}
