package sink

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/event"
)

// sameAsReference checks that unmarshal gives what event.Unmarshal gives for data.
func sameAsReference(t testing.TB, data []byte) (fast bool) {
	t.Helper()
	want, wantErr := event.Unmarshal(data)
	got, ok := fastUnmarshal(data)
	if ok {
		if wantErr != nil {
			t.Fatalf("fast path accepted %q, which event.Unmarshal refuses: %v", data, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast path decoded %q as\n%#v\nwant\n%#v", data, got, want)
		}
	}
	back, err := unmarshal(data, &interner{})
	if (err == nil) != (wantErr == nil) || (err == nil && !reflect.DeepEqual(back, want)) {
		t.Fatalf("unmarshal(%q) = %#v, %v; want %#v, %v", data, back, err, want, wantErr)
	}
	return ok
}

func TestFastDecodeMatchesEventUnmarshal(t *testing.T) {
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
	row := func() event.Row {
		r := event.Row{}
		for n := rng.IntN(8); n > 0; n-- {
			r[str()] = value()
		}
		return r
	}
	fast := 0
	const n = 3000
	for i := 0; i < n; i++ {
		e := &event.Event{Op: []event.Op{event.OpCreate, event.OpUpdate, event.OpDelete, event.OpRead, event.OpHeartbeat, event.OpDDL}[rng.IntN(6)],
			TsMs: rng.Int64(), Version: event.Version(rng.Uint64()),
			Source: event.Source{Connector: str(), Name: str(), DB: str(), Table: str(), ServerID: rng.Uint32(), File: str(), Pos: rng.Uint64(), GTID: str(), TsMs: rng.Int64(), Row: rng.IntN(1000), Snapshot: rng.IntN(2) == 0}}
		if rng.IntN(4) > 0 {
			e.Before = row()
		}
		if rng.IntN(4) > 0 {
			e.After = row()
		}
		if rng.IntN(2) == 0 {
			e.DDL = str()
		}
		data, err := event.Marshal(e)
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

func FuzzFastDecode(f *testing.F) {
	f.Add([]byte(`{"before":null,"after":{"id":1,"name":"x\u00e9"},"op":"c","ts_ms":1,"source":{"db":"d","table":"t","file":"mysql-bin.000001","pos":4,"ts_ms":1,"row":0},"version":68719476740}`))
	f.Add([]byte(`{"op":"s","ddl":"ALTER TABLE t ADD c INT","source":{"snapshot":false}}`))
	f.Fuzz(func(t *testing.T, data []byte) { sameAsReference(t, data) })
}

func BenchmarkDecode(b *testing.B) {
	data, _ := event.Marshal(&event.Event{Op: event.OpCreate, After: benchRow(12345), Version: 999, TsMs: 1,
		Source: event.Source{DB: "db", Table: "bench", File: "mysql-bin.000001", Pos: 1234, TsMs: 1}})
	b.Run("event.Unmarshal", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := event.Unmarshal(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	names := &interner{}
	b.Run("fast", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := unmarshal(data, names); err != nil {
				b.Fatal(err)
			}
		}
	})
}
