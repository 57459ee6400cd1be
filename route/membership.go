package route

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// Replicated reports whether every shard holds every row of the table (broadcast): its
// shards are each compared with the whole source rather than adding up to it.
func (spec TableSpec) Replicated() bool { return spec.Strategy == Broadcast }

// CanOwn reports whether any row of the table can belong to the named shard: a pinned table
// belongs to its one shard, a range or list table to the shards its ranges, values and
// default name; hash and broadcast tables reach every shard.
func (spec TableSpec) CanOwn(shard string) bool {
	switch spec.Strategy {
	case Pin:
		return spec.Shard == shard
	case Range:
		for _, r := range spec.Ranges {
			if r.Shard == shard {
				return true
			}
		}
		return false
	case List:
		if spec.Default == shard {
			return true
		}
		for _, v := range spec.Values {
			if v.Shard == shard {
				return true
			}
		}
		return false
	}
	return true
}

// MembershipUsesMD5 reports whether MemberSQL's condition calls MD5(), which a stock MySQL
// 9.6+ does not have (component_classic_hashing brings it back): a checker must then decide
// membership in Go, with Route.
func (spec TableSpec) MembershipUsesMD5() bool { return spec.Strategy == Hash }

var intLiteral = regexp.MustCompile(`^[+-]?[0-9]+$`)

// MemberSQL is the SQL condition that holds when a row belongs on shards[i] by this
// routing, for the shard key column quoted as column (like "`user_id`"; "" for broadcast
// and pin, which have none): the same function as Router.Route, evaluated by the server so that a shard can
// count its stray rows without sending them. KeyKind says how the key compares. The hash
// strategy's condition calls MD5() (MembershipUsesMD5). The property test in
// reconcile/routing_test.go checks it against Route on random values.
func (spec TableSpec) MemberSQL(column string, shards []Shard, i int) (string, error) {
	name := shards[i].Name
	switch spec.Strategy {
	case Broadcast:
		return "TRUE", nil
	case Pin:
		if spec.Shard == name {
			return "TRUE", nil
		}
		return "FALSE", nil
	}
	if column == "" {
		return "", fmt.Errorf("strategy %s needs a shard key", spec.Strategy)
	}
	col := column
	bin := "CAST(" + col + " AS BINARY)"
	lit := func(v string) (string, error) {
		if spec.KeyKind == KeyInt {
			if !intLiteral.MatchString(v) {
				return "", fmt.Errorf("%q is not an integer", v)
			}
			return v, nil
		}
		return "X'" + hex.EncodeToString([]byte(v)) + "'", nil
	}
	operand := bin
	if spec.KeyKind == KeyInt {
		operand = col
	}
	switch spec.Strategy {
	case Hash:
		return hashMemberSQL(col, shards[i]), nil
	case Range:
		var ors []string
		for j, r := range spec.Ranges {
			if r.Shard != name {
				continue
			}
			var conds []string
			if j > 0 {
				l, err := lit(spec.Ranges[j-1].Below)
				if err != nil {
					return "", err
				}
				conds = append(conds, operand+" >= "+l)
			}
			if r.Below != "" {
				l, err := lit(r.Below)
				if err != nil {
					return "", err
				}
				conds = append(conds, operand+" < "+l)
			}
			if j == 0 {
				// NULL sorts below every bound: it belongs to the first range.
				if len(conds) == 0 {
					ors = append(ors, "TRUE")
				} else {
					ors = append(ors, "("+col+" IS NULL OR "+strings.Join(conds, " AND ")+")")
				}
				continue
			}
			if len(conds) == 0 {
				ors = append(ors, "TRUE")
			} else {
				ors = append(ors, "("+strings.Join(conds, " AND ")+")")
			}
		}
		if len(ors) == 0 {
			return "FALSE", nil
		}
		return "(" + strings.Join(ors, " OR ") + ")", nil
	case List:
		var mine, all []string
		for _, v := range spec.Values {
			l, err := lit(v.Value)
			if err != nil {
				return "", err
			}
			all = append(all, l)
			if v.Shard == name {
				mine = append(mine, l)
			}
		}
		var ors []string
		if len(mine) > 0 {
			ors = append(ors, operand+" IN ("+strings.Join(mine, ",")+")")
		}
		if spec.Default == name {
			if len(all) > 0 {
				ors = append(ors, "("+col+" IS NULL OR "+operand+" NOT IN ("+strings.Join(all, ",")+"))")
			} else {
				ors = append(ors, "TRUE")
			}
		}
		if len(ors) == 0 {
			return "FALSE", nil
		}
		return "(" + strings.Join(ors, " OR ") + ")", nil
	}
	return "", fmt.Errorf("unknown strategy %q", spec.Strategy)
}

// hashMemberSQL is the condition that HashKey of col lies in the shard's keyspace, written
// for speed: HashKey is the first 16 hex digits of MD5 of the key's canonical bytes,
// which CAST(col AS BINARY) are (the form component_classic_hashing's MD5, on MySQL 9.6+,
// requires, and no slower on MariaDB: measured equal over 1M rows). Instead of converting
// them to a number per row (CONV and CAST cost more than the MD5 itself) the 32-digit
// MD5 text is compared with hex bounds, so MD5 runs once per row:
//
//	h >= start  <=>  md5 >= hex16(start)
//	h <  end    <=>  md5 <  hex16(end)          (a 32-digit text above its 16-digit prefix)
//	start <= h < end  <=>  hex16(start) <= md5 <= hex16(end-1) || "ffffffffffffffff"
//
// A keyspace that starts at 0 or ends at 2^64 (the first and last shard: both of two
// shards) needs only the one comparison. MD5 renders lower-case hex, which every collation
// orders like its bytes, and a shorter string sorts first even under PAD SPACE since every
// hex digit sorts above the space. A NULL key hashes to 0 in routing and belongs to the
// shard whose keyspace starts at 0.
func hashMemberSQL(col string, s Shard) string {
	md5 := "MD5(CAST(" + col + " AS BINARY))"
	var cond string
	switch {
	case s.Start == 0 && s.End == 0:
		return "TRUE"
	case s.Start == 0:
		cond = md5 + " < '" + fmt.Sprintf("%016x", s.End) + "'"
	case s.End == 0:
		return md5 + " >= '" + fmt.Sprintf("%016x", s.Start) + "'"
	default:
		lo := fmt.Sprintf("%016x", s.Start)
		hi := fmt.Sprintf("%016x", s.End-1) + strings.Repeat("f", 16)
		cond = md5 + " BETWEEN '" + lo + "' AND '" + hi + "'"
	}
	if s.Start == 0 {
		cond = "(" + col + " IS NULL OR " + cond + ")"
	}
	return cond
}
