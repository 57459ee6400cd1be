package sink

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/schema"
)

func TestJSONValuesAreRebuiltOnlyWhereTheirTextLosesATypeOrDigits(t *testing.T) {
	col := &schema.Column{Name: "j", Kind: schema.KindJSON}
	for _, tc := range []struct {
		name  string
		text  string
		types event.JSONTypes
		expr  string // "" when the text is written bare
		args  []any  // after the text
		err   string
	}{
		{name: "plain document", text: `{"a": 1, "b": [1.5, "x", null, true], "c": -0.25}`},
		{name: "a double's shortest text", text: `[0.3333333333333333, 1.2345678901234568e20, 1e300, 5e-324, 100.0]`},
		{name: "DECIMAL from json_types with its scale", text: `{"price": 99.990}`, types: event.JSONTypes{`$."price"`: event.JSONDecimal},
			expr: "JSON_SET(CAST(? AS JSON),?,CAST(? AS DECIMAL(5,3)))", args: []any{`$."price"`, "99.990"}},
		{name: "integral DECIMAL", text: `[5, -0.5]`, types: event.JSONTypes{"$[0]": event.JSONDecimal, "$[1]": event.JSONDecimal},
			expr: "JSON_SET(CAST(? AS JSON),?,CAST(? AS DECIMAL(1,0)),?,CAST(? AS DECIMAL(1,1)))", args: []any{"$[0]", "5", "$[1]", "-0.5"}},
		{name: "small UNSIGNED INTEGER", text: `5`, types: event.JSONTypes{"$": event.JSONUnsigned},
			expr: "JSON_SET(CAST(? AS JSON),?,CAST(? AS UNSIGNED))", args: []any{"$", "5"}},
		{name: "large UNSIGNED INTEGER is what the parser makes", text: `[18446744073709551615, 4294967296]`,
			types: event.JSONTypes{"$[0]": event.JSONUnsigned, "$[1]": event.JSONUnsigned}},
		{name: "large signed INTEGER", text: `[4294967296, 4294967295]`, types: event.JSONTypes{"$[0]": event.JSONInteger},
			expr: "JSON_SET(CAST(? AS JSON),?,CAST(? AS SIGNED))", args: []any{"$[0]", "4294967296"}},
		{name: "temporal scalars", text: `{"d": "2024-02-29", "t": "-838:59:59.000000", "dt": "2024-02-29 23:59:59.999999", "ts": "2024-01-02 03:04:05.123000"}`,
			types: event.JSONTypes{`$."d"`: event.JSONDate, `$."t"`: event.JSONTime, `$."dt"`: event.JSONDateTime, `$."ts"`: event.JSONTimestamp},
			expr:  "JSON_SET(CAST(? AS JSON),?,CAST(CONVERT(? USING utf8mb4) AS DATE),?,CAST(CONVERT(? USING utf8mb4) AS TIME(6)),?,CAST(CONVERT(? USING utf8mb4) AS DATETIME(6)),?,CAST(CONVERT(? USING utf8mb4) AS DATETIME(6)))",
			args:  []any{`$."d"`, "2024-02-29", `$."t"`, "-838:59:59.000000", `$."dt"`, "2024-02-29 23:59:59.999999", `$."ts"`, "2024-01-02 03:04:05.123000"}},
		{name: "binary string", text: `["base64:type15:q6ur\nq6s="]`, types: event.JSONTypes{"$[0]": event.JSONBlob},
			expr: "JSON_SET(CAST(? AS JSON),?,CAST(FROM_BASE64(?) AS BINARY))", args: []any{"$[0]", "q6urq6s="}},
		{name: "digits a double does not hold, without json_types", text: `{"big": 123456789012345678901234567890, "pi": 3.14159265358979323846, "ok": 1.5, "u": 18446744073709551616}`,
			expr: "JSON_SET(CAST(? AS JSON),?,CAST(? AS DECIMAL(30,0)),?,CAST(? AS DECIMAL(21,20)),?,CAST(? AS DECIMAL(20,0)))",
			args: []any{`$."big"`, "123456789012345678901234567890", `$."pi"`, "3.14159265358979323846", `$."u"`, "18446744073709551616"}},
		{name: "an exponent that needs a DECIMAL", text: `[1.23456789012345678e5]`,
			expr: "JSON_SET(CAST(? AS JSON),?,CAST(? AS DECIMAL(18,12)))", args: []any{"$[0]", "123456.789012345678"}},
		{name: "a number no DECIMAL holds stays a double", text: `[1.2345678901234567890123e-40]`},
		{name: "a DOUBLE type keeps a long double's text to the parser", text: `[3.14159265358979323846]`, types: event.JSONTypes{"$[0]": event.JSONDouble}},
		{name: "a type this sink does not know", text: `[1]`, types: event.JSONTypes{"$[0]": "GEOMETRY"}},
		{name: "a path the document lacks", text: `[1]`, types: event.JSONTypes{"$[1]": event.JSONDecimal}, err: "$[1], which the document lacks"},
		{name: "a DECIMAL that is a string", text: `["x"]`, types: event.JSONTypes{"$[0]": event.JSONDecimal}, err: "no number"},
		{name: "a DATE that is no date", text: `["soon"]`, types: event.JSONTypes{"$[0]": event.JSONDate}, err: "no date"},
		{name: "text that is not JSON", text: `{"a": 1.5`, types: event.JSONTypes{`$."a"`: event.JSONDecimal}, err: "not a JSON text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := jsonValueWrite(col, tc.text, tc.types)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.expr == "" {
				if w != nil {
					t.Fatalf("rebuilt as %s %v, want the bare text", w.expr, w.args)
				}
				return
			}
			if w == nil {
				t.Fatalf("written bare, want %s", tc.expr)
			}
			// The order of the paths is the document's.
			if w.expr != tc.expr || !reflect.DeepEqual(w.args, append([]any{tc.text}, tc.args...)) {
				t.Fatalf("got %s %q\nwant %s %q", w.expr, w.args[1:], tc.expr, tc.args)
			}
		})
	}
}

func TestMayHoldLongNumberSeesEveryNumberThatNeedsADecimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	digits := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		return b.String()
	}
	for i := 0; i < 20000; i++ {
		var num string
		switch rng.IntN(4) {
		case 0:
			num = digits(1+rng.IntN(25)) + "." + digits(1+rng.IntN(25))
		case 1:
			num = strings.TrimLeft(digits(1+rng.IntN(30)), "0") + "1"
		case 2:
			num = "0." + strings.Repeat("0", rng.IntN(20)) + digits(1+rng.IntN(20))
		default:
			num = strconv.FormatFloat(math.Float64frombits(rng.Uint64()), 'g', -1, 64)
			if strings.ContainsAny(num, "NI") {
				continue
			}
		}
		if rng.IntN(2) == 0 && num[0] != '-' {
			num = "-" + num
		}
		text := fmt.Sprintf(`{"s": "1.5e3 %s", "n": [%s]}`, num, num)
		if event.NumberType(num) == event.JSONDecimal && !mayHoldLongNumber(text) {
			t.Fatalf("%s needs a DECIMAL, but mayHoldLongNumber(%s) is false", num, text)
		}
	}
	if mayHoldLongNumber(`{"price": 12.99, "qty": 3, "s": "123456789012345678901234.5e7"}`) {
		t.Fatal("an ordinary document (long digits only in a string) was taken for one that needs parsing")
	}
}

func TestValuesRowPutsEachJSONExpressionInItsColumn(t *testing.T) {
	sig := string(jsonSig([]byte("1j0j"), []*jsonWrite{{expr: "A(?,?)"}, {expr: "B(?)"}}))
	if got, want := valuesRow(sig, 4), "(?,A(?,?),B(?),?)"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got, want := valuesRow("1101", 4), "(?,?,?,?)"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestJSONOnMySQLShardsKeepsItsScalarsTypes writes events to a table whose shard column is
// MySQL's native JSON, and reads each document back from the shard: the event's
// json_types are the scalars' types there, a number the text holds more digits of than a
// double keeps them (text from a MariaDB source), and an event without json_types, as
// cleave wrote them before, is stored exactly as the server stores its text.
func TestJSONOnMySQLShardsKeepsItsScalarsTypes(t *testing.T) {
	env := testenv.ServicesFor(t, testenv.MariaDBFlavor, testenv.MySQLFlavor)
	f := newFixture(t, fixtureOpts{
		shardDSNs: env.ShardDSNs(),
		ddl:       []string{"CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, j JSON NULL, note VARCHAR(20) NULL) DEFAULT CHARSET=utf8mb4"},
		tables:    []config.Table{{Name: "docs", Strategy: config.StrategyBroadcast}},
	})
	for _, sh := range f.shards {
		// cleave prepare copies MariaDB's JSON as the LONGTEXT it is; make the shard's a
		// MySQL JSON column, as an operator may.
		mustExec(t, sh, "ALTER TABLE `"+f.db+"`.docs MODIFY j JSON NULL")
	}
	type doc struct {
		text  string
		types event.JSONTypes
		// want: the shard's text and types (path → JSON_TYPE, for the typed paths).
		want      string
		wantTypes map[string]string
	}
	docs := []doc{
		{text: `{"big": 123456789012345678901234567890, "price": 99.990}`, types: event.JSONTypes{`$."price"`: event.JSONDecimal},
			want: `{"big": 123456789012345678901234567890, "price": 99.990}`, wantTypes: map[string]string{`$."big"`: "DECIMAL", `$."price"`: "DECIMAL"}},
		// 12:00:00: MySQL 9.7 reads a string parameter of CAST(? AS TIME) with minutes 00 as
		// 00:00:00.
		{text: `[5, 4294967295, "2024-02-29", "12:00:00.000000", "2024-02-29 23:59:59.999999", "base64:type15:AP8=", 1.5, "x", 9223372036854775807]`,
			types: event.JSONTypes{"$[0]": event.JSONUnsigned, "$[1]": event.JSONUnsigned, "$[2]": event.JSONDate, "$[3]": event.JSONTime, "$[4]": event.JSONDateTime, "$[5]": event.JSONBlob, "$[8]": event.JSONInteger},
			want:  `[5, 4294967295, "2024-02-29", "12:00:00.000000", "2024-02-29 23:59:59.999999", "base64:type15:AP8=", 1.5, "x", 9223372036854775807]`,
			wantTypes: map[string]string{"$[0]": "UNSIGNED INTEGER", "$[1]": "UNSIGNED INTEGER", "$[2]": "DATE", "$[3]": "TIME", "$[4]": "DATETIME",
				"$[5]": "BLOB", "$[6]": "DOUBLE", "$[7]": "STRING", "$[8]": "INTEGER"}},
		{text: `{"pi":3.14159265358979323846,"e":2.71828,"n":[1.50,-0.0,1E-7,18446744073709551616]}`,
			want:      `{"e": 2.71828, "n": [1.5, -0.0, 0.0000001, 18446744073709551616], "pi": 3.14159265358979323846}`,
			wantTypes: map[string]string{`$."pi"`: "DECIMAL", `$."e"`: "DOUBLE", `$."n"[0]`: "DOUBLE", `$."n"[3]`: "DECIMAL"}},
		{text: `5`, types: event.JSONTypes{"$": event.JSONUnsigned}, want: `5`, wantTypes: map[string]string{"$": "UNSIGNED INTEGER"}},
	}
	// Events as cleave wrote them before json_types: go-mysql's text of MySQL documents,
	// DECIMALs as strings, doubles in Go's form. Each must be stored as the shard stores
	// its text, which the test asks the shard itself.
	legacy := []string{
		`{"price":"99.990","n":[1,2.5,1e+21,123456789012345680000],"when":"2024-02-29"}`,
		`[18446744073709551615,-9223372036854775808,0.1]`,
	}
	for _, l := range legacy {
		var want string
		if err := f.shards[0].QueryRow("SELECT CAST(CAST(? AS JSON) AS CHAR)", l).Scan(&want); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, doc{text: l, want: want})
	}
	var msgs []kafka.Message
	topic := kafkax.TableTopic(f.prefix, f.db, "docs")
	for i, d := range docs {
		v, err := event.NewVersion("mysql-bin.000001", uint64(100+i), 0)
		if err != nil {
			t.Fatal(err)
		}
		ev := &event.Event{Op: event.OpCreate, After: event.Row{"id": json.Number(strconv.Itoa(i + 1)), "j": d.text, "note": "n"}, Version: v,
			Source: event.Source{Connector: "cleave", Name: f.prefix, DB: f.db, Table: "docs", File: "mysql-bin.000001", Pos: uint64(100 + i)}}
		if d.types != nil {
			ev.JSONTypes = map[string]event.JSONTypes{"j": d.types}
		}
		val, err := event.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(fmt.Sprintf("[%d]", i+1)), Value: val})
	}
	if err := f.write(msgs); err != nil {
		t.Fatal(err)
	}
	for _, sh := range f.cfg.Shards {
		f.runSink(sh.Name, Options{})
	}
	f.waitCaughtUp(2 * time.Minute)
	for s, sh := range f.shards {
		for i, d := range docs {
			var got string
			if err := sh.QueryRow("SELECT CAST(j AS CHAR) FROM `"+f.db+"`.docs WHERE id = ?", i+1).Scan(&got); err != nil {
				t.Fatalf("shard %d, document %d: %v", s, i+1, err)
			}
			if got != d.want {
				t.Errorf("shard %d, document %d (%s):\n  shard %s\n   want %s", s, i+1, d.text, got, d.want)
			}
			for p, w := range d.wantTypes {
				if typ := jsonTypeAt(t, sh, f.db, i+1, p); typ != w {
					t.Errorf("shard %d, document %d (%s): JSON_TYPE at %s is %s, want %s", s, i+1, d.text, p, typ, w)
				}
			}
		}
	}
}

func jsonTypeAt(t *testing.T, db *sql.DB, schemaName string, id int, path string) string {
	t.Helper()
	var typ sql.NullString
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.QueryRowContext(ctx, "SELECT JSON_TYPE(JSON_EXTRACT(j, ?)) FROM `"+schemaName+"`.docs WHERE id = ?", path, id).Scan(&typ); err != nil {
		t.Fatal(err)
	}
	return typ.String
}
