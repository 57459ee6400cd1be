package main

import (
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/internal/testenv"
)

func TestPrepareCommandIsIdempotentAndNamesADifference(t *testing.T) {
	testenv.EachFlavor(t, testPrepareCommandIsIdempotentAndNamesADifference)
}

func testPrepareCommandIsIdempotentAndNamesADifference(t *testing.T, env testenv.Env) {
	path, db := demoConfig(t, env, nil)

	first, stderr, code := runCleave(t, "prepare", "--config", path)
	if code != exitOK {
		t.Fatalf("first prepare: exit %d\n%s%s", code, first, stderr)
	}
	for _, want := range []string{
		"shard0 database " + db + ": created",
		"shard1 table " + db + ".users: created",
		"shard1 table " + db + ".orders: created; foreign key ",
		"kafka topic ",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first prepare lacks %q:\n%s", want, first)
		}
	}

	second, stderr, code := runCleave(t, "prepare", "--config", path)
	if code != exitOK {
		t.Fatalf("second prepare: exit %d\n%s%s", code, second, stderr)
	}
	for _, l := range strings.Split(strings.TrimRight(second, "\n"), "\n") {
		if !strings.Contains(l, ": already up to date") {
			t.Errorf("second prepare changed something: %s", l)
		}
	}

	shard1 := testenv.OpenDB(t, env.Shard1DSN)
	if _, err := shard1.Exec("ALTER TABLE `" + db + "`.orders MODIFY total DECIMAL(10,2) NOT NULL"); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCleave(t, "prepare", "--config", path)
	if code != exitCannot {
		t.Fatalf("prepare over a differing table: exit %d, want 2\n%s%s", code, out, stderr)
	}
	if want := "shard1: " + db + ".orders column total: source decimal(12,2), shard decimal(10,2)"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}
