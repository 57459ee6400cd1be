package mysqlx

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv"
)

// Strings that tell collations apart: padding, accents and case, expansions, ligatures,
// Hangul syllables and their jamo, emoji and CJK of several Unicode versions (MySQL's
// UCA 9.0.0 gives characters it does not know implicit weights), look-alikes.
var collationProbes = []string{"a", "A", "á", "Á", "ä", "a\u0301", "b", "ss", "ß", "SS", "ẞ", "a ", "a  ", "", " ", "æ", "ae", "Æ",
	"😀", "😁", "🦀", "🥰", "🫠", "🩷", "가", "각", "\u1100\u1161", "ǆ", "dž", "ı", "i", "I", "İ", "ﬁ", "fi", "①", "1", "ｱ", "ア", "ｶﾞ", "㎏", "kg",
	"Å", "\u212b", "a\u00a0", "中", "国", "\u9feb", "\U00031350", "\U0002a6d6", "\u0d81", "ꞵ", "\U0001e900", "Ǆ", "ŉ", "ʼn", "x\ty", "x y",
	"A\u0308", "Ä", "z", "Z", "ø", "o", "ö", "ł", "l", "đ", "d", "Ω", "ω", "\u2126", "﹏", "_", "-", "‐", "a-b", "ab", "a_b"}

// latin1Probes are the same for single-byte character sets (MySQL's latin1 is cp1252).
var latin1Probes = []string{"a", "A", "á", "Á", "ä", "Ä", "å", "Å", "aa", "Aa", "æ", "ae", "Æ", "b", "ss", "ß", "SS", "a ", "a  ", "", " ",
	"Ð", "ð", "d", "Þ", "þ", "ÿ", "Ÿ", "y", "µ", "×", "÷", "¿", "Œ", "œ", "oe", "Š", "s", "€", "ƒ", "…", "‰", "Ñ", "ñ", "n", "Ç", "ç", "c",
	"É", "è", "e", "Ü", "ü", "ue", "u", "Ö", "ö", "Ø", "ø", "o", "z", "Z", "_", "-", "a-b", "ab", "a_b", "x\ty", "x y"}

// collationClasses orders probes by coll on db and groups those coll calls equal:
// "a = A | b | …", a fingerprint of how the collation compares and orders.
func collationClasses(t *testing.T, db *sql.DB, charset, coll string, probes []string) string {
	t.Helper()
	var parts []string
	var args []any
	for i, s := range probes {
		parts = append(parts, fmt.Sprintf("SELECT %d AS i, CONVERT(? USING %s) COLLATE %s AS v", i, charset, coll))
		args = append(args, s)
	}
	q := "SELECT GROUP_CONCAT(i ORDER BY i) FROM (" + strings.Join(parts, " UNION ALL ") + ") x GROUP BY v ORDER BY v, MIN(i)"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", coll, err)
	}
	defer rows.Close()
	var classes []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			t.Fatal(err)
		}
		var members []string
		for _, n := range strings.Split(g, ",") {
			var i int
			fmt.Sscan(n, &i)
			members = append(members, fmt.Sprintf("%q", probes[i]))
		}
		classes = append(classes, strings.Join(members, " = "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(classes, " | ")
}

// TestCollationsVouchedForCompareAlikeOnBothProducts checks the tables behind
// Flavor.Collation against a real MySQL and a real MariaDB: every collation said to cross
// from one product to the other groups and orders the probe strings the same way on both,
// and MySQL's default utf8mb4_0900_ai_ci does not, even against MariaDB's closest
// collation.
func TestCollationsVouchedForCompareAlikeOnBothProducts(t *testing.T) {
	e := testenv.DatabasesFor(t, testenv.MariaDBFlavor, testenv.MySQLFlavor)
	mariadb, mysql := testenv.OpenDB(t, e.SourceDSN), testenv.OpenDB(t, e.Shard0DSN)
	mariadb.SetMaxOpenConns(1)
	mysql.SetMaxOpenConns(1)
	for _, db := range []*sql.DB{mariadb, mysql} {
		if _, err := db.Exec("SET NAMES utf8mb4"); err != nil {
			t.Fatal(err)
		}
	}
	var shared []string
	for c := range sharedCollations {
		shared = append(shared, c)
	}
	sort.Strings(shared)
	type pair struct{ onMySQL, onMariaDB string }
	var pairs []pair
	for _, c := range shared {
		if c != "binary" {
			pairs = append(pairs, pair{c, c})
		}
	}
	for my, ma := range renamedCollations[MySQL] {
		pairs = append(pairs, pair{my, ma})
	}
	for _, p := range pairs {
		t.Run(p.onMySQL, func(t *testing.T) {
			charset, _, _ := strings.Cut(p.onMySQL, "_")
			probes := collationProbes
			switch charset {
			case "utf8", "utf8mb3":
				probes = below(collationProbes, 0xffff)
			case "latin1":
				probes = latin1Probes
			case "ascii":
				probes = below(latin1Probes, 0x7f)
			}
			my := collationClasses(t, mysql, charset, p.onMySQL, probes)
			ma := collationClasses(t, mariadb, charset, p.onMariaDB, probes)
			if my != ma {
				t.Errorf("MySQL %s and MariaDB %s differ:\nMySQL   %s\nMariaDB %s", p.onMySQL, p.onMariaDB, my, ma)
			}
		})
	}
	t.Run("utf8mb4_0900_ai_ci has no equal on MariaDB", func(t *testing.T) {
		my := collationClasses(t, mysql, "utf8mb4", "utf8mb4_0900_ai_ci", collationProbes)
		for _, c := range []string{"utf8mb4_uca1400_nopad_ai_ci", "utf8mb4_uca1400_ai_ci", "utf8mb4_unicode_520_ci"} {
			if ma := collationClasses(t, mariadb, "utf8mb4", c, collationProbes); ma == my {
				t.Errorf("MariaDB's %s compares the probes as MySQL's utf8mb4_0900_ai_ci does: Flavor.Collation may vouch for it", c)
			}
		}
	})
}

// below keeps the strings whose every character is at most top.
func below(in []string, top rune) []string {
	var out []string
	for _, s := range in {
		if strings.IndexFunc(s, func(r rune) bool { return r > top }) < 0 {
			out = append(out, s)
		}
	}
	return out
}
