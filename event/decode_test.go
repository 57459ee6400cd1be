package event

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// sameAsReference checks that the fast path and Decoder.Decode give what
// unmarshalReference gives for data.
func sameAsReference(t testing.TB, data []byte) (fast bool) {
	t.Helper()
	want, wantErr := unmarshalReference(data)
	got, ok := fastDecode(data, nil)
	if ok {
		if wantErr != nil {
			t.Fatalf("fast path accepted %q, which unmarshalReference refuses: %v", data, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast path decoded %q as\n%#v\nwant\n%#v", data, got, want)
		}
	}
	back, err := new(Decoder).Decode(data)
	if (err == nil) != (wantErr == nil) || (err == nil && !reflect.DeepEqual(back, want)) {
		t.Fatalf("Decode(%q) = %#v, %v; want %#v, %v", data, back, err, want, wantErr)
	}
	return ok
}

func TestFastDecodeMatchesTheReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x00", "\x1f", "é", "€", "𝄞", "<", ">", "&", "\u2028", "\ufffd"}
	str := func() string {
		var b strings.Builder
		for n := rng.IntN(12); n > 0; n-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	value := func() any {
		switch rng.IntN(6) {
		case 0:
			return nil
		case 1:
			return json.Number(fmt.Sprint(rng.Int64() - rng.Int64()))
		case 2:
			return json.Number("18446744073709551615")
		case 3:
			return json.Number(fmt.Sprintf("%g", rng.NormFloat64()*1e10))
		}
		return str()
	}
	row := func() Row {
		r := Row{}
		for n := rng.IntN(8); n > 0; n-- {
			r[str()] = value()
		}
		return r
	}
	fast := 0
	const n = 3000
	for i := 0; i < n; i++ {
		e := &Event{Op: []Op{OpCreate, OpUpdate, OpDelete, OpRead, OpHeartbeat, OpDDL}[rng.IntN(6)],
			TsMs: rng.Int64(), Version: Version(rng.Uint64()),
			Source: Source{Connector: str(), Name: str(), DB: str(), Table: str(), ServerID: rng.Uint32(), File: str(), Pos: rng.Uint64(), GTID: str(), TsMs: rng.Int64(), Row: rng.IntN(1000), Snapshot: rng.IntN(2) == 0}}
		if rng.IntN(4) > 0 {
			e.Before = row()
		}
		if rng.IntN(4) > 0 {
			e.After = row()
		}
		if rng.IntN(2) == 0 {
			e.DDL = str()
		}
		data, err := Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if sameAsReference(t, data) {
			fast++
		}
	}
	if fast < n/3 {
		t.Fatalf("only %d of %d events took the fast path", fast, n)
	}
	t.Logf("%d of %d random events decoded on the fast path", fast, n)
}

func TestFastDecodeDefersWhatItDoesNotKnow(t *testing.T) {
	for _, in := range []string{
		``, `null`, `[]`, `{}`, `{"op":"c"}`, `{"op":"c","after":{}}`, `{"op":"c","after":null}`, `{"op":"d","before":{"id":1}}`,
		`{"OP":"c","after":{}}`, `{"op":"c","After":{"x":1}}`, `{"op":"c","after":{"x":{"y":1}}}`, `{"op":"c","after":{"x":[1]}}`,
		`{"op":"c","after":{"x":01}}`, `{"op":"c","after":{"x":1.}}`, `{"op":"c","after":{"x":-}}`, `{"op":"c","after":{"x":1e5}}`,
		`{"op":"c","after":{"x":"\ud83d\ude00"}}`, `{"op":"c","after":{"x":"\ud83d"}}`, `{"op":"c","after":{"x":"\ude00\ud83d"}}`,
		`{"op":"c","after":{"x":"a\u0000b"}}`, "{\"op\":\"c\",\"after\":{\"x\":\"\xff\"}}", "{\"op\":\"c\",\"after\":{\"x\":\"a\nb\"}}",
		`{"op":"c","after":{"x":"\x"}}`, `{"op":"c","after":{"x":true,"y":false,"z":null}}`, `{"op":"c","after":{"a":1,"a":2}}`,
		`{"op":"c","version":-1,"after":{}}`, `{"op":"c","version":1.5,"after":{}}`, `{"op":"c","version":18446744073709551616,"after":{}}`,
		`{"op":"c","source":{"server_id":4294967296},"after":{}}`, `{"op":"c","source":null,"after":{}}`, `{"op":"c","source":{"snapshot":true,"extra":[1,{"a":null}]},"after":{}}`,
		`{"op":null,"after":{}}`, `{"op":"h","unknown":{"deep":[[[]]]}}`, `{"op":"s","ddl":""}`, `{"op":"s","ddl":"ALTER TABLE t ADD c INT"}`,
		` { "op" : "c" , "after" : { "id" : 7 } } trailing`, `{"op":"c","after":{"id":7}`, `{"op":"x"}`, `{"op":"c","after":{"id":7},}`,
	} {
		t.Run(in, func(t *testing.T) { sameAsReference(t, []byte(in)) })
	}
}

func TestFastDecodeReadsJSONTypesAsTheReference(t *testing.T) {
	for _, in := range []string{
		`{"op":"c","after":{"j":"[1]"},"json_types":{"j":{"$[0]":"UNSIGNED INTEGER"}}}`,
		`{"op":"c","after":{"j":"{}"},"json_types":{"j":{"$.\"a\\\"b\"":"DECIMAL","$.\"é\"[3]":"DATE"},"k":{}}}`,
		`{"op":"c","after":{"j":"1"},"json_types":{}}`,
		`{"op":"c","after":{"j":"1"},"json_types":null}`,
		`{"op":"c","after":{"j":"1"},"json_types":{"j":null}}`,
		`{"op":"c","after":{"j":"1"},"json_types":{"j":{"$":null}}}`,
		`{"op":"c","after":{"j":"1"},"json_types":{"j":{"$":"A","$":"B"}}}`,
		`{"op":"c","after":{"j":"1"},"json_types":{"j":{"$":"A"},"j":{"$[1]":"B"}}}`,
		`{"op":"c","after":{"j":"1"},"json_types":{"j":{"$":"A"}},"json_types":{"k":{"$":"B"}}}`,
		`{"op":"c","after":{"j":"1"},"JSON_TYPES":{"j":{"$":"A"}}}`,
		`{"op":"c","after":{"j":"1"},"json_types":{"j":{"$":1}}}`,
		`{"op":"c","after":{"j":"1"},"json_types":[]}`,
	} {
		t.Run(in, func(t *testing.T) { sameAsReference(t, []byte(in)) })
	}
	ev := &Event{Op: OpCreate, After: Row{"id": json.Number("1"), "j": `{"a": 99.990}`},
		JSONTypes: map[string]JSONTypes{"j": {`$."a"`: JSONDecimal}}}
	data, err := Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !sameAsReference(t, data) {
		t.Fatalf("an event with json_types did not take the fast path: %s", data)
	}
}

func FuzzFastDecode(f *testing.F) {
	f.Add([]byte(`{"before":null,"after":{"id":1,"name":"x\u00e9"},"op":"c","ts_ms":1,"source":{"db":"d","table":"t","file":"mysql-bin.000001","pos":4,"ts_ms":1,"row":0},"version":68719476740}`))
	f.Add([]byte(`{"op":"s","ddl":"ALTER TABLE t ADD c INT","source":{"snapshot":false}}`))
	f.Fuzz(func(t *testing.T, data []byte) { sameAsReference(t, data) })
}

func BenchmarkDecode(b *testing.B) {
	data, _ := Marshal(&Event{Op: OpCreate, After: Row{"id": json.Number("12345"), "a": json.Number("345"), "b": json.Number("97760055"), "c": "name-12345",
		"d": strings.Repeat("x", 65), "e": "12345.45", "f": "2024-05-26 10:45:25.012345", "g": json.Number("1763.5714285714287"), "h": json.Number("12345")}, Version: 999, TsMs: 1,
		Source: Source{DB: "db", Table: "bench", File: "mysql-bin.000001", Pos: 1234, TsMs: 1}})
	b.Run("reference", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := unmarshalReference(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	var d Decoder
	b.Run("fast", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := d.Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
