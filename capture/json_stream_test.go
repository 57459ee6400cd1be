package capture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
)

// newJSONFixture is newFixture for a source of either flavor, configured with the one
// table name.
func newJSONFixture(t *testing.T, env testenv.Env, table string) (*fixture, *config.Config) {
	t.Helper()
	f := newFixture(t, env)
	cfg := f.configure([]string{table}, func(c *config.Config) { c.Kafka.Partitions = 2 })
	return f, cfg
}

// binlogEnd is the source's binlog position, read with the statement of its flavor.
func (f *fixture) binlogEnd() Position {
	f.t.Helper()
	flavor, err := mysqlx.DetectFlavor(context.Background(), f.src)
	if err != nil {
		f.t.Fatal(err)
	}
	file, pos, _, err := mysqlx.BinlogStatus(context.Background(), f.src, flavor.BinlogStatusStatement())
	if err != nil {
		f.t.Fatal(err)
	}
	return Position{File: file, Pos: pos}
}

// mariadbJSONValues are JSON texts as a MariaDB source stores them: as they were written,
// spacing, number forms and escapes included.
var mariadbJSONValues = []string{
	`'{"price":99.990,"qty" : 3 , "big": 123456789012345678901234567890}'`,
	`'[1.50, 2e3, -0.0, 1E-7, 18446744073709551616, 3.14159265358979323846]'`,
	`'  {"nested": {"a": [ ], "b": {}}, "s": "tab\\there \\u00e9 \\"q\\" \\\\ /"}  '`,
	`'"2024-01-02"'`, `'null'`, `'true'`, `'{}'`,
	`JSON_OBJECT('d', 12.50, 'u', CAST(5 AS UNSIGNED), 'when', DATE'2024-02-29')`,
	`JSON_ARRAY(1, 'é€😀', NULL, JSON_OBJECT())`,
}

// TestJSONEventsCarryTheSourcesTextAndTypes: capture's events hold every JSON value as
// the text the source renders for it (MySQL: CAST(j AS CHAR); MariaDB: the stored text),
// on inserts and in both images of updates, and their json_types name exactly the scalars
// of MySQL's documents whose type the text does not tell, by the source's JSON_TYPE().
func TestJSONEventsCarryTheSourcesTextAndTypes(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		t.Parallel()
		f, cfg := newJSONFixture(t, env, "docs")
		mysqlSource := env.SourceFlavor == testenv.MySQLFlavor
		values := mariadbJSONValues
		if mysqlSource {
			f.exec(
				"CREATE TABLE helper (id INT PRIMARY KEY, bl BLOB, bt BIT(5), bn BINARY(3), ts TIMESTAMP(3) NULL, y YEAR, tb TINYBLOB, g GEOMETRY)",
				"INSERT INTO helper VALUES (1, x'00ff10', b'101', x'0102', '2024-01-02 03:04:05.123', 2024, x'04', ST_GeomFromText('POINT(1 1)'))",
			)
			values = jsonTestValues(rand.New(rand.NewPCG(3, 4)))
		}
		f.exec("CREATE TABLE docs (id INT PRIMARY KEY, j JSON, k JSON NOT NULL, n INT) DEFAULT CHARSET=utf8mb4")
		r := f.start(cfg)
		for i, v := range values {
			f.exec(fmt.Sprintf("INSERT INTO docs VALUES (%d, %s, %s, 0)", i+1, v, values[(i+1)%len(values)]))
		}
		f.exec("INSERT INTO docs VALUES (0, NULL, '[]', 0)")
		before := f.jsonRows(mysqlSource)
		f.exec("UPDATE docs SET n = 1, k = j WHERE j IS NOT NULL AND id % 2 = 0")
		after := f.jsonRows(mysqlSource)
		r.waitAcknowledged(t, f.binlogEnd())

		recs := rowEvents(readTopic(t, env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "docs")))
		inserts, updates := 0, 0
		type image struct {
			what string
			got  event.Row
			want map[string]jsonRow
		}
		for _, rec := range recs {
			var images []image
			switch rec.ev.Op {
			case event.OpCreate:
				inserts++
				images = append(images, image{"insert", rec.ev.After, before})
			case event.OpUpdate:
				updates++
				images = append(images, image{"update before image", rec.ev.Before, before}, image{"update after image", rec.ev.After, after})
			}
			for _, img := range images {
				want := img.want[fmt.Sprint(img.got["id"])]
				for _, c := range []string{"j", "k"} {
					if g, w := img.got[c], want.text[c]; g != w {
						t.Errorf("%s of row %v, column %s:\n event %#v\nsource %#v", img.what, img.got["id"], c, g, w)
					}
				}
				if img.what == "update before image" {
					continue
				}
				types := rec.ev.JSONTypes
				for _, c := range []string{"j", "k"} {
					got, wantT := types[c], want.types[c]
					if len(got) == 0 && len(wantT) == 0 {
						continue
					}
					if !reflect.DeepEqual(got, wantT) {
						t.Errorf("%s of row %v, column %s: json_types %v, source's types %v", img.what, img.got["id"], c, got, wantT)
					}
				}
			}
		}
		if inserts != len(values)+1 || updates == 0 {
			t.Fatalf("%d inserts and %d updates in the topic, want %d inserts and some updates", inserts, updates, len(values)+1)
		}
	})
}

// jsonRow is a row's JSON columns as the source renders them, and their scalars' types.
type jsonRow struct {
	text  map[string]any
	types map[string]event.JSONTypes
}

// jsonRows reads the JSON columns of docs by id: their text (MySQL renders its binary
// form; MariaDB stores text) and, on MySQL, the scalars whose type the text does not tell.
func (f *fixture) jsonRows(mysqlSource bool) map[string]jsonRow {
	f.t.Helper()
	rows, err := f.src.Query("SELECT id, CAST(j AS CHAR), CAST(k AS CHAR) FROM docs")
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]jsonRow{}
	type row struct {
		id   int
		j, k *string
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.j, &r.k); err != nil {
			f.t.Fatal(err)
		}
		all = append(all, r)
	}
	rows.Close()
	s := &jsonServer{t: f.t.(*testing.T), db: f.src}
	for _, r := range all {
		jr := jsonRow{text: map[string]any{"j": nil, "k": nil}, types: map[string]event.JSONTypes{}}
		for c, v := range map[string]*string{"j": r.j, "k": r.k} {
			if v == nil {
				continue
			}
			jr.text[c] = *v
			if mysqlSource {
				jr.types[c] = s.serverTypesOf("docs", c, r.id, *v)
			}
		}
		out[fmt.Sprint(r.id)] = jr
	}
	return out
}

// serverTypesOf is serverTypes for column col.
func (s *jsonServer) serverTypesOf(table, col string, id int, text string) event.JSONTypes {
	if col == "j" {
		return s.serverTypes(table, id, text)
	}
	// serverTypes reads column j: read col through a view of the same shape.
	view := "v_" + col + "_" + strings.ReplaceAll(table, "`", "")
	if _, err := s.db.Exec("CREATE OR REPLACE VIEW " + mysqlx.QuoteIdent(view) + " AS SELECT id, " + mysqlx.QuoteIdent(col) + " AS j FROM " + mysqlx.QuoteIdent(table)); err != nil {
		s.t.Fatal(err)
	}
	return s.serverTypes(view, id, text)
}
