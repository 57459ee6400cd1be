// Package schemahist keeps, for each table capture streams, the sequence of definitions
// its rows had along the binlog: which columns a row written at a given position has. A
// definition is recorded from the position where the binlog first shows it (a table map,
// or a schema change capture applied), so that a lookup by position returns the definition
// valid there and never the table's current one. It holds definitions only, no rows, and
// never reads a server.
package schemahist

import (
	"fmt"
	"sort"
	"sync"

	"github.com/cleave-dev/cleave/schema"
)

// Coord is a binlog position as one number that orders positions: the file index in the
// high bits and the offset in the low ones (event.Version's layout, row 0).
type Coord uint64

// Entry is one definition of a table and the position from which it is valid.
type Entry struct {
	From Coord
	// Fingerprint identifies the definition: equal fingerprints, equal decoding.
	Fingerprint string
	Table       *schema.Table
	// DDL is the statement that ended the previous definition, when capture saw one.
	DDL string
}

// History holds the definitions of each table, oldest first. It is safe for concurrent
// use; capture's reader writes it and status readers look.
type History struct {
	mu sync.RWMutex
	// keep bounds the entries kept per table: older ones are dropped first.
	keep   int
	tables map[string][]Entry
}

// New returns an empty history that keeps at most keep definitions per table (at least 2).
func New(keep int) *History {
	return &History{keep: max(keep, 2), tables: map[string][]Entry{}}
}

// Observe records that table name has definition t (identified by fingerprint) at from.
// It returns the previous definition when this one differs from it, so that the caller
// can report the change; an unchanged definition records nothing. Positions must not go
// backwards for one table: a position before the latest entry is an error, because it
// would mean the stream was read out of order.
func (h *History) Observe(name string, from Coord, fingerprint string, t *schema.Table) (prev *Entry, changed bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	entries := h.tables[name]
	if n := len(entries); n > 0 {
		last := &entries[n-1]
		if from < last.From {
			return nil, false, fmt.Errorf("schema history of %s: position %d before the latest definition at %d", name, from, last.From)
		}
		if last.Fingerprint == fingerprint {
			return nil, false, nil
		}
		if last.Fingerprint == "" {
			// A schema change was noted and this is the first definition after it. The
			// definition before is the newest entry that has one: several changes may
			// come before the next row (a DROP and a CREATE, two ALTER TABLEs).
			last.Fingerprint, last.Table = fingerprint, t
			for k := n - 2; k >= 0; k-- {
				if p := entries[k]; p.Table != nil {
					if p.Fingerprint == fingerprint {
						return nil, false, nil
					}
					return &p, true, nil
				}
			}
			return nil, false, nil
		}
		p := *last
		prev = &p
	}
	entries = append(entries, Entry{From: from, Fingerprint: fingerprint, Table: t})
	if len(entries) > h.keep {
		entries = append(entries[:0:0], entries[len(entries)-h.keep:]...)
	}
	h.tables[name] = entries
	return prev, prev != nil, nil
}

// Change records that a schema change (statement ddl) on table name takes effect at at:
// rows after it are described by the next definition observed, whatever it is.
func (h *History) Change(name string, at Coord, ddl string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	entries := append(h.tables[name], Entry{From: at, DDL: ddl})
	if len(entries) > h.keep {
		entries = append(entries[:0:0], entries[len(entries)-h.keep:]...)
	}
	h.tables[name] = entries
}

// At returns the definition of table name valid at position pos: the latest entry that
// starts at or before pos. ok is false when the history holds none (before its first
// entry, or right after a schema change whose new definition has not been seen yet).
func (h *History) At(name string, pos Coord) (Entry, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	entries := h.tables[name]
	i := sort.Search(len(entries), func(i int) bool { return entries[i].From > pos })
	if i == 0 {
		return Entry{}, false
	}
	e := entries[i-1]
	return e, e.Table != nil
}

// Entries returns a copy of the definitions recorded for table name, oldest first.
func (h *History) Entries(name string) []Entry {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]Entry(nil), h.tables[name]...)
}
