package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/shardmeta"
	"github.com/cleave-dev/cleave/sink"
)

const keysDDL = `id BIGINT NOT NULL, region VARCHAR(8) NOT NULL, user_id BIGINT UNSIGNED NOT NULL,
	name VARCHAR(64), PRIMARY KEY (id, region)`

// msgKey is the Kafka message key capture gives the row (id, region) of table keyed.
func msgKey(t *testing.T, id int, region string) []byte {
	t.Helper()
	k, err := event.MarshalKey([]any{json.Number(strconv.Itoa(id)), region})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCheckKeysReportsExactlyTheDriftOfTheRowsNamed: of the rows named by their message
// keys, one changed on its shard and one missing there are drift, rows equal on both
// sides are not, and rows not named are not looked at.
func TestCheckKeysReportsExactlyTheDriftOfTheRowsNamed(t *testing.T) {
	testenv.EachFlavorDatabases(t, testCheckKeys)
}

func testCheckKeys(t *testing.T, env testenv.Env) {
	f := newFixture(t, env, fixtureTable{name: "keyed", ddl: keysDDL, strategy: "hash", shardKey: "user_id"})
	f.exec(f.source, `INSERT INTO %s SELECT seq, IF(seq %% 2 = 0, 'eu', 'us'), seq * 7919 %% 10007, CONCAT('name-', seq) FROM %s`,
		f.q("keyed"), f.seq(100))
	f.copyRouted("keyed", "user_id")
	owner := func(id int) int { return f.owner("keyed", route.UintValue(uint64(id*7919%10007)))[0] }
	region := func(id int) string { return map[bool]string{true: "eu", false: "us"}[id%2 == 0] }
	const changed, missing, unnamed = 3, 4, 5
	f.exec(f.shards[owner(changed)], "UPDATE %s SET name = 'damaged' WHERE id = %d", f.q("keyed"), changed)
	f.exec(f.shards[owner(missing)], "DELETE FROM %s WHERE id = %d", f.q("keyed"), missing)
	f.exec(f.shards[owner(unnamed)], "DELETE FROM %s WHERE id = %d", f.q("keyed"), unnamed)

	c := f.checker(Options{RecheckWait: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keys := [][]byte{msgKey(t, changed, region(changed)), msgKey(t, missing, region(missing))}
	for id := 10; id < 20; id++ {
		keys = append(keys, msgKey(t, id, region(id)))
	}
	keys = append(keys, msgKey(t, changed, region(changed)), []byte(`[ 10, "eu" ]`)) // the same rows again
	keys = append(keys, msgKey(t, 1000, "eu"))                                       // deleted everywhere
	tr, err := c.CheckKeys(ctx, f.full("keyed"), keys)
	if err != nil {
		t.Fatal(err)
	}
	got := describe(f, &Report{Tables: []*TableReport{tr}})
	want := []string{
		fmt.Sprintf(`changed s%d [%d,"%s"] name`, owner(changed), changed, region(changed)),
		fmt.Sprintf(`missing s%d [%d,"%s"] `, owner(missing), missing, region(missing)),
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("CheckKeys reported %q, want exactly %q", got, want)
	}
	if len(tr.InFlight) != 0 {
		t.Errorf("rows in flight with no writes: %v", tr.InFlight)
	}
	if tr.RowsChecked != 12 {
		t.Errorf("RowsChecked = %d, want 12 (the distinct keys with a source row)", tr.RowsChecked)
	}
	var shardRows int64
	for i, s := range tr.Shards {
		shardRows += s.RowsChecked
		wantChanged, wantMissing := 0, 0
		if i == owner(changed) {
			wantChanged = 1
		}
		if i == owner(missing) {
			wantMissing = 1
		}
		if s.Drift[Changed] != wantChanged || s.Drift[Missing] != wantMissing {
			t.Errorf("shard %s counts %v, want %d changed and %d missing", s.Shard, s.Drift, wantChanged, wantMissing)
		}
	}
	if shardRows != 11 {
		t.Errorf("shards' RowsChecked add up to %d, want 11 (one named row missing)", shardRows)
	}

	// A second call reuses what the first loaded, and sees the repair of the row.
	f.exec(f.shards[owner(changed)], "UPDATE %s SET name = 'name-%d' WHERE id = %d", f.q("keyed"), changed, changed)
	tr, err = c.CheckKeys(ctx, f.full("keyed"), keys[:1])
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Drift) != 0 || tr.RowsChecked != 1 {
		t.Errorf("after the repair: drift %v, %d rows checked", describe(f, &Report{Tables: []*TableReport{tr}}), tr.RowsChecked)
	}

	for _, bad := range []string{`["x","eu"]`, `[1]`, `not json`} {
		_, err := c.CheckKeys(ctx, f.full("keyed"), [][]byte{[]byte(bad)})
		if err == nil || !strings.Contains(err.Error(), f.full("keyed")) || !strings.Contains(err.Error(), bad) {
			t.Errorf("key %s: error %v, want one naming the table and the key", bad, err)
		}
	}
	if _, err := c.CheckKeys(ctx, f.full("nope"), keys); err == nil {
		t.Error("CheckKeys of a table not configured succeeded")
	}
}

// TestCheckKeysFindsRowsByTheKeysCaptureWritesForEveryKeyKind: the message key of a row
// (as encodeKey gives it, the change event's encoding) decodes to the very key values the
// checker reads, for primary keys of every kind that a key can be, so CheckKeys finds
// every row: each row changed on its shard is reported.
func TestCheckKeysFindsRowsByTheKeysCaptureWritesForEveryKeyKind(t *testing.T) {
	testenv.EachFlavorDatabases(t, testCheckKeysKinds)
}

func testCheckKeysKinds(t *testing.T, env testenv.Env) {
	const ddl = `i INT NOT NULL, u BIGINT UNSIGNED NOT NULL, y YEAR NOT NULL, e ENUM('b','a') NOT NULL,
		st SET('x','y','z') NOT NULL, bt BIT(10) NOT NULL, d DECIMAL(10,3) NOT NULL, dt DATETIME(3) NOT NULL,
		tm TIME(2) NOT NULL, db DOUBLE NOT NULL, fl FLOAT NOT NULL, s VARCHAR(16) CHARACTER SET latin1 NOT NULL,
		bin VARBINARY(8) NOT NULL, name VARCHAR(16),
		PRIMARY KEY (i, u, y, e, st, bt, d, dt, tm, db, fl, s, bin)`
	f := newFixture(t, env, fixtureTable{name: "kinds", ddl: ddl, strategy: "hash", shardKey: "u"})
	f.exec(f.source, `INSERT INTO %s VALUES
		(-1, 18446744073709551615, 1901, 'a', 'x,z', b'1000000001', -12.300, '2024-02-29 23:59:59.123', '-838:59:59.00', 1e300, 0.1, 'café', X'00ff', 'n1'),
		(2, 0, 2155, 'b', '', b'0', 0.000, '1000-01-01 00:00:00.000', '00:00:00.50', -2.5e-300, 3.4e38, 'a b ', X'', 'n2'),
		(3, 7, 0, 'a', 'y', b'1', 99.999, '2038-01-19 03:14:07.999', '12:34:56.78', 123456789012345680000, 1e-10, '', X'27225c', 'n3')`,
		f.q("kinds"))
	f.copyRouted("kinds", "u")
	for _, s := range f.shards {
		f.exec(s, "UPDATE %s SET name = 'damaged'", f.q("kinds"))
	}
	c := f.checker(Options{RecheckWait: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ti, err := c.keyedTable(ctx, f.full("kinds"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.readRows(ctx, c.source, ti, "1 = ?", []any{1}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	// The first row's message key as capture writes it (event.Encode of the binlog's values).
	const first = `[-1,18446744073709551615,1901,"a","x,z",513,"-12.300","2024-02-29 23:59:59.123","-838:59:59.00",1e+300,0.1,"café","AP8="]`
	var keys [][]byte
	for mk, ri := range rows {
		msg, err := event.MarshalKey(ti.encodeKey(ri.key))
		if err != nil {
			t.Fatal(err)
		}
		if string(ri.key[0]) == "-1" && string(msg) != first {
			t.Errorf("message key of the first row is %s, want %s", msg, first)
		}
		back, err := ti.decodeKey(msg)
		if err != nil {
			t.Fatalf("key %s: %v", msg, err)
		}
		if mapKey(back) != mk {
			t.Errorf("key %s decodes to %q, the checker reads %q", msg, back, ri.key)
		}
		keys = append(keys, msg)
	}
	tr, err := c.CheckKeys(ctx, f.full("kinds"), keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Drift) != 3 || tr.RowsChecked != 3 {
		t.Errorf("CheckKeys of 3 rows changed on their shards: %d rows checked, drift %v", tr.RowsChecked, describe(f, &Report{Tables: []*TableReport{tr}}))
	}
	for _, d := range tr.Drift {
		if d.Kind != Changed || strings.Join(d.Columns, ",") != "name" {
			t.Errorf("drift %+v, want name changed", d)
		}
	}
}

// TestWaitAppliedWaitsForEveryShardsSink: a shard whose sink has not applied the table
// past a version (here: has never run) keeps WaitApplied false and is named, where the
// re-check's own wait passes it by; once its sink runs, WaitApplied is true.
func TestWaitAppliedWaitsForEveryShardsSink(t *testing.T) {
	testenv.EachFlavor(t, testWaitApplied)
}

func testWaitApplied(t *testing.T, env testenv.Env) {
	f := newFixtureWith(t, env, func(c *config.Config) {
		c.Capture.HeartbeatInterval = 200 * time.Millisecond
		c.Capture.CheckpointInterval = 200 * time.Millisecond
		c.Sink.BatchWait = 20 * time.Millisecond
	}, fixtureTable{name: "keyed", ddl: keysDDL, strategy: "hash", shardKey: "user_id"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, s := range f.shards {
		if err := shardmeta.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	pipelineErr := make(chan error, 3)
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				pipelineErr <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	startSink := func(shard string) {
		sk, err := sink.New(f.cfg, shard, sink.Options{})
		if err != nil {
			t.Fatal(err)
		}
		start("sink "+shard, sk.Run)
	}
	cp, err := capture.New(f.cfg, capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start("capture", cp.Run)
	startSink("s0")

	f.exec(f.source, "INSERT INTO %s VALUES (1, 'eu', 1, 'one')", f.q("keyed"))
	c := f.checker(Options{})
	if _, err := c.keyedTable(ctx, f.full("keyed")); err != nil {
		t.Fatal(err)
	}
	v, ok, err := c.sourceVersion(ctx)
	if err != nil || !ok {
		t.Fatalf("source version: %v (binlog %v)", err, ok)
	}
	tables := []string{f.full("keyed")}

	// s0's sink catches up; s1 has none: the re-check's wait passes s1 by, WaitApplied not.
	ti := c.keyed.tables[f.full("keyed")]
	if ok, note, err := c.waitSinks(ctx, ti, v, 90*time.Second); err != nil || !ok {
		t.Fatalf("waitSinks with s0's sink running: %v %s", err, note)
	}
	ok, behind, err := c.WaitApplied(ctx, tables, v, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ok || !strings.Contains(behind, "shard s1") || !strings.Contains(behind, f.full("keyed")) {
		t.Errorf("WaitApplied without s1's sink = %v, %q; want false naming shard s1 and the table", ok, behind)
	}
	select {
	case err := <-pipelineErr:
		t.Fatal(err)
	default:
	}

	startSink("s1")
	ok, behind, err = c.WaitApplied(ctx, tables, v, 90*time.Second)
	if err != nil || !ok {
		t.Fatalf("WaitApplied with both sinks running = %v, %q, %v; want true", ok, behind, err)
	}
	// A version no change has reached yet is not applied anywhere.
	ok, behind, err = c.WaitApplied(ctx, tables, v+1<<40, 200*time.Millisecond)
	if err != nil || ok || !strings.Contains(behind, "shard s0") {
		t.Errorf("WaitApplied of a future version = %v, %q, %v; want false naming shard s0", ok, behind, err)
	}
	if _, _, err := c.WaitApplied(ctx, []string{f.full("nope")}, v, time.Second); err == nil {
		t.Error("WaitApplied of a table not configured succeeded")
	}
}
