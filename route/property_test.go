package route

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// randomValue draws shard keys of every shape routing meets: NULL, empty, signed and
// unsigned integers at their limits, integers beyond 64 bits, binary bytes, UTF-8 with
// emoji.
func randomValue(rng *rand.Rand) Value {
	switch rng.IntN(12) {
	case 0:
		return NullValue()
	case 1:
		return StringValue("")
	case 2:
		return IntValue(rng.Int64() - math.MaxInt64/2)
	case 3:
		return IntValue(-rng.Int64N(1000))
	case 4:
		return UintValue(rng.Uint64())
	case 5:
		return UintValue(math.MaxUint64 - rng.Uint64N(3))
	case 6:
		return IntValue(math.MinInt64 + rng.Int64N(3))
	case 7:
		// An integer wider than 64 bits, possibly negative, as DECIMAL(65,0) renders it.
		s := strconv.FormatUint(rng.Uint64()|1, 10) + strconv.FormatUint(rng.Uint64(), 10)
		if rng.IntN(2) == 0 {
			s = "-" + s
		}
		return StringValue(s)
	case 8:
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return BytesValue(b)
	case 9:
		runes := []rune("aZ09 éßжд中文🙂🚀👩‍💻\u0000\t'\"\\")
		r := make([]rune, rng.IntN(12))
		for i := range r {
			r[i] = runes[rng.IntN(len(runes))]
		}
		return StringValue(string(r))
	case 10:
		return StringValue(fmt.Sprintf("2024-%02d-%02d %02d:%02d:%02d.%06d", 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000000)))
	default:
		return IntValue(rng.Int64N(200) - 100)
	}
}

// randomShards cuts the keyspace at random distinct points and lists the shards in random
// order, so that index order and keyspace order differ.
func randomShards(rng *rand.Rand) []Shard {
	n := 1 + rng.IntN(20)
	cuts := map[uint64]bool{}
	for len(cuts) < n-1 {
		c := rng.Uint64()
		if rng.IntN(4) == 0 {
			c = uint64(rng.IntN(256)) << 56 // Vitess-like round cuts
		}
		if c != 0 {
			cuts[c] = true
		}
	}
	points := []uint64{0}
	for c := range cuts {
		points = append(points, c)
	}
	slices.Sort(points)
	shards := make([]Shard, n)
	for i := range n {
		end := uint64(0)
		if i+1 < n {
			end = points[i+1]
		}
		shards[i] = Shard{Name: fmt.Sprintf("k%02d", i), Start: points[i], End: end}
	}
	rng.Shuffle(n, func(i, j int) { shards[i], shards[j] = shards[j], shards[i] })
	return shards
}

func TestPropertyHashAndBroadcast(t *testing.T) {
	rng := rand.New(rand.NewPCG(20240601, 7))
	for round := range 200 {
		shards := randomShards(rng)
		tables := map[string]TableSpec{
			"h": {Strategy: Hash},
			"b": {Strategy: Broadcast},
			"p": {Strategy: Pin, Shard: shards[rng.IntN(len(shards))].Name},
		}
		r := mustNew(t, shards, tables)
		again := mustNew(t, slices.Clone(shards), tables)
		for range 200 {
			v := randomValue(rng)
			got, err := r.Route("h", v)
			if err != nil {
				t.Fatalf("round %d: Route(%s): %v", round, v, err)
			}
			if len(got) != 1 || got[0] < 0 || got[0] >= len(shards) {
				t.Fatalf("round %d: Route(%s) = %v, want exactly one shard of %d", round, v, got, len(shards))
			}
			h := uint64(0)
			if !v.Null {
				h = HashKey(v.Bytes)
			}
			// Exactly one shard contains the hash, and it is the one chosen.
			var owners []int
			for i, s := range shards {
				if s.Contains(h) {
					owners = append(owners, i)
				}
			}
			if !slices.Equal(owners, got) {
				t.Fatalf("round %d: %s hash %#x: chosen %v, owners %v in %v", round, v, h, got, owners, shards)
			}
			// Deterministic: the same router and a router built from the same input agree.
			if g2, _ := r.Route("h", v); !slices.Equal(g2, got) {
				t.Fatalf("%s routed to %v then %v", v, got, g2)
			}
			if g3, _ := again.Route("h", v); !slices.Equal(g3, got) {
				t.Fatalf("%s routed to %v by one router and %v by another", v, got, g3)
			}
			all, err := r.Route("b", v)
			if err != nil || len(all) != len(shards) {
				t.Fatalf("broadcast %s = %v, %v", v, all, err)
			}
			for i := range all {
				if all[i] != i {
					t.Fatalf("broadcast %s = %v, want every shard once in order", v, all)
				}
			}
			if p, err := r.Route("p", v); err != nil || len(p) != 1 || shards[p[0]].Name != tables["p"].Shard {
				t.Fatalf("pin %s = %v, %v", v, p, err)
			}
		}
	}
}

func TestPropertyRangeIntMatchesBigInt(t *testing.T) {
	rng := rand.New(rand.NewPCG(99, 1))
	shards := evenShards(4)
	for round := range 100 {
		// Random strictly increasing bounds drawn from the same distribution as the values.
		set := map[string]*big.Int{}
		for range 1 + rng.IntN(6) {
			v := randomIntValue(rng)
			b, _ := new(big.Int).SetString(string(v.Bytes), 10)
			set[b.String()] = b
		}
		var bounds []*big.Int
		for _, b := range set {
			bounds = append(bounds, b)
		}
		slices.SortFunc(bounds, func(a, b *big.Int) int { return a.Cmp(b) })
		var ranges []RangeBound
		for i, b := range bounds {
			ranges = append(ranges, RangeBound{Below: b.String(), Shard: shards[i%4].Name})
		}
		ranges = append(ranges, RangeBound{Shard: "s3"}) // New requires an unbounded last range
		r := mustNew(t, shards, map[string]TableSpec{"t": {Strategy: Range, KeyKind: KeyInt, Ranges: ranges}})
		for range 300 {
			v := randomIntValue(rng)
			x, _ := new(big.Int).SetString(string(v.Bytes), 10)
			want := len(bounds)
			for i, b := range bounds {
				if x.Cmp(b) < 0 {
					want = i
					break
				}
			}
			got, err := r.Route("t", v)
			if err != nil || len(got) != 1 || got[0] != indexOf(shards, ranges[want].Shard) {
				t.Fatalf("round %d: %s with bounds %v: got %v, %v; want range %d (%s)", round, v, bounds, got, err, want, ranges[want].Shard)
			}
		}
	}
}

func TestPropertyRangeBytesMatchesBytesCompare(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	shards := evenShards(3)
	for round := range 100 {
		set := map[string]bool{}
		for range 1 + rng.IntN(5) {
			if v := randomValue(rng); !v.Null && len(v.Bytes) > 0 {
				set[string(v.Bytes)] = true
			}
		}
		if len(set) == 0 {
			continue
		}
		var bounds []string
		for b := range set {
			bounds = append(bounds, b)
		}
		slices.Sort(bounds)
		var ranges []RangeBound
		for i, b := range bounds {
			ranges = append(ranges, RangeBound{Below: b, Shard: shards[i%3].Name})
		}
		ranges = append(ranges, RangeBound{Shard: "s2"})
		r := mustNew(t, shards, map[string]TableSpec{"t": {Strategy: Range, Ranges: ranges}})
		for range 300 {
			v := randomValue(rng)
			if rng.IntN(5) == 0 { // exactly on a bound
				v = StringValue(bounds[rng.IntN(len(bounds))])
			}
			want := len(bounds)
			if v.Null {
				want = 0
			} else {
				for i, b := range bounds {
					if bytes.Compare(v.Bytes, []byte(b)) < 0 {
						want = i
						break
					}
				}
			}
			got, err := r.Route("t", v)
			if err != nil || len(got) != 1 || got[0] != indexOf(shards, ranges[want].Shard) {
				t.Fatalf("round %d: %s with bounds %q: got %v, %v; want range %d", round, v, bounds, got, err, want)
			}
		}
	}
}

func randomIntValue(rng *rand.Rand) Value {
	for {
		v := randomValue(rng)
		if v.Null {
			continue
		}
		if _, ok := new(big.Int).SetString(string(v.Bytes), 10); ok {
			return v
		}
	}
}

func indexOf(shards []Shard, name string) int {
	for i, sh := range shards {
		if sh.Name == name {
			return i
		}
	}
	return -1
}
