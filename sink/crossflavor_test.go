package sink

import (
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestPrepareAndSinkAcrossProducts splits a source of one product onto shards of the
// other (MySQL to MariaDB, MariaDB to MySQL): prepare makes the shard tables, capture
// streams a live write load, and the shards end holding exactly the source's rows. The
// tables use a collation both products share; MySQL's default has no equal on MariaDB.
func TestPrepareAndSinkAcrossProducts(t *testing.T) {
	var ddl []string
	for _, d := range sourceDDL {
		ddl = append(ddl, strings.Replace(d, "DEFAULT CHARSET=utf8mb4", "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci", 1))
	}
	testenv.CrossFlavors(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e, ddl: ddl, tables: sourceTables})
		g := newGen(f, 13)
		f.startCapture(t)
		stop0, _ := f.runSink("s0", Options{})
		stop1, _ := f.runSink("s1", Options{})
		stopLoad := g.sqlLoad(1000)
		f.waitCaughtUpOrMore(0, 500)
		f.waitCaughtUpOrMore(1, 500)
		t.Logf("the writer made %d changes on the %s source", stopLoad(), e.SourceFlavor.Product())
		f.waitShardsMatchSource(3 * time.Minute)
		stopAll(t, stop0, stop1)
	})
}
