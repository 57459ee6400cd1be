package backfill

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// randomText returns strings that exercise JSON escaping: quotes, backslashes, control
// characters, invalid UTF-8, U+2028/2029, HTML characters, emoji.
func randomText(r *rand.Rand) string {
	pieces := []string{"a", "Z", " ", `"`, `\`, "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f",
		"<", ">", "&", "é", "€", "🎉", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82", "ü"}
	var b bytes.Buffer
	for n := r.IntN(12); n > 0; n-- {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

func TestEncoderWritesWhatTheEventPackageWrites(t *testing.T) {
	def := &schema.Table{DB: "shop", Name: "t", Columns: []schema.Column{
		{Name: "id", Kind: schema.KindInt, DataType: "bigint"},
		{Name: "Name", Kind: schema.KindString, DataType: "varchar", Charset: "utf8mb4"},
		{Name: "amount", Kind: schema.KindDecimal, DataType: "decimal"},
		{Name: "blob", Kind: schema.KindBinary, DataType: "blob"},
		{Name: "ratio", Kind: schema.KindFloat, DataType: "float"},
		{Name: "region", Kind: schema.KindString, DataType: "char", Charset: "utf8mb4"},
		{Name: "\"odd\" <name>", Kind: schema.KindString, DataType: "text", Charset: "utf8mb4"},
	}, PK: []int{5, 0}}
	enc := newEncoder(def)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		raw := []any{
			int64(r.Int64() - r.Int64()),
			[]byte(randomText(r)),
			[]byte(strconv.Itoa(r.IntN(100000)) + "." + strconv.Itoa(r.IntN(100))),
			[]byte(randomText(r)),
			r.Float32(),
			[]byte(randomText(r)),
			[]byte(randomText(r)),
		}
		if r.IntN(5) == 0 {
			raw[1] = nil
		}
		if r.IntN(5) == 0 {
			raw[6] = nil
		}
		vals := make([]any, len(raw))
		row := event.Row{}
		for j, v := range raw {
			e, err := event.Encode(&def.Columns[j], v)
			if err != nil {
				t.Fatal(err)
			}
			vals[j] = e
			row[def.Columns[j].Name] = e
		}
		src := event.Source{Connector: "cleave", Name: "pfx", DB: "shop", Table: "t", ServerID: 1, File: "bin.000007", Pos: uint64(r.IntN(1 << 30)), Snapshot: true}
		if i%2 == 0 {
			src.GTID = "0-1-" + strconv.Itoa(i)
		}
		v, err := event.NewVersion(src.File, src.Pos, 0)
		if err != nil {
			t.Fatal(err)
		}
		tsMs := time.Now().UnixMilli()
		enc.setSource(&src)
		enc.load(vals)
		gotKey := enc.appendKey(nil)
		gotVal := enc.appendEvent(nil, tsMs, v, nil)

		wantKey, err := event.Key(def, row)
		if err != nil {
			t.Fatal(err)
		}
		wantVal, err := event.Marshal(&event.Event{After: row, Op: event.OpRead, TsMs: tsMs, Source: src, Version: v})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gotKey, wantKey) {
			t.Fatalf("key\n got %s\nwant %s", gotKey, wantKey)
		}
		if !bytes.Equal(gotVal, wantVal) {
			t.Fatalf("value\n got %s\nwant %s", gotVal, wantVal)
		}
		back, err := event.Unmarshal(gotVal)
		if err != nil {
			t.Fatal(err)
		}
		if back.Op != event.OpRead || !back.Source.Snapshot || back.Version != v {
			t.Fatalf("decoded %+v", back)
		}
	}
}

func TestKeyBoundsFollowTheIndexOrder(t *testing.T) {
	def := &schema.Table{DB: "d", Name: "t", Columns: []schema.Column{
		{Name: "a", Kind: schema.KindInt, DataType: "int"},
		{Name: "b", Kind: schema.KindString, DataType: "varchar", Charset: "latin1", Collation: "latin1_swedish_ci"},
		{Name: "c", Kind: schema.KindEnum, DataType: "enum", ColumnType: "enum('x','y')", Elements: []string{"x", "y"}},
	}, PK: []int{0, 1, 2}}
	tr := &tableReader{name: "d.t", def: def}
	for _, i := range def.PK {
		k, err := newKeyCol(&def.Columns[i])
		if err != nil {
			t.Fatal(err)
		}
		tr.keys = append(tr.keys, k)
	}
	want := "`a` >= ? AND ((`a` > ?) OR (`a` = ? AND `b` > CONVERT(? USING latin1) COLLATE latin1_swedish_ci) OR (`a` = ? AND `b` = CONVERT(? USING latin1) COLLATE latin1_swedish_ci AND `c` > ?))"
	if got := tr.after(); got != want {
		t.Fatalf("after()\n got %s\nwant %s", got, want)
	}
	args, err := tr.afterArgs([]any{json.Number("-5"), "Ærø", "y"})
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []any{int64(-5), int64(-5), int64(-5), "Ærø", int64(-5), "Ærø", uint64(2)}
	if len(args) != len(wantArgs) {
		t.Fatalf("args %v, want %v", args, wantArgs)
	}
	for i := range args {
		if args[i] != wantArgs[i] {
			t.Fatalf("arg %d = %#v, want %#v", i, args[i], wantArgs[i])
		}
	}
	if _, err := tr.afterArgs([]any{json.Number("1")}); err == nil {
		t.Fatal("a stored key of the wrong width was accepted")
	}
	if _, err := tr.afterArgs([]any{json.Number("1"), "x", "nope"}); err == nil {
		t.Fatal("an enum value outside its labels was accepted")
	}
}
