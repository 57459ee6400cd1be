package reconcile

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
)

// TestMembershipSQLAgreesWithRoute evaluates, on the server, the condition that a row
// belongs on each shard, for every strategy, over random shard key values (NULL included),
// and checks it against route.Router.Route: the checker must count exactly the rows the
// sinks would have put elsewhere. The hash strategy's condition calls MD5(): it runs where
// the server has it, MariaDB, and MySQL 9.6+ only with component_classic_hashing (a private
// server with it installed); a stock MySQL 9 leaves it to Go (streamAggregate).
func TestMembershipSQLAgreesWithRoute(t *testing.T) {
	testenv.EachFlavorDatabases(t, func(t *testing.T, env testenv.Env) { membershipAgrees(t, env.SourceDSN) })
	t.Run("mysql with component_classic_hashing", func(t *testing.T) {
		testenv.SkipUnlessInMatrix(t, testenv.MySQLFlavor)
		membershipAgrees(t, testenv.StartMySQLWithClassicHashing(t, testenv.ServerOptions{DisableBinlog: true}).DSN())
	})
}

func membershipAgrees(t *testing.T, dsn string) {
	db, name := scratch(t, dsn)
	flavor, err := mysqlx.DetectFlavor(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	hasMD5, err := mysqlx.HasMD5(context.Background(), db, flavor)
	if err != nil {
		t.Fatal(err)
	}
	table := mysqlx.QuoteTable(name, "m")
	if _, err := db.Exec("CREATE TABLE " + table + " (id INT PRIMARY KEY, ik BIGINT NULL, sk VARCHAR(12) COLLATE utf8mb4_bin NULL)"); err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	words := []string{"eu", "us", "EU", "", "apple", "g", "gz", "p", "pear", "zz", "é"}
	var vals []string
	for id := range 400 {
		ik, sk := "NULL", "NULL"
		if rng.IntN(10) > 0 {
			ik = fmt.Sprint([]int64{rng.Int64N(3000) - 1500, 1, 2, 7, -100, 0, 1000, -9223372036854775808}[rng.IntN(8)])
		}
		if rng.IntN(10) > 0 {
			sk = "'" + words[rng.IntN(len(words))] + "'"
		}
		vals = append(vals, fmt.Sprintf("(%d, %s, %s)", id, ik, sk))
	}
	if _, err := db.Exec("INSERT INTO " + table + " VALUES " + strings.Join(vals, ",")); err != nil {
		t.Fatal(err)
	}
	shards := []route.Shard{{Name: "s0", End: 1 << 62}, {Name: "s1", Start: 1 << 62, End: 3 << 62}, {Name: "s2", Start: 3 << 62}}
	intCol := &schema.Column{Name: "ik", Kind: schema.KindInt}
	strCol := &schema.Column{Name: "sk", Kind: schema.KindString}
	for _, tc := range []struct {
		name string
		col  *schema.Column
		spec route.TableSpec
	}{
		{"hash on an integer", intCol, route.TableSpec{Strategy: route.Hash}},
		{"hash on a string", strCol, route.TableSpec{Strategy: route.Hash}},
		{"integer ranges", intCol, route.TableSpec{Strategy: route.Range, KeyKind: route.KeyInt,
			Ranges: []route.RangeBound{{Below: "-100", Shard: "s1"}, {Below: "0", Shard: "s0"}, {Below: "1000", Shard: "s1"}, {Shard: "s2"}}}},
		{"byte ranges", strCol, route.TableSpec{Strategy: route.Range,
			Ranges: []route.RangeBound{{Below: "g", Shard: "s2"}, {Below: "p", Shard: "s0"}, {Below: "zz", Shard: "s1"}, {Shard: "s0"}}}},
		{"integer list with default", intCol, route.TableSpec{Strategy: route.List, KeyKind: route.KeyInt,
			Values: []route.ListValue{{Value: "1", Shard: "s1"}, {Value: "002", Shard: "s2"}, {Value: "7", Shard: "s1"}}, Default: "s0"}},
		{"string list without default", strCol, route.TableSpec{Strategy: route.List,
			Values: []route.ListValue{{Value: "eu", Shard: "s0"}, {Value: "us", Shard: "s1"}, {Value: "EU", Shard: "s2"}}}},
		{"pin", nil, route.TableSpec{Strategy: route.Pin, Shard: "s1"}},
		{"broadcast", nil, route.TableSpec{Strategy: route.Broadcast}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.spec.MembershipUsesMD5() && !hasMD5 {
				t.Skipf("%s has no MD5(): the checker routes in Go there", flavor.Product())
			}
			r, err := route.New(shards, map[string]route.TableSpec{"t": tc.spec})
			if err != nil {
				t.Fatal(err)
			}
			conds := make([]string, len(shards))
			for i := range shards {
				if conds[i], err = tc.spec.MemberSQL(keyColumn(tc.col), shards, i); err != nil {
					t.Fatal(err)
				}
				conds[i] = "IFNULL(" + conds[i] + ", FALSE)"
			}
			sk := "NULL"
			if tc.col != nil {
				sk = "CAST(" + mysqlx.QuoteIdent(tc.col.Name) + " AS BINARY)"
			}
			rows, err := db.Query("SELECT id, " + sk + ", " + strings.Join(conds, ",") + " FROM " + table)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				var id int
				var key []byte
				member := make([]bool, len(shards))
				dest := []any{&id, &key}
				for i := range member {
					dest = append(dest, &member[i])
				}
				if err := rows.Scan(dest...); err != nil {
					t.Fatal(err)
				}
				want := make([]bool, len(shards))
				if owners, err := r.Route("t", routeValue(key, key == nil)); err == nil {
					for _, o := range owners {
						want[o] = true
					}
				}
				if fmt.Sprint(member) != fmt.Sprint(want) {
					t.Errorf("row %d key %q: SQL says %v, Route says %v", id, key, member, want)
				}
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if n != 400 {
				t.Fatalf("%d rows", n)
			}
		})
	}
}

// TestStreamedAggregateEqualsTheSQLAggregate computes a range's aggregate both ways on a
// server that can do either (MariaDB): in SQL with the membership condition, and in Go
// from the rows (the path of a shard without MD5()). Count, sum and stray rows must agree.
func TestStreamedAggregateEqualsTheSQLAggregate(t *testing.T) {
	db, name := scratch(t, testenv.MySQL(t).SourceDSN)
	table := mysqlx.QuoteTable(name, "s")
	if _, err := db.Exec("CREATE TABLE " + table + " (id INT PRIMARY KEY, k BIGINT NULL, v VARCHAR(20))"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO " + table + " SELECT seq, IF(seq % 17 = 0, NULL, seq * 7919 % 1009), CONCAT('v', seq) FROM " + seqSQL(3000)); err != nil {
		t.Fatal(err)
	}
	ti, err := loadTable(context.Background(), &config.Table{Name: name + ".s", Strategy: "hash", ShardKey: "k"}, db, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	shards := []route.Shard{{Name: "s0", End: 3 << 62}, {Name: "s1", Start: 3 << 62}}
	r, err := route.New(shards, map[string]route.TableSpec{ti.name: {Strategy: route.Hash}})
	if err != nil {
		t.Fatal(err)
	}
	c := &Checker{router: r}
	for i := range shards {
		member, err := route.TableSpec{Strategy: route.Hash}.MemberSQL(keyColumn(ti.shardKey), shards, i)
		if err != nil {
			t.Fatal(err)
		}
		for _, kr := range []keyRange{{}, {Lower: [][]byte{[]byte("100")}, Upper: [][]byte{[]byte("2500")}}} {
			inSQL, err := c.aggregate(context.Background(), db, ti, kr, member)
			if err != nil {
				t.Fatal(err)
			}
			inGo, err := c.streamAggregate(context.Background(), db, ti, kr, i)
			if err != nil {
				t.Fatal(err)
			}
			if inSQL.count != inGo.count || inSQL.sum.Cmp(inGo.sum) != 0 || inSQL.stray != inGo.stray || inSQL.stray == 0 {
				t.Errorf("shard %d range %q: SQL %d rows sum %s stray %d; Go %d rows sum %s stray %d",
					i, kr, inSQL.count, inSQL.sum, inSQL.stray, inGo.count, inGo.sum, inGo.stray)
			}
		}
	}
}
