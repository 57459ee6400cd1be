package schemahist

import (
	"testing"

	"github.com/cleave-dev/cleave/schema"
)

func table(cols ...string) *schema.Table {
	t := &schema.Table{DB: "d", Name: "t"}
	for _, c := range cols {
		t.Columns = append(t.Columns, schema.Column{Name: c})
	}
	return t
}

func TestAtReturnsTheDefinitionValidAtAPosition(t *testing.T) {
	h := New(10)
	v1, v2 := table("id", "a"), table("id", "a", "b")
	if _, changed, err := h.Observe("d.t", 100, "v1", v1); err != nil || changed {
		t.Fatalf("first definition: changed %v, %v", changed, err)
	}
	if _, changed, _ := h.Observe("d.t", 150, "v1", v1); changed {
		t.Fatal("the same definition again counts as a change")
	}
	h.Change("d.t", 200, "ALTER TABLE d.t ADD b INT")
	if _, ok := h.At("d.t", 250); ok {
		t.Fatal("a definition is known between a schema change and the first table map after it")
	}
	prev, changed, err := h.Observe("d.t", 300, "v2", v2)
	if err != nil || !changed || prev.Fingerprint != "v1" {
		t.Fatalf("after the change: prev %+v changed %v err %v", prev, changed, err)
	}
	for _, tc := range []struct {
		pos  Coord
		want string
		ok   bool
	}{
		{99, "", false},
		{100, "v1", true},
		{199, "v1", true},
		{200, "v2", true},
		{10_000, "v2", true},
	} {
		e, ok := h.At("d.t", tc.pos)
		if ok != tc.ok || e.Fingerprint != tc.want {
			t.Errorf("At(%d) = %q %v, want %q %v", tc.pos, e.Fingerprint, ok, tc.want, tc.ok)
		}
	}
	if e, _ := h.At("d.t", 200); e.DDL == "" {
		t.Error("the definition after a schema change does not name it")
	}
	if _, _, err := h.Observe("d.t", 50, "v0", v1); err == nil {
		t.Error("a position before the latest definition is accepted")
	}
}

func TestOnlyTheNewestDefinitionsAreKept(t *testing.T) {
	h := New(3)
	for i := 0; i < 10; i++ {
		if _, _, err := h.Observe("d.t", Coord(i*10), string(rune('a'+i)), table("c")); err != nil {
			t.Fatal(err)
		}
	}
	entries := h.Entries("d.t")
	if len(entries) != 3 || entries[0].Fingerprint != "h" || entries[2].Fingerprint != "j" {
		t.Fatalf("kept %+v", entries)
	}
}

func TestSchemaChangesInARowReportTheLastDefinitionBeforeThem(t *testing.T) {
	h := New(10)
	v1, v2 := table("id", "a"), table("id", "b")
	h.Observe("d.t", 100, "v1", v1)
	// Two changes before any row: a drop and a create, or two ALTER TABLEs.
	h.Change("d.t", 200, "DROP TABLE d.t")
	h.Change("d.t", 300, "CREATE TABLE d.t (id INT PRIMARY KEY, b INT)")
	prev, changed, err := h.Observe("d.t", 400, "v2", v2)
	if err != nil || !changed || prev == nil || prev.Table != v1 {
		t.Fatalf("after two changes: prev %+v changed %v err %v, want the definition before them", prev, changed, err)
	}
	if e, ok := h.At("d.t", 250); ok {
		t.Fatalf("At(250), between the two changes = %+v, want none", e)
	}
	if e, ok := h.At("d.t", 300); !ok || e.Fingerprint != "v2" {
		t.Fatalf("At(300) = %+v %v, want v2", e, ok)
	}
	h.Change("d.t", 500, "ALTER TABLE d.t ADD c INT")
	h.Change("d.t", 600, "ALTER TABLE d.t DROP c")
	if prev, changed, err := h.Observe("d.t", 700, "v2", v2); err != nil || changed || prev != nil {
		t.Fatalf("two changes back to the same definition: prev %+v changed %v err %v, want no change", prev, changed, err)
	}
}
