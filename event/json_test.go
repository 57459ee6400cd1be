package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestNumberTypeIsWhatMySQLsParserMakesOfTheText(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want JSONType
	}{
		{"0", JSONInteger}, {"-5", JSONInteger}, {"4294967295", JSONInteger},
		{"4294967296", JSONUnsigned}, {"9223372036854775807", JSONUnsigned}, {"18446744073709551615", JSONUnsigned},
		{"-9223372036854775808", JSONInteger},
		{"1.5", JSONDouble}, {"1.0", JSONDouble}, {"99.990", JSONDouble}, {"1e2", JSONDouble}, {"-0.0", JSONDouble},
		{"0.1", JSONDouble}, {"0.3333333333333333", JSONDouble}, {"1.2345678901234568e20", JSONDouble},
		{"123456789012345680000", JSONDouble}, {"100000000000000000000", JSONDouble}, {"5e-324", JSONDouble},
		{"18446744073709551616", JSONDecimal}, {"-9223372036854775809", JSONDecimal},
		{"123456789012345678901234567890", JSONDecimal}, {"3.14159265358979323846", JSONDecimal},
		{"0.10000000000000000001", JSONDecimal},
		{"1.2345678901234567890123e-40", JSONDouble}, // no DECIMAL holds it
		{"1e400", JSONDouble},                        // nor a double; MySQL refuses it
	} {
		if got := NumberType(tc.tok); got != tc.want {
			t.Errorf("NumberType(%s) = %s, want %s", tc.tok, got, tc.want)
		}
	}
}

func TestPlainDecimalKeepsTheNumbersDigitsAndScale(t *testing.T) {
	for _, tc := range []struct {
		tok, text string
		p, s      int
		ok        bool
	}{
		{"99.990", "99.990", 5, 3, true},
		{"-0.5", "-0.5", 1, 1, true},
		{"0", "0", 1, 0, true},
		{"0.000", "0.000", 3, 3, true},
		{"5", "5", 1, 0, true},
		{"1.5e3", "1500", 4, 0, true},
		{"1.25E-3", "0.00125", 5, 5, true},
		{"123456789012345678901234567890", "123456789012345678901234567890", 30, 0, true},
		{"1e-31", "", 0, 0, false},
		{"1" + strings.Repeat("0", 65), "", 0, 0, false},
	} {
		text, p, s, ok := PlainDecimal(tc.tok)
		if text != tc.text || p != tc.p || s != tc.s || ok != tc.ok {
			t.Errorf("PlainDecimal(%s) = %q, %d, %d, %v; want %q, %d, %d, %v", tc.tok, text, p, s, ok, tc.text, tc.p, tc.s, tc.ok)
		}
	}
}

func TestScanJSONNamesEveryScalarByItsMySQLPath(t *testing.T) {
	text := ` {"a": [1, {"b\"c": "x\u00e9", "": null}], "é": true, "e": [[]], "f": {}, "n": -1.5e3} `
	var got []string
	if err := ScanJSON(text, func(s *JSONScalar) error {
		got = append(got, string(s.Path)+"="+s.Token)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{`$."a"[0]=1`, `$."a"[1]."b\"c"="x\u00e9"`, `$."a"[1].""=null`, `$."é"=true`, `$."n"=-1.5e3`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for _, bad := range []string{``, `{`, `[1,]`, `{"a" 1}`, `01`, `1.`, `"a`, `tru`, `[1] 2`, `{"a":1,}`, strings.Repeat("[", 101) + strings.Repeat("]", 101)} {
		if err := ScanJSON(bad, func(*JSONScalar) error { return nil }); err == nil {
			t.Errorf("ScanJSON(%q) found no error", bad)
		}
	}
}

func TestUnquoteJSONDecodesEscapes(t *testing.T) {
	for tok, want := range map[string]string{
		`""`: "", `"a"`: "a", `"\"\\\/\b\f\n\r\t"`: "\"\\/\b\f\n\r\t", `"\u00e9\u20ac"`: "é€", `"\ud83d\ude00"`: "😀", `"\ud83d"`: "\ufffd",
	} {
		if got, ok := UnquoteJSON(tok); !ok || got != want {
			t.Errorf("UnquoteJSON(%s) = %q, %v; want %q", tok, got, ok, want)
		}
	}
	for _, bad := range []string{`a`, `"a`, `"\x"`, `"\u12"`} {
		if _, ok := UnquoteJSON(bad); ok {
			t.Errorf("UnquoteJSON(%s) accepted it", bad)
		}
	}
}

func TestJSONTypesTravelAndOldEventsHaveNone(t *testing.T) {
	ev := &Event{Op: OpCreate, After: Row{"id": json.Number("1"), "j": `{"a\"": [99.990]}`},
		JSONTypes: map[string]JSONTypes{"j": {`$."a\""[0]`: JSONDecimal, "$": ""}, "k": {"$": JSONDate}, "empty": {}}}
	data, err := Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	// The hand-written appender writes what Marshal writes, as the last field.
	if appended := AppendJSONTypes(nil, ev.JSONTypes); !bytes.HasSuffix(data, append(appended, '}')) {
		t.Fatalf("AppendJSONTypes wrote %s; Marshal %s", appended, data)
	}
	back, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.JSONTypes, ev.JSONTypes) {
		t.Fatalf("json_types came back as %v, want %v", back.JSONTypes, ev.JSONTypes)
	}
	old := []byte(`{"before":null,"after":{"id":1,"j":"{\"a\":\"99.990\"}"},"op":"c","ts_ms":1,"source":{"connector":"cleave","name":"p","db":"d","table":"t","server_id":1,"file":"f","pos":4,"ts_ms":1,"row":0},"version":7}`)
	back, err = Unmarshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if back.JSONTypes != nil {
		t.Fatalf("an event written before json_types decodes with %v", back.JSONTypes)
	}
	if again, _ := Marshal(back); !bytes.Equal(again, old) {
		t.Fatalf("an event written before json_types encodes again as\n%s\nnot\n%s", again, old)
	}
	if AppendJSONTypes(nil, map[string]JSONTypes{}) != nil {
		t.Fatal("an empty json_types was written")
	}
}
