package capture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// kcatRecords reads every message of topic with kcat, the way an operator would look at it.
func kcatRecords(t *testing.T, brokers []string, topic string) []record {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		msg := "kcat is not installed (scripts/services.sh up installs it; or apt-get install kcat)"
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(kcat, "-C", "-b", strings.Join(brokers, ","), "-t", topic, "-e", "-q", "-J").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	var recs []record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var m struct {
			Partition int     `json:"partition"`
			Offset    int64   `json:"offset"`
			Key       *string `json:"key"`
			Payload   string  `json:"payload"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("kcat line %q: %v", sc.Text(), err)
		}
		ev, err := event.Unmarshal([]byte(m.Payload))
		if err != nil {
			t.Fatalf("kcat payload %q: %v", m.Payload, err)
		}
		key := ""
		if m.Key != nil {
			key = *m.Key
		}
		recs = append(recs, record{partition: m.Partition, offset: m.Offset, key: key, ev: ev})
	}
	return recs
}

func TestEveryColumnTypeReadBackWithKcatEqualsTheSource(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testEveryColumnTypeReadBackWithKcatEqualsTheSource)
}

func testEveryColumnTypeReadBackWithKcatEqualsTheSource(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	f.exec(`CREATE TABLE types (
		id INT PRIMARY KEY,
		ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
		mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
		dec65 DECIMAL(65,30), dec52 DECIMAL(5,2), f FLOAT, d DOUBLE,
		dt DATE, tm TIME, tm3 TIME(3), tm6 TIME(6), dtm DATETIME, dtm6 DATETIME(6),
		ts TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
		vc VARCHAR(50) CHARACTER SET utf8mb4, ch CHAR(10) CHARACTER SET utf8mb4,
		tx TEXT CHARACTER SET utf8mb4, lt VARCHAR(20) CHARACTER SET latin1,
		bin BINARY(8), vb VARBINARY(20), bl BLOB, lb LONGBLOB,
		b1 BIT(1), b64 BIT(64),
		e ENUM('small','médium','large 🎉'), s SET('a','b','c','d'),
		j JSON,
		gv BIGINT AS (i * 2) VIRTUAL,
		gs VARCHAR(60) AS (CONCAT(vc, '!')) STORED,
		xf FLOAT, xd DOUBLE, d650 DECIMAL(65,0), tmn TIME(6),
		inv VARCHAR(10) INVISIBLE,
		created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
		touched DATETIME NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
		uca VARCHAR(30) COLLATE ` + modernCollation(e.SourceFlavor) + `
	) DEFAULT CHARSET=utf8mb4`)
	// A string primary key in the collation MySQL defaults to, which ignores case and
	// accents: a key that changes only in case is another key in the stream.
	f.exec("CREATE TABLE skeys (k VARCHAR(40) COLLATE " + modernCollation(e.SourceFlavor) + " PRIMARY KEY, v INT)")
	cfg := f.configure([]string{"types", "skeys"}, nil)
	r := f.start(cfg)

	cols := "id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, dec52, f, d, dt, tm, tm3, tm6, dtm, dtm6, ts, ts6, y, vc, ch, tx, lt, bin, vb, bl, lb, b1, b64, e, s, j, xf, xd, d650, tmn, inv, uca"
	f.execOneSession(
		// TIMESTAMPs are written in a session zone far from UTC; events carry UTC.
		"SET SESSION time_zone = '+05:00'",
		"INSERT INTO types ("+cols+") VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,"+
			" -9223372036854775808, 18446744073709551615,"+
			" '-12345678901234567890123456789012345.123456789012345678901234567890', 999.99, 3.40282e38, 1.7976931348623157e308,"+
			" '9999-12-31', '-838:59:59', '-00:00:01.500', '838:59:59.000000', '1000-01-01 00:00:00', '9999-12-31 23:59:59.999999',"+
			" '1970-01-01 05:00:01', '2038-01-19 08:14:07.999999', 2155,"+
			" 'héllo 🎉 wörld', 'ab', '', 'Ünïcödé €',"+
			" 0x0001, 0x00FF00, 0x00, 0xDEADBEEF000000, b'1', 0xFFFFFFFFFFFFFFFF,"+
			" 'large 🎉', 'a,d', '{\"k\": [1, 2.5, \"x\", null, {\"n\": \"ü\"}]}',"+
			" -1.17549e-38, 2.2250738585072014e-308, "+strings.Repeat("9", 65)+", '-838:59:59.000000', 'hidden', 'Ärger ß 🎉')",
		"INSERT INTO types ("+cols+") VALUES (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0,"+
			" 9223372036854775807, 0, 0, -0.01, -1.5, 0.1,"+
			" '1000-01-01', '00:00:00', '12:34:56.000', '-12:00:00.000001', '2024-02-29 12:00:00', '2024-02-29 12:00:00.000000',"+
			" '2024-06-01 12:00:00', '2024-06-01 12:00:00.123456', 1901,"+
			" '', '', NULL, '',"+
			" NULL, '', '', NULL, b'0', 0,"+
			" 'small', '', 'null',"+
			" -0.0, -1.7976931348623157e308, -"+strings.Repeat("9", 65)+", '-00:00:00.000001', '', '')",
		"INSERT INTO types (id) VALUES (3)",
		"SET SESSION time_zone = '+00:00'",
	)
	before := f.sourceRows("types")
	f.exec(
		"UPDATE types SET vc = 'ça change 👋', bi = bi + 1, dec65 = dec65 / 3, j = JSON_SET(j, '$.k[0]', 'changed'), bin = 0x00000000000000FF, e = 'médium', s = 'b,c', inv = 'seen', touched = '2001-02-03 04:05:06' WHERE id = 1",
		"UPDATE types SET uca = 'Ärger', xf = 1, y = 0, s = 'a,b,c,d', b64 = b'1' WHERE id = 2", // touched follows ON UPDATE
		"DELETE FROM types WHERE id = 3",
		"INSERT INTO skeys VALUES ('straße', 1), ('a', 2), ('Ünïcödé', 3), ('🎉 party', 4), ('x', 5)",
		"UPDATE skeys SET k = 'A' WHERE k = 'a'",
		"UPDATE skeys SET v = v + 10 WHERE k = 'STRASSE' OR k = 'unicode'",
		"DELETE FROM skeys WHERE k = 'X'",
	)
	after := f.sourceRows("types")
	r.waitAcknowledged(t, f.sourcePosition())

	recs := kcatRecords(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "types"))
	byKeyOp := map[string]*event.Event{}
	for _, rec := range rowEvents(recs) {
		byKeyOp[rec.key+string(rec.ev.Op)] = rec.ev
	}
	for _, tc := range []struct {
		name string
		got  event.Row
		want event.Row
	}{
		{"inserted extremes", byKeyOp["[1]c"].After, before["[1]"]},
		{"inserted zeros and empty strings", byKeyOp["[2]c"].After, before["[2]"]},
		{"inserted NULLs", byKeyOp["[3]c"].After, before["[3]"]},
		{"update before image", byKeyOp["[1]u"].Before, before["[1]"]},
		{"update after image", byKeyOp["[1]u"].After, after["[1]"]},
		{"update after image with ON UPDATE CURRENT_TIMESTAMP", byKeyOp["[2]u"].After, after["[2]"]},
		{"delete before image", byKeyOp["[3]d"].Before, before["[3]"]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got == nil || tc.want == nil {
				t.Fatalf("from Kafka %v, in source %v", tc.got, tc.want)
			}
			for col, w := range tc.want {
				g, ok := tc.got[col]
				if !ok || !sameValue(g, w) && !(col == "j" && sameJSON(t, g, w)) {
					t.Errorf("column %s: from Kafka %#v, in source %#v", col, g, w)
				}
			}
			if len(tc.got) != len(tc.want) {
				t.Errorf("%d columns from Kafka, %d in source", len(tc.got), len(tc.want))
			}
		})
	}
	t.Run("NULL and empty string stay apart", func(t *testing.T) {
		row := byKeyOp["[2]c"].After
		if row["tx"] != nil || row["vc"] != "" || row["bin"] != nil || row["vb"] != "" || row["j"] != "null" {
			t.Fatalf("tx %#v vc %#v bin %#v vb %#v j %#v", row["tx"], row["vc"], row["bin"], row["vb"], row["j"])
		}
	})
	t.Run("a string key in a case- and accent-insensitive collation", func(t *testing.T) {
		recs := kcatRecords(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "skeys"))
		checkOrderPerKey(t, recs)
		f.sameSourceRows(t, "skeys", finalRows(recs))
	})
	t.Run("TIMESTAMP is UTC", func(t *testing.T) {
		if got := byKeyOp["[2]c"].After["ts6"]; got != "2024-06-01 07:00:00.123456" {
			t.Fatalf("ts6 = %v, want the UTC wall time 2024-06-01 07:00:00.123456", got)
		}
	})
}

// modernCollation is the flavor's current default-style utf8mb4 collation: MySQL's
// utf8mb4_0900_ai_ci (its default, which MariaDB 10.11 does not know) or MariaDB's UCA 14.
func modernCollation(f testenv.Flavor) string {
	if f == testenv.MySQLFlavor {
		return "utf8mb4_0900_ai_ci"
	}
	return "utf8mb4_uca1400_ai_ci"
}

// sameJSON compares two JSON documents as values. A JSON column's text is the source's
// own rendering on SELECT ({"k": [1, 2]} on MySQL) and go-mysql's in the binlog
// ({"k":[1,2]}); rendering it as MySQL does is the business of the JSON decoder, not of
// this test.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	as, aok := a.(string)
	bs, bok := b.(string)
	if !aok || !bok {
		return false
	}
	parse := func(s string) any {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("JSON %q: %v", s, err)
		}
		return v
	}
	return reflect.DeepEqual(parse(as), parse(bs))
}

// sameValue compares values decoded from JSON (json.Number, string, nil).
func sameValue(a, b any) bool {
	an, aNum := a.(json.Number)
	bn, bNum := b.(json.Number)
	if aNum && bNum {
		return an == bn
	}
	return a == b
}
