package route

import (
	"fmt"
	"math/big"
	"strings"
	"testing"
)

func TestParseKeyRange(t *testing.T) {
	cases := []struct {
		in         string
		start, end uint64
	}{
		{"-", 0, 0},
		{"-80", 0, 0x8000000000000000},
		{"80-", 0x8000000000000000, 0},
		{"40-80", 0x4000000000000000, 0x8000000000000000},
		{"40-C0", 0x4000000000000000, 0xc000000000000000},
		{"00-40", 0, 0x4000000000000000},
		{"0102-0103", 0x0102000000000000, 0x0103000000000000},
		{"-ffffffffffffffff", 0, 0xffffffffffffffff},
		{"ffffffffffffffff-", 0xffffffffffffffff, 0},
		{"5555555555555555-aaaaaaaaaaaaaaaa", 0x5555555555555555, 0xaaaaaaaaaaaaaaaa},
		{" 80- ", 0x8000000000000000, 0},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q is [%#x,%#x)", tc.in, tc.start, tc.end), func(t *testing.T) {
			s, e, err := ParseKeyRange(tc.in)
			if err != nil || s != tc.start || e != tc.end {
				t.Fatalf("ParseKeyRange(%q) = %#x, %#x, %v", tc.in, s, e, err)
			}
		})
	}
	bad := []struct{ in, want string }{
		{"", "want START-END in hex"},
		{"80", "want START-END in hex"},
		{"8-", "odd number of hex digits"},
		{"-8", "odd number of hex digits"},
		{"zz-", "is not hex"},
		{"-00", "an end of zero holds no hash"},
		{"80-40", "empty or reversed"},
		{"40-40", "empty or reversed"},
		{"-010000000000000000", "at most 16 digits"},
		{"40-80-c0", "end: \"80-c0\""},
	}
	for _, tc := range bad {
		t.Run(fmt.Sprintf("%q is refused", tc.in), func(t *testing.T) {
			_, _, err := ParseKeyRange(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
				t.Fatalf("err = %v, want it to name %q and say %q", err, tc.in, tc.want)
			}
		})
	}
}

func TestFormatKeyRangeRoundTrips(t *testing.T) {
	for _, in := range []string{"-", "-80", "80-", "40-80", "0102-0103", "5555555555555555-aaaaaaaaaaaaaaaa", "00000001-"} {
		s, e, err := ParseKeyRange(in)
		if err != nil {
			t.Fatal(err)
		}
		out := FormatKeyRange(s, e)
		s2, e2, err := ParseKeyRange(out)
		if err != nil || s2 != s || e2 != e {
			t.Errorf("%q -> %q -> %#x,%#x,%v", in, out, s2, e2, err)
		}
	}
	if got := FormatKeyRange(0x4000000000000000, 0x8000000000000000); got != "40-80" {
		t.Errorf("FormatKeyRange(40,80) = %q", got)
	}
}

func TestEvenKeyspace(t *testing.T) {
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	for _, n := range []int{1, 2, 3, 4, 5, 7, 16, 100} {
		t.Run(fmt.Sprintf("%d shards cover the keyspace exactly, in order, evenly", n), func(t *testing.T) {
			ks := EvenKeyspace(n)
			if len(ks) != n {
				t.Fatalf("%d ranges", len(ks))
			}
			var shards []Shard
			for i, r := range ks {
				shards = append(shards, Shard{Name: fmt.Sprint(i), Start: r[0], End: r[1]})
				// Start is floor(i*2^64/n).
				want := new(big.Int).Div(new(big.Int).Mul(big.NewInt(int64(i)), two64), big.NewInt(int64(n)))
				if want.Uint64() != r[0] {
					t.Errorf("range %d starts at %#x, want %#x", i, r[0], want)
				}
				if i > 0 && ks[i-1][1] != r[0] {
					t.Errorf("range %d starts at %#x but range %d ends at %#x", i, r[0], i-1, ks[i-1][1])
				}
				size := new(big.Int).Sub(two64, new(big.Int).SetUint64(r[0]))
				if r[1] != 0 {
					size.SetUint64(r[1] - r[0])
				}
				lo := new(big.Int).Div(two64, big.NewInt(int64(n)))
				if d := new(big.Int).Sub(size, lo); d.Sign() < 0 || d.Cmp(big.NewInt(1)) > 0 {
					t.Errorf("range %d has size %v, want %v or one more", i, size, lo)
				}
			}
			if ks[0][0] != 0 || ks[n-1][1] != 0 {
				t.Errorf("first start %#x, last end %#x; want 0 and 0 (the top)", ks[0][0], ks[n-1][1])
			}
			if _, err := New(shards, nil); err != nil {
				t.Errorf("New refuses the even split: %v", err)
			}
		})
	}
	t.Run("boundaries of common splits", func(t *testing.T) {
		want := map[int][]string{
			2:  {"-80", "80-"},
			3:  {"-5555555555555555", "5555555555555555-aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa-"},
			4:  {"-40", "40-80", "80-c0", "c0-"},
			16: {"-10", "10-20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80-90", "90-a0", "a0-b0", "b0-c0", "c0-d0", "d0-e0", "e0-f0", "f0-"},
		}
		for n, w := range want {
			for i, r := range EvenKeyspace(n) {
				if got := FormatKeyRange(r[0], r[1]); got != w[i] {
					t.Errorf("EvenKeyspace(%d)[%d] = %s, want %s", n, i, got, w[i])
				}
			}
		}
	})
	t.Run("no shards is no keyspace", func(t *testing.T) {
		if EvenKeyspace(0) != nil || EvenKeyspace(-1) != nil {
			t.Error("want nil")
		}
	})
}
