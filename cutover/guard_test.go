package cutover

import (
	"strings"
	"testing"
)

func TestNamesStayWithinTheServersLimits(t *testing.T) {
	long := strings.Repeat("t", 64)
	for _, table := range []string{"orders", long} {
		for _, g := range guardOps {
			if n := triggerName(table, g.suffix); len(n) > 64 {
				t.Errorf("trigger name %q is %d characters, over 64", n, len(n))
			}
		}
		if a, b := triggerName(table, "bi"), triggerName(table, "bu"); a == b {
			t.Errorf("insert and update triggers of %s share the name %q", table, a)
		}
	}
	if triggerName(long, "bi") == triggerName(long[:63]+"u", "bi") {
		t.Error("two long table names hash to one trigger name")
	}
	if n := lockName(strings.Repeat("p", 200)); len(n) > 64 {
		t.Errorf("lock name %q is over 64 characters", n)
	}
	if lockName("a") == lockName("b") {
		t.Error("two prefixes share a lock")
	}
	if msg := guardMessage(long, long, true); len(msg) > 128 {
		t.Errorf("guard message is %d characters, over SIGNAL's 128", len(msg))
	}
}

func TestGuardSQLQuotesNamesAndChecksTheGuardRow(t *testing.T) {
	stmts := createGuardSQL("sh`op", "it's", false)
	if len(stmts) != 3 {
		t.Fatalf("%d statements, want one trigger per write kind", len(stmts))
	}
	for _, s := range stmts {
		for _, want := range []string{"ON `sh``op`.`it's`", "db = 'sh`op' AND tbl = 'it''s'", "@cleave_apply IS NULL", "SIGNAL SQLSTATE '45000'"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s\nlacks %q", s, want)
			}
		}
	}
	for _, s := range dropGuardSQL("shop", "orders") {
		if !strings.HasPrefix(s, "DROP TRIGGER IF EXISTS `shop`.`_cleave_guard_orders_") {
			t.Errorf("drop statement %q", s)
		}
	}
}

func TestStatesKnowThePointOfNoReturn(t *testing.T) {
	for _, s := range []State{StateGate, StateVerify, StateFence, StateDrain, StateFencedVerify, StateAborted} {
		if s.Switched() {
			t.Errorf("%s counts as switched", s)
		}
	}
	for _, s := range []State{StateSwitched, StateDone} {
		if !s.Switched() {
			t.Errorf("%s does not count as switched", s)
		}
	}
	if !StateDone.Final() || !StateAborted.Final() || StateSwitched.Final() {
		t.Error("only done and aborted are final")
	}
}
