package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv"
)

func count(t *testing.T, env testenv.Env, q string) int64 {
	t.Helper()
	db := testenv.OpenDB(t, env.SourceDSN)
	var n int64
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSeedWritesWhatItReports(t *testing.T) {
	testenv.EachFlavorDatabases(t, testSeedWritesWhatItReports)
}

func testSeedWritesWhatItReports(t *testing.T, env testenv.Env) {
	dbName := testenv.NewDatabase(t, env.SourceDSN)
	db := testenv.OpenDB(t, env.SourceDSN)
	ctx := context.Background()
	if err := CreateSchema(ctx, db, dbName); err != nil {
		t.Fatal(err)
	}
	n, err := Seed(ctx, db, dbName, 300, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, tbl := range Tables {
		got += count(t, env, "SELECT COUNT(*) FROM `"+dbName+"`."+tbl)
	}
	if int64(n) != got || n != 300+600+1200+len(countries) {
		t.Fatalf("Seed reported %d rows, tables hold %d", n, got)
	}
	if orphans := count(t, env, "SELECT COUNT(*) FROM `"+dbName+"`.order_items i JOIN `"+dbName+"`.orders o ON o.id = i.order_id WHERE o.user_id <> i.user_id"); orphans != 0 {
		t.Fatalf("%d items not with their order's user", orphans)
	}
}

func TestLoadChangesRowsAndKeepsItemsWithTheirOrder(t *testing.T) {
	testenv.EachFlavorDatabases(t, testLoadChangesRowsAndKeepsItemsWithTheirOrder)
}

func testLoadChangesRowsAndKeepsItemsWithTheirOrder(t *testing.T, env testenv.Env) {
	dbName := testenv.NewDatabase(t, env.SourceDSN)
	db := testenv.OpenDB(t, env.SourceDSN)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := CreateSchema(ctx, db, dbName); err != nil {
		t.Fatal(err)
	}
	if _, err := Seed(ctx, db, dbName, 50, 2); err != nil {
		t.Fatal(err)
	}
	l := &Load{DB: db, Database: dbName, Workers: 3, Seed: 3}
	done := make(chan error, 1)
	go func() { _, err := l.Run(ctx); done <- err }()
	testenv.Eventually(t, time.Minute, "load to write 500 row changes of every kind", func() bool {
		s := l.Stats()
		return s.Rows() >= 500 && s.Inserts > 0 && s.Updates > 0 && s.Deletes > 0 && s.Moves > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if orphans := count(t, env, "SELECT COUNT(*) FROM `"+dbName+"`.order_items i LEFT JOIN `"+dbName+"`.orders o ON o.id = i.order_id WHERE o.id IS NULL OR o.user_id <> i.user_id"); orphans != 0 {
		t.Fatalf("%d items lost their order or its user", orphans)
	}
}
