package route

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strings"
)

// EvenKeyspace splits the keyspace [0, 2^64) into n contiguous ranges of equal size (they
// differ by at most one hash), in order. Range i is [floor(i*2^64/n), floor((i+1)*2^64/n));
// the last one's End is 0, meaning 2^64. It returns nil when n < 1.
//
// The boundaries are exact fractions of 2^64, not Vitess's rounded hex prefixes: for three
// shards they are 0x5555555555555555 and 0xaaaaaaaaaaaaaaaa, not 0x55 and 0xaa. An operator
// who wants round boundaries writes them as key ranges. These values are part of the routing
// contract and must never change.
func EvenKeyspace(n int) [][2]uint64 {
	if n < 1 {
		return nil
	}
	out := make([][2]uint64, n)
	for i := range n {
		out[i] = [2]uint64{keyspaceCut(uint64(i), uint64(n)), keyspaceCut(uint64(i+1), uint64(n))}
	}
	out[n-1][1] = 0
	return out
}

// keyspaceCut is floor(i * 2^64 / n) for 0 <= i <= n, with n*2^64/n wrapping to 0 (the top).
func keyspaceCut(i, n uint64) uint64 {
	if i >= n {
		return 0
	}
	q, _ := bits.Div64(i, 0, n) // (i<<64 + 0) / n; i < n, so the quotient fits
	return q
}

// ParseKeyRange parses a Vitess-style key range: "-80", "80-", "40-80", "-" (the whole
// keyspace). The hex digits on each side are the leading bytes of the 64-bit hash, big
// endian, so "40" is 0x4000000000000000; an empty side is the bottom (0) or the top (end 0,
// meaning 2^64). Each side has an even number of hex digits, at most 16.
func ParseKeyRange(s string) (start, end uint64, err error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("key range %q: want START-END in hex, like \"-80\", \"40-80\", \"80-\" or \"-\" for the whole keyspace", s)
	}
	if start, err = parseKeyBound(lo); err != nil {
		return 0, 0, fmt.Errorf("key range %q: start: %w", s, err)
	}
	if end, err = parseKeyBound(hi); err != nil {
		return 0, 0, fmt.Errorf("key range %q: end: %w", s, err)
	}
	if hi != "" && end == 0 {
		return 0, 0, fmt.Errorf("key range %q is empty: an end of zero holds no hash; leave the end out for the top of the keyspace", s)
	}
	if end != 0 && start >= end {
		return 0, 0, fmt.Errorf("key range %q is empty or reversed: the start must be below the end", s)
	}
	return start, end, nil
}

func parseKeyBound(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) > 16 {
		return 0, fmt.Errorf("%q has %d hex digits; the keyspace is 64 bits, at most 16 digits", s, len(s))
	}
	if len(s)%2 != 0 {
		return 0, fmt.Errorf("%q has an odd number of hex digits; write whole bytes (\"80\", not \"8\")", s)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not hex", s)
	}
	var v uint64
	for i, c := range b {
		v |= uint64(c) << (56 - 8*i)
	}
	return v, nil
}

// FormatKeyRange renders [start, end) the way ParseKeyRange reads it, with trailing zero
// bytes left out: (0x80<<56, 0) is "80-", (0, 0) is "-".
func FormatKeyRange(start, end uint64) string {
	return formatKeyBound(start) + "-" + formatKeyBound(end)
}

func formatKeyBound(v uint64) string {
	if v == 0 {
		return ""
	}
	s := fmt.Sprintf("%016x", v)
	for strings.HasSuffix(s, "00") {
		s = s[:len(s)-2]
	}
	return s
}

// CheckKeyspace reports whether the shards' keyspaces partition [0, 2^64) exactly, the rule
// New holds them to: each [Start, End) is non-empty, and together they leave no hash without
// a shard and give none to two. Each problem is a *FieldError on "shards[i].keyspace" of the
// shard at fault (the later one in keyspace order for a gap or an overlap), joined; nil when
// there is none.
func CheckKeyspace(shards []Shard) error {
	_, errs := keyspaceOrder(shards)
	return errors.Join(errs...)
}

// keyspaceOrder returns the shard indexes sorted by keyspace start, and the problems of the
// keyspace (CheckKeyspace).
func keyspaceOrder(shards []Shard) ([]int, []error) {
	if len(shards) == 0 {
		return nil, []error{errors.New("route: no shards")}
	}
	var errs []error
	fail := func(i int, format string, args ...any) {
		errs = append(errs, &FieldError{Field: fmt.Sprintf("shards[%d].keyspace", i), Msg: fmt.Sprintf(format, args...)})
	}
	desc := func(i int) string {
		return fmt.Sprintf("shard %q (%s)", shards[i].Name, FormatKeyRange(shards[i].Start, shards[i].End))
	}
	order := make([]int, len(shards))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return shards[order[a]].Start < shards[order[b]].Start })
	for _, i := range order {
		if s := shards[i]; s.End != 0 && s.End <= s.Start {
			fail(i, "%s is empty or reversed (start %#016x, end %#016x); End must be above Start, or 0 for the top", desc(i), s.Start, s.End)
		}
	}
	if len(errs) > 0 {
		return order, errs
	}
	if first := order[0]; shards[first].Start != 0 {
		fail(first, "no shard owns %s: the lowest, %s, must start at the bottom of the keyspace (a range like \"-80\")", FormatKeyRange(0, shards[first].Start), desc(first))
	}
	for k := 1; k < len(order); k++ {
		prev, cur := shards[order[k-1]], shards[order[k]]
		switch {
		case prev.End == 0 || prev.End > cur.Start:
			fail(order[k], "%s overlaps %s; each hash must belong to exactly one shard", desc(order[k]), desc(order[k-1]))
		case prev.End < cur.Start:
			fail(order[k], "no shard owns %s, between %s and %s; the ranges must meet", FormatKeyRange(prev.End, cur.Start), desc(order[k-1]), desc(order[k]))
		}
	}
	if last := order[len(order)-1]; shards[last].End != 0 {
		fail(last, "no shard owns %s: the highest, %s, must reach the top of the keyspace (a range like \"80-\")", FormatKeyRange(shards[last].End, 0), desc(last))
	}
	return order, errs
}
