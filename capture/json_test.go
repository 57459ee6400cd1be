package capture

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

var update = flag.Bool("update", false, "rewrite testdata/json_binary.golden from the MySQL source")

const jsonGolden = "testdata/json_binary.golden"

// goldenJSON is one binary document captured from a real MySQL binlog, with the text the
// server renders for it and the json_types capture must give it.
type goldenJSON struct {
	binary []byte
	text   string
	types  event.JSONTypes
}

func readGolden(t testing.TB) []goldenJSON {
	t.Helper()
	f, err := os.Open(jsonGolden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenJSON
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "\t")
		if len(parts) != 3 {
			t.Fatalf("%s: line %q has %d tab-separated fields, want 3", jsonGolden, line, len(parts))
		}
		b, err := hex.DecodeString(parts[0])
		if err != nil {
			t.Fatal(err)
		}
		g := goldenJSON{binary: b, text: parts[1]}
		if err := json.Unmarshal([]byte(parts[2]), &g.types); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeJSONForTest(b []byte) (string, event.JSONTypes, error) {
	doc, err := parseJSONBinary(b)
	if err != nil {
		return "", nil, err
	}
	return string(doc.appendText(nil)), doc.types(nil, []byte("$")), nil
}

func TestBinaryJSONFromTheBinlogRendersAsMySQLDoes(t *testing.T) {
	cases := readGolden(t)
	if len(cases) < 20 {
		t.Fatalf("%s holds %d documents", jsonGolden, len(cases))
	}
	for i, g := range cases {
		text, types, err := decodeJSONForTest(g.binary)
		if err != nil {
			t.Fatalf("document %d (%s): %v", i, g.text, err)
		}
		if text != g.text {
			t.Errorf("document %d:\n got %s\nwant %s", i, text, g.text)
		}
		if len(types) == 0 {
			types = nil
		}
		if len(g.types) == 0 {
			g.types = nil
		}
		if !reflect.DeepEqual(types, g.types) {
			t.Errorf("document %d (%s): types %v, want %v", i, g.text, types, g.types)
		}
	}
}

func TestDoublesRenderAsMySQLPrintsThem(t *testing.T) {
	// Seen from MySQL 9.7: SELECT CAST(JSON_ARRAY(CAST(x AS DOUBLE)) AS CHAR).
	for _, tc := range []struct {
		x    float64
		want string
	}{
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1.5, "1.5"},
		{100, "100.0"},
		{0.1, "0.1"},
		{1e300, "1e300"},
		{1e-7, "0.0000001"},
		{1e14, "100000000000000.0"},
		{1e15, "1e15"},
		{1e-15, "0.000000000000001"},
		{1e-16, "1e-16"},
		{123456789012345678, "1.2345678901234568e17"},
		{1.2345678901234567e20, "1.2345678901234567e20"},
		{123456.789, "123456.789"},
		{2.5e-5, "0.000025"},
		{1.7976931348623157e308, "1.7976931348623157e308"},
		{-1.7976931348623157e308, "-1.7976931348623157e308"},
		{5e-324, "5e-324"},
		{-2.5e-100, "-2.5e-100"},
		{1234567.5, "1234567.5"},
	} {
		if got := string(appendMySQLDouble(nil, tc.x)); got != tc.want {
			t.Errorf("%v renders as %s, want %s", tc.x, got, tc.want)
		}
	}
}

func TestSetMemberKeepsMySQLKeyOrder(t *testing.T) {
	doc := jsonNode{kind: jsonObject}
	for _, k := range []string{"bb", "a", "ccc", "b", "", "ab"} {
		doc.setMember(k, jsonNode{kind: jsonInt, text: strconv.Itoa(len(k))})
	}
	doc.setMember("b", jsonNode{kind: jsonTrue})
	if got, want := string(doc.appendText(nil)), `{"": 0, "a": 1, "b": true, "ab": 2, "bb": 2, "ccc": 3}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestCutBinaryJSONIsAnErrorNotAPanic(t *testing.T) {
	for _, g := range readGolden(t) {
		for cut := 1; cut < len(g.binary); cut += 1 + len(g.binary)/64 {
			if _, _, err := decodeJSONForTest(g.binary[:cut]); err == nil {
				t.Errorf("%s cut to %d of its %d bytes decoded without an error", g.text, cut, len(g.binary))
			}
		}
	}
}

func FuzzBinaryJSON(f *testing.F) {
	for _, g := range readGolden(f) {
		f.Add(g.binary)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		text, types, err := decodeJSONForTest(b)
		if err != nil {
			return
		}
		if !json.Valid([]byte(text)) {
			t.Fatalf("%x renders as invalid JSON %q", b, text)
		}
		paths := map[string]bool{}
		if err := event.ScanJSON(text, func(s *event.JSONScalar) error {
			paths[string(s.Path)] = true
			return nil
		}); err != nil {
			t.Fatalf("%x renders as %q, which ScanJSON refuses: %v", b, text, err)
		}
		for p := range types {
			if !paths[p] {
				t.Fatalf("%x: type of %s, a path %q does not have", b, p, text)
			}
		}
	})
}

// The documents the server test writes: every binary form capture decodes, the scalar
// types the text cannot tell, and text that needs escaping. Each is a SQL expression;
// helper names the table of column values that only a column can make JSON of.
func jsonTestValues(rng *rand.Rand) []string {
	doubles := make([]string, 0, 300)
	for len(doubles) < cap(doubles) {
		x := math.Float64frombits(rng.Uint64())
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		if len(doubles)%3 == 0 { // also ordinary magnitudes, where the 'f' form is chosen
			x = (rng.Float64() - 0.5) * math.Pow(10, float64(rng.IntN(40)-20))
		}
		doubles = append(doubles, "CAST('"+strconv.FormatFloat(x, 'g', -1, 64)+"' AS DOUBLE)")
	}
	var ctl strings.Builder
	for c := 0; c < 0x20; c++ {
		ctl.WriteString(fmt.Sprintf("%02x", c))
	}
	return []string{
		"CAST('null' AS JSON)", "CAST('true' AS JSON)", "CAST('false' AS JSON)",
		"CAST('{}' AS JSON)", "CAST('[]' AS JSON)", "CAST('\"\"' AS JSON)",
		"CAST('[0, 1, -1, 32767, 32768, -32768, -32769, 65535, 65536, 2147483647, 2147483648, -2147483648, -2147483649, 4294967295, 4294967296, 9223372036854775807, -9223372036854775808, 9223372036854775808, 18446744073709551615]' AS JSON)",
		"JSON_ARRAY(CAST(0 AS UNSIGNED), CAST(5 AS UNSIGNED), CAST(65535 AS UNSIGNED), CAST(65536 AS UNSIGNED), CAST(4294967295 AS UNSIGNED), CAST(9223372036854775807 AS UNSIGNED), CAST(9223372036854775808 AS UNSIGNED), CAST(18446744073709551615 AS UNSIGNED))",
		"CAST(CAST(5 AS UNSIGNED) AS JSON)",
		"JSON_ARRAY(CAST(4294967296 AS SIGNED), CAST(9223372036854775807 AS SIGNED), CAST(4294967295 AS SIGNED), -4294967296)",
		"JSON_OBJECT('price', 99.990, 'neg', -0.5, 'zero', 0.000, 'int', CAST(5 AS DECIMAL(10,0)), 'wide', CAST('-12345678901234567890123456789012345.123456789012345678901234567890' AS DECIMAL(65,30)), 'tiny', CAST('0.000000000000000000000000000001' AS DECIMAL(30,30)), 'big', CAST('123456789012345678901234567890' AS DECIMAL(30,0)), 'u64', CAST('18446744073709551616' AS DECIMAL(20,0)), 'pi', CAST('3.14159265358979323846' AS DECIMAL(21,20)), 'half', 1.5)",
		"CAST(99.990 AS JSON)",
		"CAST('[1.5, 0.1, 1e300, 1e-7, 1e15, 1e16, 1e-15, 1e-16, -1.7976931348623157e308, 5e-324, -0.0, 0.0, 1e2, 123456789012345680000, 0.3333333333333333, 2.5e-5, 1.0, 12345678901234567890123]' AS JSON)",
		"JSON_ARRAY(" + strings.Join(doubles[:150], ", ") + ")",
		"JSON_ARRAY(" + strings.Join(doubles[150:], ", ") + ")",
		"JSON_ARRAY(CONVERT(X'" + ctl.String() + "225c2f7f' USING utf8mb4), 'é€😀', CONVERT(X'e280a8e280a9' USING utf8mb4), '', REPEAT('x', 200), 'a\\\\b', 'tab\\there')",
		"JSON_OBJECT('long', REPEAT('é', 9000))",
		"JSON_ARRAY(DATE'2024-02-29', DATE'1000-01-01', DATE'9999-12-31', TIME'-838:59:59', TIME'838:59:59', TIME'00:00:00', CAST('-00:00:01.5' AS TIME(1)), TIME'12:34:56.5', CAST('2024-02-29 23:59:59.999999' AS DATETIME(6)), CAST('1000-01-01 00:00:00' AS DATETIME), '2024-02-29', '12:00:00.000000')",
		"CAST(DATE'2024-01-02' AS JSON)",
		"CAST(CAST('2024-01-02 03:04:05.5' AS DATETIME(1)) AS JSON)",
		"JSON_ARRAY(x'00ff', CAST(REPEAT(x'ab', 100) AS BINARY), CAST('' AS BINARY), 'base64:type15:AP8=')",
		"(SELECT JSON_OBJECT('blob', bl, 'bit', bt, 'binary', bn, 'ts', ts, 'year', y, 'tiny', tb, 'geo', g) FROM helper)",
		"(SELECT CAST(ts AS JSON) FROM helper)",
		"JSON_OBJECT('a', JSON_OBJECT('b', JSON_ARRAY(1, JSON_OBJECT('c', 99.99, 'd', JSON_ARRAY())), 'e', JSON_OBJECT()), 'key with \"quote\"', 1, 'é', 2, '', 3, 'bb', 4, 'a\\\\b', 5, 'aaa', 6, 'ZZ', 7, 'line\\nbreak', 8)",
		"JSON_OBJECT('pad', REPEAT('x', 70000), 'i', 100000, 'j', -5, 'u', CAST(4294967295 AS UNSIGNED), 's', CAST(40000 AS UNSIGNED), 'n', NULL, 't', true, 'd', 12.50, 'o', JSON_OBJECT('k', 1))",
		"CAST(CONCAT('[', REPEAT('12345678.5, 99.5, -7, ', 4000), '\"end\"]') AS JSON)",
		"JSON_ARRAY(REPEAT('y', 70000), 1, -1, 100000, CAST(70000 AS UNSIGNED), JSON_ARRAY(true, false, null), 0.25)",
		"CAST(CONCAT(REPEAT('[', 99), '1.25', REPEAT(']', 99)) AS JSON)",
		"CAST(CONCAT(REPEAT('{\"k\": ', 99), 'true', REPEAT('}', 99)) AS JSON)",
	}
}

// jsonServer is a MySQL source database for the JSON tests.
type jsonServer struct {
	t   *testing.T
	dsn string
	db  *sql.DB
}

func newJSONServer(t *testing.T) *jsonServer {
	t.Helper()
	testenv.SkipUnlessInMatrix(t, testenv.MySQLFlavor) // binary JSON is MySQL's
	env := testenv.DatabasesFor(t, testenv.MySQLFlavor, testenv.MySQLFlavor)
	name := testenv.NewDatabase(t, env.SourceDSN)
	db, err := mysqlx.Open(context.Background(), "source", testenv.DSNWithDB(t, env.SourceDSN, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &jsonServer{t: t, dsn: env.SourceDSN, db: db}
}

func (s *jsonServer) exec(stmts ...string) {
	s.t.Helper()
	for _, q := range stmts {
		if _, err := s.db.Exec(q); err != nil {
			s.t.Fatalf("%.300s: %v", q, err)
		}
	}
}

func (s *jsonServer) position() Position {
	s.t.Helper()
	flavor, err := mysqlx.DetectFlavor(context.Background(), s.db)
	if err != nil {
		s.t.Fatal(err)
	}
	file, pos, _, err := mysqlx.BinlogStatus(context.Background(), s.db, flavor.BinlogStatusStatement())
	if err != nil {
		s.t.Fatal(err)
	}
	return Position{File: file, Pos: pos}
}

// binlogJSON reads the binlog from from to to and returns the JSON column values of the
// rows events of table, as rowsDecoder hands them on.
func (s *jsonServer) binlogJSON(from, to Position, table string) []mysqlJSON {
	s.t.Helper()
	var out []mysqlJSON
	walkBinlog(s.t, gomysql.MySQLFlavor, s.dsn, from, to, time.Minute, func(cfg *replication.BinlogSyncerConfig) {
		cfg.RowsEventDecodeFunc = rowsDecoder{}.decode
	}, func(_ string, ev *replication.BinlogEvent) {
		if e, ok := ev.Event.(*replication.RowsEvent); ok && string(e.Table.Table) == table {
			for _, row := range e.Rows {
				for _, v := range row {
					if j, ok := v.(mysqlJSON); ok {
						out = append(out, append(mysqlJSON(nil), j...))
					}
				}
			}
		}
	})
	return out
}

// serverTypes asks the server for the type of every scalar of row id's document and
// returns those whose type differs from what their text tells, as json_types carries
// them: the independent answer to what capture's decoder must find.
func (s *jsonServer) serverTypes(table string, id int, text string) event.JSONTypes {
	s.t.Helper()
	var paths []string
	natural := map[string]event.JSONType{}
	texts := map[string]string{}
	if err := event.ScanJSON(text, func(sc *event.JSONScalar) error {
		p := string(sc.Path)
		paths = append(paths, p)
		texts[p] = sc.Token
		switch c := sc.Token[0]; {
		case c == '"':
			natural[p] = event.JSONString
		case c == '-' || c >= '0' && c <= '9':
			natural[p] = event.NumberType(sc.Token)
		case c == 't' || c == 'f':
			natural[p] = "BOOLEAN"
		default:
			natural[p] = "NULL"
		}
		return nil
	}); err != nil {
		s.t.Fatalf("scan %q: %v", text, err)
	}
	pj, _ := json.Marshal(paths)
	rows, err := s.db.Query("SELECT c.n, JSON_TYPE(JSON_EXTRACT(t.j, c.p)) FROM "+mysqlx.QuoteIdent(table)+" AS t, JSON_TABLE(?, '$[*]' COLUMNS (n FOR ORDINALITY, p TEXT PATH '$')) AS c WHERE t.id = ?", string(pj), id)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	out := event.JSONTypes{}
	for rows.Next() {
		var n int
		var typ string
		if err := rows.Scan(&n, &typ); err != nil {
			s.t.Fatal(err)
		}
		p := paths[n-1]
		if event.JSONType(typ) == natural[p] {
			continue
		}
		switch typ {
		case "BLOB":
			// Only binary strings (field type 15) have an SQL form to rebuild them from.
			if !strings.HasPrefix(texts[p], `"base64:type15:`) {
				continue
			}
		case "BIT", "OPAQUE":
			continue
		}
		out[p] = event.JSONType(typ)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

func TestBinaryJSONDecodesToTheSourcesTextAndTypes(t *testing.T) {
	t.Parallel()
	s := newJSONServer(t)
	s.exec(
		"CREATE TABLE helper (id INT PRIMARY KEY, bl BLOB, bt BIT(5), bn BINARY(3), ts TIMESTAMP(3) NULL, y YEAR, tb TINYBLOB, g GEOMETRY)",
		"INSERT INTO helper VALUES (1, x'00ff10', b'101', x'0102', '2024-01-02 03:04:05.123', 2024, x'04', ST_GeomFromText('POINT(1 1)'))",
		"CREATE TABLE docs (id INT PRIMARY KEY, j JSON)",
	)
	values := jsonTestValues(rand.New(rand.NewPCG(7, 9)))
	from := s.position()
	for i, v := range values {
		s.exec(fmt.Sprintf("INSERT INTO docs VALUES (%d, %s)", i+1, v))
	}
	to := s.position()
	bins := s.binlogJSON(from, to, "docs")
	if len(bins) != len(values) {
		t.Fatalf("%d JSON values in the binlog, %d inserted", len(bins), len(values))
	}
	var golden strings.Builder
	golden.WriteString("# Binary JSON documents from a MySQL 9.7 binlog (capture/json_test.go, go test -run TestBinaryJSONDecodesToTheSourcesTextAndTypes -update),\n")
	golden.WriteString("# with the text the server renders for each (CAST(j AS CHAR)) and the json_types capture must give it.\n")
	golden.WriteString("# hex<TAB>text<TAB>types\n")
	for i, b := range bins {
		var want string
		if err := s.db.QueryRow("SELECT CAST(j AS CHAR) FROM docs WHERE id = ?", i+1).Scan(&want); err != nil {
			t.Fatal(err)
		}
		wantTypes := s.serverTypes("docs", i+1, want)
		text, types, err := decodeJSONForTest(b)
		if err != nil {
			t.Errorf("%.200s: %v", values[i], err)
			continue
		}
		if text != want {
			t.Errorf("%.200s:\n decoded %.2000s\n  server %.2000s", values[i], text, want)
		}
		if len(types) == 0 {
			types = event.JSONTypes{}
		}
		if !reflect.DeepEqual(types, wantTypes) {
			t.Errorf("%.200s: types %v, the server's %v", values[i], types, wantTypes)
		}
		if len(b) <= 3000 {
			tj, _ := json.Marshal(wantTypes)
			fmt.Fprintf(&golden, "%x\t%s\t%s\n", []byte(b), want, tj)
		}
	}
	if *update && !t.Failed() {
		if err := os.MkdirAll(filepath.Dir(jsonGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(jsonGolden, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEventsWithJSONTypesAreByteForByteWhatEventMarshalWrites(t *testing.T) {
	names := []string{"id", "j", "k"}
	tbl := &schema.Table{DB: "d", Name: "t", PK: []int{0}, Columns: []schema.Column{{Name: "id"}, {Name: "j", Kind: schema.KindJSON}, {Name: "k", Kind: schema.KindJSON}}}
	d := &tableDef{table: tbl, cols: event.NewColumns(names, tbl.PK)}
	for _, g := range readGolden(t) {
		img := &rowImage{}
		img.reset()
		img.Text = append(img.Text, '1')
		img.End()
		for _, c := range tbl.Columns[1:] {
			var err error
			if img.Text, err = img.appendJSON(img.Text, &c, mysqlJSON(g.binary)); err != nil {
				t.Fatal(err)
			}
			img.End()
		}
		ev := &event.Event{Op: event.OpCreate, After: event.Row{"id": json.Number("1"), "j": g.text, "k": g.text}, Source: event.Source{Connector: "cleave"}}
		if len(g.types) > 0 {
			ev.JSONTypes = map[string]event.JSONTypes{"j": g.types, "k": g.types}
		}
		want, err := event.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.appendEvent(nil, event.OpCreate, nil, img, 0, event.AppendSource(nil, &ev.Source), 0); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
}
