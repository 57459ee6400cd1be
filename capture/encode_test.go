package capture

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// randomText mixes what JSON must escape with what it must not touch.
func randomText(rng *rand.Rand) string {
	pieces := []string{"a", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "\x00", "\x01", "\x1f", "\x7f", "\b", "\f", "\n", "\r", "\t",
		"é", "€", "🎉", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "'", "`", "{", "}"}
	var b []byte
	for n := rng.IntN(12); n > 0; n-- {
		b = append(b, pieces[rng.IntN(len(pieces))]...)
	}
	return string(b)
}

func BenchmarkEncodeEvent(b *testing.B) {
	names := []string{"id", "user_id", "status", "sku", "amount", "created", "score", "note", "flags"}
	tbl := &schema.Table{DB: "shop", Name: "orders", PK: []int{0}, Columns: make([]schema.Column, len(names))}
	for i, n := range names {
		tbl.Columns[i].Name = n
	}
	d := &tableDef{table: tbl, cols: event.NewColumns(names, tbl.PK)}
	img := &rowImage{set: true}
	for _, v := range []any{json.Number("123456"), json.Number("4711"), json.Number("3"), "SKU-977", "1234.50", "2024-01-01 10:00:00.000000", json.Number("17636.142857142855"), "note for order 123456", json.Number("123456")} {
		img.Add(v)
	}
	src := event.Source{Connector: "cleave", Name: "bench", DB: "shop", Table: "orders", ServerID: 1, File: "mysql-bin.000001", Pos: 123456, GTID: "0-1-42", TsMs: 1700000000000}
	var buf, srcBuf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		srcBuf = event.AppendSource(srcBuf[:0], &src)
		buf = d.appendEvent(buf[:0], event.OpUpdate, img, img, 1700000000000, srcBuf, 99)
	}
}

func TestAppendColumnWritesWhatEventEncodeReturns(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cols := []schema.Column{
		{Name: "i", Kind: schema.KindInt, DataType: "int"},
		{Name: "m", Kind: schema.KindUint, DataType: "mediumint"},
		{Name: "u", Kind: schema.KindUint, DataType: "bigint"},
		{Name: "s", Kind: schema.KindString, DataType: "varchar", Charset: "utf8mb4"},
		{Name: "l", Kind: schema.KindString, DataType: "varchar", Charset: "latin1"},
		{Name: "j", Kind: schema.KindJSON, DataType: "json"},
		{Name: "d", Kind: schema.KindDateTime, DataType: "datetime", FSP: 6},
		{Name: "t", Kind: schema.KindTime, DataType: "time"},
		{Name: "ts", Kind: schema.KindTimestamp, DataType: "timestamp"},
		{Name: "x", Kind: schema.KindDecimal, DataType: "decimal"},
		{Name: "b", Kind: schema.KindBinary, DataType: "blob"},
		{Name: "y", Kind: schema.KindYear, DataType: "year"},
		{Name: "f", Kind: schema.KindFloat, DataType: "float"},
		{Name: "e", Kind: schema.KindEnum, DataType: "enum", Elements: []string{"a", "b"}},
	}
	values := func() []any {
		return []any{
			int8(rng.IntN(256) - 128), int16(rng.IntN(65536) - 32768), int32(rng.Int32() - rng.Int32()), rng.Int64() - rng.Int64(),
			uint8(rng.IntN(256)), uint16(rng.IntN(65536)), uint32(rng.Uint32()), rng.Uint64(),
			int8(-1), int32(-1), int64(-5),
			randomText(rng), []byte(randomText(rng)), "2024-02-29 23:59:59.999999", "-838:59:59", "12.50", float32(rng.Float32()),
			int64(rng.IntN(3)), 2155,
		}
	}
	for i := 0; i < 300; i++ {
		for c := range cols {
			for _, v := range values() {
				enc, encErr := event.Encode(&cols[c], v)
				got, err := appendColumn(nil, &cols[c], v)
				if (err == nil) != (encErr == nil) {
					t.Fatalf("column %s value %#v: appendColumn error %v, event.Encode error %v", cols[c].Name, v, err, encErr)
				}
				if err != nil {
					continue
				}
				if want := event.AppendValue(nil, enc); !bytes.Equal(got, want) {
					t.Fatalf("column %s value %#v: %s, event.Encode gives %s", cols[c].Name, v, got, want)
				}
			}
		}
	}
}
