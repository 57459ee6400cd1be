package capture

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/cleave-dev/cleave/internal/testenv"
)

// decodedRows returns the rows of the rows events on tables of schema between from and to,
// decoded by go-mysql's decoder or, with fast, by rowsDecoder; other tests write to the same
// source at the same time, and their events are left out.
func decodedRows(t *testing.T, flavor testenv.Flavor, dsn, schema string, from, to Position, fast bool) [][][]any {
	t.Helper()
	var out [][][]any
	walkBinlog(t, string(flavor), dsn, from, to, time.Minute, func(cfg *replication.BinlogSyncerConfig) {
		if fast {
			cfg.RowsEventDecodeFunc = rowsDecoder{}.decode
		}
	}, func(_ string, ev *replication.BinlogEvent) {
		if e, ok := ev.Event.(*replication.RowsEvent); ok && string(e.Table.Schema) == schema {
			out = append(out, e.Rows)
		}
	})
	return out
}

func TestRowsDecoderReturnsWhatGoMySQLReturns(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testRowsDecoderReturnsWhatGoMySQLReturns)
}

func testRowsDecoderReturnsWhatGoMySQLReturns(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	labels := make([]string, 300)
	for i := range labels {
		labels[i] = fmt.Sprintf("'l%d'", i)
	}
	members := make([]string, 64)
	for i := range members {
		members[i] = fmt.Sprintf("'m%d'", i)
	}
	f.exec(`CREATE TABLE d (
		id INT PRIMARY KEY,
		ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
		i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
		d65 DECIMAL(65,30), d10 DECIMAL(10,0), d52 DECIMAL(5,2), d189 DECIMAL(18,9), d2010 DECIMAL(20,10), d31 DECIMAL(3,1),
		f FLOAT, db DOUBLE,
		dt DATE, tm TIME, tm1 TIME(1), tm3 TIME(3), tm6 TIME(6),
		dtm DATETIME, dtm2 DATETIME(2), dtm4 DATETIME(4), dtm6 DATETIME(6),
		ts TIMESTAMP NULL DEFAULT NULL, ts3 TIMESTAMP(3) NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
		y YEAR, b1 BIT(1), b7 BIT(7), b64 BIT(64),
		e1 ENUM('a','b','c'), e2 ENUM(` + strings.Join(labels, ",") + `), s1 SET('x','y','z'), s8 SET(` + strings.Join(members, ",") + `),
		ch CHAR(10), vc VARCHAR(20), vcl VARCHAR(300), bn BINARY(16), vb VARBINARY(300),
		tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB, tx TEXT, lt VARCHAR(20) CHARACTER SET latin1
	) DEFAULT CHARSET=utf8mb4`)
	rng := rand.New(rand.NewPCG(11, 12))
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	num := func(lo, hi int64) string {
		switch rng.IntN(6) {
		case 0:
			return strconv.FormatInt(lo, 10)
		case 1:
			return strconv.FormatInt(hi, 10)
		}
		if hi-lo <= 0 { // the full int64 range
			return strconv.FormatInt(int64(rng.Uint64()), 10)
		}
		return strconv.FormatInt(lo+rng.Int64N(hi-lo), 10)
	}
	dec := func(intDigits, frac int) string {
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteByte('-')
		}
		for k := rng.IntN(intDigits + 1); k > 0; k-- {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if b.Len() == 0 || b.String() == "-" {
			b.WriteByte('0')
		}
		if frac > 0 {
			b.WriteByte('.')
			for k := 0; k < frac; k++ {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		return "'" + b.String() + "'"
	}
	frac := func(n int) string {
		if n == 0 {
			return ""
		}
		s := fmt.Sprintf(".%06d", rng.IntN(1000000))
		return s[:n+1]
	}
	tim := func(fsp int) string {
		sign := pick("", "-")
		return fmt.Sprintf("'%s%d:%02d:%02d%s'", sign, rng.IntN(839), rng.IntN(60), rng.IntN(60), frac(fsp))
	}
	datetime := func(fsp int) string {
		return fmt.Sprintf("'%04d-%02d-%02d %02d:%02d:%02d%s'", 1000+rng.IntN(9000), 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), frac(fsp))
	}
	timestamp := func(fsp int) string {
		s := time.Unix(1+rng.Int64N(2147483646), 0).UTC().Format("2006-01-02 15:04:05")
		return "'" + s + frac(fsp) + "'"
	}
	bytesLit := func(max int) string {
		n := rng.IntN(max + 1)
		if n == 0 {
			return "''"
		}
		b := make([]byte, n)
		for k := range b {
			b[k] = byte(rng.IntN(256))
			if rng.IntN(4) == 0 {
				b[k] = 0
			}
		}
		return fmt.Sprintf("0x%x", b)
	}
	text := func(max int) string {
		return "'" + strings.Repeat(pick("a", "é", "🎉", " ", "z"), rng.IntN(max+1)) + "'"
	}
	row := func(id int) string {
		vals := []string{
			strconv.Itoa(id),
			num(-128, 127), num(0, 255), num(-32768, 32767), num(0, 65535), num(-8388608, 8388607), num(0, 16777215),
			num(-2147483648, 2147483647), num(0, 4294967295), num(-1<<63, 1<<63-1), pick("0", "18446744073709551615", strconv.FormatUint(rng.Uint64(), 10)),
			dec(35, 30), dec(10, 0), dec(3, 2), dec(9, 9), dec(10, 10), dec(2, 1),
			strconv.FormatFloat(float64(rng.Float32()*1e6-5e5), 'g', -1, 32), strconv.FormatFloat(rng.NormFloat64()*1e100, 'g', -1, 64),
			pick(fmt.Sprintf("'%04d-%02d-%02d'", 1000+rng.IntN(9000), 1+rng.IntN(12), 1+rng.IntN(28)), "'0000-00-00'"),
			tim(0), tim(1), tim(3), tim(6), datetime(0), datetime(2), datetime(4), pick(datetime(6), "'0000-00-00 00:00:00'"),
			timestamp(0), timestamp(3), timestamp(6),
			pick("0", "1901", "2155", strconv.Itoa(1901+rng.IntN(255))), pick("b'0'", "b'1'"), strconv.Itoa(rng.IntN(128)), strconv.FormatUint(rng.Uint64(), 10),
			pick("'a'", "'b'", "'c'"), fmt.Sprintf("'l%d'", rng.IntN(300)), pick("''", "'x'", "'x,z'", "'x,y,z'"), fmt.Sprintf("'m%d,m%d'", rng.IntN(64), rng.IntN(64)),
			text(10), text(20), text(300), bytesLit(16), bytesLit(300),
			bytesLit(255), bytesLit(1000), bytesLit(3000), bytesLit(70000), text(500), pick("'é'", "'Ünï'", "''"),
		}
		for k := 1; k < len(vals); k++ {
			if rng.IntN(12) == 0 {
				vals[k] = "NULL"
			}
		}
		return "(" + strings.Join(vals, ",") + ")"
	}
	start := f.sourcePosition()
	for id := 1; id <= 400; id += 20 {
		var rows []string
		for k := 0; k < 20; k++ {
			rows = append(rows, row(id+k))
		}
		f.exec("INSERT INTO d VALUES " + strings.Join(rows, ","))
	}
	f.exec(
		"UPDATE d SET ti = -ti, d65 = -d65, tm6 = ADDTIME(tm6, '0:00:01.5'), vcl = CONCAT(vcl, 'x'), bn = NULL WHERE id % 3 = 0 AND ti > -128",
		"DELETE FROM d WHERE id % 7 = 0",
	)
	end := f.sourcePosition()

	slow := decodedRows(t, e.SourceFlavor, f.env.SourceDSN, f.db, start, end, false)
	fast := decodedRows(t, e.SourceFlavor, f.env.SourceDSN, f.db, start, end, true)
	if len(slow) != len(fast) || len(slow) == 0 {
		t.Fatalf("%d rows events from go-mysql's decoder, %d from rowsDecoder", len(slow), len(fast))
	}
	compared := 0
	for i := range slow {
		if len(slow[i]) != len(fast[i]) {
			t.Fatalf("rows event %d: %d rows, rowsDecoder %d", i, len(slow[i]), len(fast[i]))
		}
		for r := range slow[i] {
			for c := range slow[i][r] {
				if !reflect.DeepEqual(slow[i][r][c], fast[i][r][c]) {
					t.Fatalf("rows event %d row %d column %d: go-mysql %#v (%T), rowsDecoder %#v (%T)", i, r, c, slow[i][r][c], slow[i][r][c], fast[i][r][c], fast[i][r][c])
				}
				compared++
			}
		}
	}
	t.Logf("%d values in %d rows events decoded alike", compared, len(slow))
}
