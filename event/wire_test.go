package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// referenceMarshal is the wire format's definition (wire.go): encoding/json of the
// event, HTML escaping off.
func referenceMarshal(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// wireText mixes what JSON must escape with what it must leave alone: quotes,
// backslashes, control characters, HTML characters, invalid UTF-8, U+2028/2029, emoji.
func wireText(rng *rand.Rand) string {
	pieces := []string{"a", "Z", "0", " ", `"`, `\`, "/", "<", ">", "&", "\x00", "\x01", "\x1f", "\x7f", "\b", "\f", "\n", "\r", "\t",
		"é", "€", "🎉", "𝄞", "\u2028", "\u2029", "\ufffd", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "'", "{", "}"}
	var b strings.Builder
	for n := rng.IntN(12); n > 0; n-- {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// wireValue returns a value in one of Encode's forms (nil, json.Number, string).
func wireValue(rng *rand.Rand) any {
	switch rng.IntN(6) {
	case 0:
		return nil
	case 1:
		return json.Number(strconv.FormatInt(rng.Int64()-rng.Int64(), 10))
	case 2:
		return json.Number(strconv.FormatUint(rng.Uint64(), 10))
	case 3:
		return json.Number(strconv.FormatFloat(rng.NormFloat64()*1e10, 'g', -1, 64))
	}
	return wireText(rng)
}

// wireEvent returns a random event of a random table whose before and after images have
// the table's columns, and the table's column names and primary key.
func wireEvent(rng *rand.Rand) (*Event, []string, []int) {
	names := make([]string, 1+rng.IntN(8))
	seen := map[string]bool{}
	for c := range names {
		for names[c] == "" || seen[names[c]] {
			names[c] = wireText(rng) + strconv.Itoa(c)
		}
		seen[names[c]] = true
	}
	pk := []int{rng.IntN(len(names))}
	if len(names) > 1 && rng.IntN(2) == 0 {
		pk = append(pk, (pk[0]+1)%len(names))
	}
	row := func() Row {
		r := Row{}
		for _, n := range names {
			r[n] = wireValue(rng)
		}
		return r
	}
	e := &Event{Op: []Op{OpCreate, OpUpdate, OpDelete, OpRead}[rng.IntN(4)], TsMs: rng.Int64(), Version: Version(rng.Uint64()),
		Source: Source{Connector: "cleave", Name: wireText(rng), DB: wireText(rng), Table: wireText(rng), ServerID: rng.Uint32(),
			File: wireText(rng), Pos: rng.Uint64(), GTID: []string{"", "0-1-42", wireText(rng)}[rng.IntN(3)], TsMs: rng.Int64(),
			Row: rng.IntN(1000), Snapshot: rng.IntN(4) == 0}}
	if e.Op != OpCreate && e.Op != OpRead {
		e.Before = row()
	}
	if e.Op != OpDelete {
		e.After = row()
		if rng.IntN(4) == 0 {
			e.JSONTypes = map[string]JSONTypes{names[0]: {"$": JSONDecimal, `$."k"[1]`: JSONUnsigned}}
		}
	}
	return e, names, pk
}

// image returns the Image a hot-path writer fills for row r of a table with these columns.
func image(names []string, r Row) *Image {
	if r == nil {
		return nil
	}
	var m Image
	for _, n := range names {
		m.Add(r[n])
	}
	return &m
}

// checkWriters checks every writer of the wire format on one event: Marshal and the
// Columns writer give the reference's bytes, MarshalKey and AppendKey the reference's key,
// and both decoders read the bytes back to the event the reference reads.
func checkWriters(t *testing.T, e *Event, names []string, pk []int) {
	t.Helper()
	want := referenceMarshal(t, e)
	got, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal wrote\n%s\nwant\n%s", got, want)
	}
	cols := NewColumns(names, pk)
	h := Head{Op: e.Op, TsMs: e.TsMs, Source: AppendSource(nil, &e.Source), Version: e.Version, DDL: e.DDL, JSONTypes: e.JSONTypes}
	before, after := image(names, e.Before), image(names, e.After)
	if got := cols.AppendEvent([]byte("kept"), &h, before, after); !bytes.Equal(got, append([]byte("kept"), want...)) {
		t.Fatalf("Columns.AppendEvent wrote\n%s\nwant\n%s", got, want)
	}

	keyed := after
	if keyed == nil {
		keyed = before
	}
	row := e.Image()
	vals := make([]any, len(pk))
	for i, c := range pk {
		vals[i] = row[names[c]]
	}
	wantKey := referenceMarshal(t, vals)
	if gotKey, err := MarshalKey(vals); err != nil || !bytes.Equal(gotKey, wantKey) {
		t.Fatalf("MarshalKey wrote %s, %v; want %s", gotKey, err, wantKey)
	}
	if gotKey := cols.AppendKey(nil, keyed); !bytes.Equal(gotKey, wantKey) {
		t.Fatalf("Columns.AppendKey wrote %s; want %s", gotKey, wantKey)
	}
	if before != nil && after != nil {
		if same := cols.SameKey(before, after); same != bytes.Equal(cols.AppendKey(nil, before), wantKey) {
			t.Fatalf("SameKey = %v for keys %s and %s", same, cols.AppendKey(nil, before), wantKey)
		}
	}

	ref, err := unmarshalReference(want)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	for name, read := range map[string]func([]byte) (*Event, error){"Unmarshal": Unmarshal, "Decoder.Decode": d.Decode} {
		back, err := read(got)
		if err != nil {
			t.Fatalf("%s(%s): %v", name, got, err)
		}
		if !reflect.DeepEqual(back, ref) {
			t.Fatalf("%s read\n%#v\nwant\n%#v", name, back, ref)
		}
	}
}

func TestEveryWriterWritesTheReferenceAndReadsBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 3000; i++ {
		e, names, pk := wireEvent(rng)
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkWriters(t, e, names, pk) })
		if t.Failed() {
			return
		}
	}
}

func TestMarshalWritesTheRareEventsAndValuesAsTheReference(t *testing.T) {
	for name, e := range map[string]*Event{
		"schema change": {Op: OpDDL, DDL: "ALTER TABLE `t` ADD `c` INT COMMENT '<&>'", Version: 5, Source: Source{DB: "d", Table: "t"}},
		"heartbeat":     {Op: OpHeartbeat, Version: 1 << 40, TsMs: 3},
		"empty rows":    {Op: OpUpdate, Before: Row{}, After: Row{}},
		"decoded by the reference, with booleans and a nested document": {Op: OpCreate,
			After: Row{"b": true, "f": false, "doc": map[string]any{"<k>": []any{json.Number("1"), "&"}}}},
		"an empty number": {Op: OpCreate, After: Row{"n": json.Number("")}},
		"json_types with an empty document": {Op: OpCreate, After: Row{"j": "{}"},
			JSONTypes: map[string]JSONTypes{"j": {}, "k": {"$": JSONDate}}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if want := referenceMarshal(t, e); !bytes.Equal(got, want) {
				t.Fatalf("Marshal wrote\n%s\nwant\n%s", got, want)
			}
		})
	}
	for _, bad := range []json.Number{"01", "1.", "-", "x", " 1", "1 ", "0x10", "NaN"} {
		if _, err := Marshal(&Event{Op: OpCreate, After: Row{"n": bad}}); err == nil {
			t.Errorf("Marshal wrote the number %q, which encoding/json refuses", string(bad))
		}
		if _, err := MarshalKey([]any{bad}); err == nil {
			t.Errorf("MarshalKey wrote the number %q, which encoding/json refuses", string(bad))
		}
	}
}

// FuzzWireRoundTrip reads any input as a message; what decodes must encode again to bytes
// that decode to the same event, with every writer.
func FuzzWireRoundTrip(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 8; i++ {
		e, _, _ := wireEvent(rng)
		f.Add(referenceMarshal(f, e))
	}
	f.Add([]byte(`{"op":"s","ddl":"ALTER TABLE t ADD c INT","source":{"snapshot":false}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Unmarshal(data)
		if err != nil {
			return
		}
		again, err := Marshal(e)
		if err != nil {
			t.Fatalf("Marshal of a decoded event: %v", err)
		}
		if want := referenceMarshal(t, e); !bytes.Equal(again, want) {
			t.Fatalf("Marshal wrote\n%s\nwant\n%s", again, want)
		}
		back, err := Unmarshal(again)
		if err != nil || !reflect.DeepEqual(back, e) {
			t.Fatalf("round trip of %s gave %#v, %v; want %#v", again, back, err, e)
		}
		if names, ok := flatColumns(e); ok {
			h := Head{Op: e.Op, TsMs: e.TsMs, Source: AppendSource(nil, &e.Source), Version: e.Version, DDL: e.DDL, JSONTypes: e.JSONTypes}
			if got := NewColumns(names, nil).AppendEvent(nil, &h, image(names, e.Before), image(names, e.After)); !bytes.Equal(got, again) {
				t.Fatalf("Columns.AppendEvent wrote\n%s\nMarshal\n%s", got, again)
			}
		}
	})
}

// flatColumns returns the columns of an event whose images (when both are there) have the
// same columns and hold only Encode's forms of value, as the hot-path writers' rows do.
func flatColumns(e *Event) ([]string, bool) {
	var names []string
	for n := range e.Image() {
		names = append(names, n)
	}
	for _, r := range []Row{e.Before, e.After} {
		if r == nil {
			continue
		}
		if len(r) != len(names) {
			return nil, false
		}
		for _, n := range names {
			v, ok := r[n]
			if !ok {
				return nil, false
			}
			switch v.(type) {
			case nil, string, json.Number:
			default:
				return nil, false
			}
		}
	}
	return names, true
}
