package event

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/schema"
)

func col(kind schema.Kind, dataType string) *schema.Column {
	return &schema.Column{Name: "c", Kind: kind, DataType: dataType, ColumnType: dataType}
}

func TestEncodeThenSQLArgKeepsEveryValue(t *testing.T) {
	enumCol := &schema.Column{Name: "e", Kind: schema.KindEnum, DataType: "enum", Elements: []string{"a", "b,c", "ü"}}
	setCol := &schema.Column{Name: "s", Kind: schema.KindSet, DataType: "set", Elements: []string{"x", "y", "z"}}
	dt6 := &schema.Column{Name: "d", Kind: schema.KindDateTime, DataType: "datetime", FSP: 6}
	ts3 := &schema.Column{Name: "t", Kind: schema.KindTimestamp, DataType: "timestamp", FSP: 3}
	cases := []struct {
		name string
		col  *schema.Column
		in   any
		want any // event form
		arg  any // SQL argument
	}{
		{"bigint min", col(schema.KindInt, "bigint"), int64(math.MinInt64), json.Number("-9223372036854775808"), int64(math.MinInt64)},
		{"bigint unsigned max from signed binlog form", col(schema.KindUint, "bigint"), int64(-1), json.Number("18446744073709551615"), uint64(math.MaxUint64)},
		{"tinyint unsigned 255 from int8", col(schema.KindUint, "tinyint"), int8(-1), json.Number("255"), uint64(255)},
		{"mediumint unsigned max from int32", col(schema.KindUint, "mediumint"), int32(-1), json.Number("16777215"), uint64(16777215)},
		{"int unsigned max from int32", col(schema.KindUint, "int"), int32(-1), json.Number("4294967295"), uint64(4294967295)},
		{"float keeps its 32-bit value", col(schema.KindFloat, "float"), float32(0.1), json.Number("0.1"), float64(float32(0.1))},
		{"double shortest", col(schema.KindDouble, "double"), 1.0 / 3, json.Number("0.3333333333333333"), 1.0 / 3},
		{"decimal exact text", col(schema.KindDecimal, "decimal"), "-12345678901234567890123456789012345.123456789012345678901234567890", "-12345678901234567890123456789012345.123456789012345678901234567890", "-12345678901234567890123456789012345.123456789012345678901234567890"},
		{"datetime(6) from time", dt6, time.Date(2024, 2, 29, 23, 59, 59, 999999000, time.UTC), "2024-02-29 23:59:59.999999", "2024-02-29 23:59:59.999999"},
		{"timestamp(3) in UTC", ts3, time.Date(2024, 1, 1, 1, 0, 0, 123000000, time.FixedZone("x", 3600)), "2024-01-01 00:00:00.123", "2024-01-01 00:00:00.123"},
		{"negative time", col(schema.KindTime, "time"), "-838:59:59", "-838:59:59", "-838:59:59"},
		{"emoji text", col(schema.KindString, "varchar"), []byte("héllo 🎉"), "héllo 🎉", "héllo 🎉"},
		{"empty string is not null", col(schema.KindString, "varchar"), "", "", ""},
		{"binary bytes", col(schema.KindBinary, "blob"), []byte{0, 0xff, 0x80, '\n'}, "AP+ACg==", []byte{0, 0xff, 0x80, '\n'}},
		{"enum index", enumCol, int64(3), "ü", "ü"},
		{"set bits", setCol, int64(5), "x,z", "x,z"},
		{"bit from int", col(schema.KindBit, "bit"), int64(5), json.Number("5"), uint64(5)},
		{"bit from scanned bytes", col(schema.KindBit, "bit"), []byte{0x01, 0x02}, json.Number("258"), uint64(258)},
		{"year", col(schema.KindYear, "year"), int64(2155), json.Number("2155"), int64(2155)},
		{"null", col(schema.KindString, "varchar"), nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.col, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Encode = %#v, want %#v", got, tc.want)
			}
			// Through JSON and back, as over Kafka.
			data, _ := json.Marshal(map[string]any{"v": got})
			var back Row
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if err := dec.Decode(&back); err != nil {
				t.Fatal(err)
			}
			arg, err := SQLArg(tc.col, back["v"])
			if err != nil {
				t.Fatal(err)
			}
			if b, ok := arg.([]byte); ok {
				if string(b) != string(tc.arg.([]byte)) {
					t.Fatalf("SQLArg = %x, want %x", b, tc.arg)
				}
				return
			}
			if arg != tc.arg {
				t.Fatalf("SQLArg = %#v (%T), want %#v (%T)", arg, arg, tc.arg, tc.arg)
			}
		})
	}
}

func TestEncodeRefusesWhatItCannotCarry(t *testing.T) {
	cases := []struct {
		name string
		col  *schema.Column
		in   any
	}{
		{"enum index past its labels", &schema.Column{Name: "e", Kind: schema.KindEnum, Elements: []string{"a"}}, int64(2)},
		{"decimal that is not a number", col(schema.KindDecimal, "decimal"), "12x"},
		{"unknown charset", &schema.Column{Name: "s", Kind: schema.KindString, Charset: "sjis"}, "x"},
		{"integer of a wrong Go type", col(schema.KindInt, "int"), 1.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Encode(tc.col, tc.in); err == nil {
				t.Fatal("Encode accepted it")
			}
		})
	}
}

func TestVersionsIncreaseInBinlogOrder(t *testing.T) {
	positions := []struct {
		file string
		pos  uint64
		row  int
	}{
		{"mysql-bin.000001", 4, 0},
		{"mysql-bin.000001", 4, 1},
		{"mysql-bin.000001", 900, 0},
		{"mysql-bin.000001", 1<<36 - 2, 1},
		{"mysql-bin.000002", 4, 0},
		{"mysql-bin.999999", 4, 0},
	}
	var prev Version
	for i, p := range positions {
		v, err := NewVersion(p.file, p.pos, p.row)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && v <= prev {
			t.Fatalf("version of %v = %v, not above %v", p, v, prev)
		}
		again, _ := NewVersion(p.file, p.pos, p.row)
		if again != v {
			t.Fatalf("version of %v not deterministic", p)
		}
		prev = v
	}
	if _, err := NewVersion("mysql-bin", 4, 0); err == nil {
		t.Fatal("file without index accepted")
	}
	if _, err := NewVersion("mysql-bin.000001", 1<<36, 0); err == nil {
		t.Fatal("offset beyond 2^36 accepted")
	}
}

func TestEventRoundTrip(t *testing.T) {
	e := &Event{
		After:   Row{"id": json.Number("18446744073709551615"), "name": "<a&b>", "n": nil},
		Op:      OpCreate,
		Source:  Source{DB: "shop", Table: "users", File: "mysql-bin.000003", Pos: 1234, ServerID: 1},
		Version: 99,
	}
	data, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.After["id"] != json.Number("18446744073709551615") || back.After["name"] != "<a&b>" || back.After["n"] != nil || back.Version != 99 {
		t.Fatalf("round trip changed the event: %s", data)
	}
	for _, bad := range []string{`{"op":"x"}`, `{"op":"c"}`, `{"op":"d"}`, `not json`} {
		if _, err := Unmarshal([]byte(bad)); err == nil {
			t.Fatalf("Unmarshal(%s) accepted", bad)
		}
	}
}

func TestKeyIsCanonical(t *testing.T) {
	tbl := &schema.Table{DB: "d", Name: "t", Columns: []schema.Column{{Name: "a"}, {Name: "b"}, {Name: "c"}}, PK: []int{1, 0}}
	k1, err := Key(tbl, Row{"a": json.Number("7"), "b": "eu", "c": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if string(k1) != `["eu",7]` {
		t.Fatalf("key = %s", k1)
	}
	if _, err := Key(tbl, Row{"a": json.Number("7")}); err == nil {
		t.Fatal("row without its key accepted")
	}
}

func TestCanonicalIsWhatTheServerHashes(t *testing.T) {
	cases := []struct {
		name string
		col  *schema.Column
		in   any
		want []byte
	}{
		{"integer text", col(schema.KindInt, "bigint"), json.Number("-42"), []byte("-42")},
		{"utf8mb4 text as its bytes", &schema.Column{Name: "s", Kind: schema.KindString, Charset: "utf8mb4"}, "é", []byte{0xc3, 0xa9}},
		{"latin1 text in latin1", &schema.Column{Name: "s", Kind: schema.KindString, Charset: "latin1"}, "é€", []byte{0xe9, 0x80}},
		{"binary as raw bytes", col(schema.KindBinary, "varbinary"), "AP8=", []byte{0x00, 0xff}},
		{"bit at its width", &schema.Column{Name: "b", Kind: schema.KindBit, DataType: "bit", ColumnType: "bit(12)"}, json.Number("258"), []byte{0x01, 0x02}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Canonical(tc.col, tc.in)
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("Canonical = %x, want %x", got, tc.want)
			}
		})
	}
	if _, ok, _ := Canonical(col(schema.KindInt, "int"), nil); ok {
		t.Fatal("NULL has a canonical form")
	}
}
