// Package loadgen owns the sample monolith of cleave's demo, tests and benchmarks: a small
// shop schema (users; orders and order_items that follow their user; countries that every
// shard holds), a fast seeder, and a rate-limited write load of inserts, updates, deletes
// and shard-key moves such as a real application produces. It writes only to the database
// it is given.
package loadgen

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cleave-dev/cleave/mysqlx"
)

// Tables are the shop tables in creation order.
var Tables = []string{"countries", "users", "orders", "order_items"}

var schema = []string{
	`CREATE TABLE IF NOT EXISTS %s.countries (
		code CHAR(2) NOT NULL PRIMARY KEY,
		name VARCHAR(64) NOT NULL,
		vat_rate DECIMAL(5,2) NOT NULL
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS %s.users (
		id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
		email VARCHAR(255) NOT NULL,
		name VARCHAR(100) NOT NULL,
		country CHAR(2) NOT NULL,
		balance DECIMAL(12,2) NOT NULL DEFAULT 0,
		note TEXT NULL,
		created_at DATETIME(6) NOT NULL,
		updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
		KEY (email)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS %s.orders (
		id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
		user_id BIGINT UNSIGNED NOT NULL,
		status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
		total DECIMAL(12,2) NOT NULL,
		created_at DATETIME(6) NOT NULL,
		KEY (user_id)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS %s.order_items (
		order_id BIGINT UNSIGNED NOT NULL,
		line INT NOT NULL,
		user_id BIGINT UNSIGNED NOT NULL,
		sku VARCHAR(32) NOT NULL,
		qty INT NOT NULL,
		price DECIMAL(10,2) NOT NULL,
		PRIMARY KEY (order_id, line),
		KEY (user_id)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
}

var countries = [][2]string{
	{"AT", "Austria"}, {"BE", "Belgium"}, {"BR", "Brazil"}, {"CA", "Canada"}, {"CH", "Switzerland"},
	{"CN", "China"}, {"DE", "Germany"}, {"DK", "Denmark"}, {"ES", "Spain"}, {"FI", "Finland"},
	{"FR", "France"}, {"GB", "United Kingdom"}, {"IE", "Ireland"}, {"IN", "India"}, {"IT", "Italy"},
	{"JP", "Japan"}, {"KR", "South Korea"}, {"MX", "Mexico"}, {"NL", "Netherlands"}, {"NO", "Norway"},
	{"PL", "Poland"}, {"PT", "Portugal"}, {"SE", "Sweden"}, {"US", "United States"}, {"ZA", "South Africa"},
}

// CreateSchema creates the database and the shop tables (idempotent).
func CreateSchema(ctx context.Context, db *sql.DB, database string) error {
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+mysqlx.QuoteIdent(database)); err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	for _, stmt := range schema {
		if _, err := db.ExecContext(ctx, fmt.Sprintf(stmt, mysqlx.QuoteIdent(database))); err != nil {
			return fmt.Errorf("create shop table in %s: %w", database, err)
		}
	}
	return nil
}

// Seed fills the shop with users users, about two orders per user and two items per
// order, and every country, in batched multi-row inserts. It returns the rows written.
func Seed(ctx context.Context, db *sql.DB, database string, users int, seed uint64) (int, error) {
	r := rand.New(rand.NewPCG(seed, 1))
	q := mysqlx.QuoteIdent(database)
	total := 0
	b := &batcher{db: db, ctx: ctx}
	for _, c := range countries {
		b.add(fmt.Sprintf("INSERT IGNORE INTO %s.countries (code, name, vat_rate) VALUES ", q), "(?,?,?)", c[0], c[1], fmt.Sprintf("%d.%02d", 5+r.IntN(20), r.IntN(100)))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	orderID, itemRows := 0, 0
	for u := 1; u <= users; u++ {
		created := now.Add(-time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
		b.add(fmt.Sprintf("INSERT INTO %s.users (id, email, name, country, balance, note, created_at) VALUES ", q), "(?,?,?,?,?,?,?)",
			u, fmt.Sprintf("user%d@example.com", u), randomName(r), countries[r.IntN(len(countries))][0],
			fmt.Sprintf("%d.%02d", r.IntN(10000), r.IntN(100)), nullableNote(r), created.Format("2006-01-02 15:04:05.000000"))
		for o := 0; o < 2; o++ {
			orderID++
			b.add(fmt.Sprintf("INSERT INTO %s.orders (id, user_id, status, total, created_at) VALUES ", q), "(?,?,?,?,?)",
				orderID, u, []string{"new", "paid", "shipped", "cancelled"}[r.IntN(4)], fmt.Sprintf("%d.%02d", r.IntN(500), r.IntN(100)),
				created.Add(time.Duration(r.Int64N(int64(time.Hour)))).Format("2006-01-02 15:04:05.000000"))
			for line := 1; line <= 2; line++ {
				itemRows++
				b.add(fmt.Sprintf("INSERT INTO %s.order_items (order_id, line, user_id, sku, qty, price) VALUES ", q), "(?,?,?,?,?,?)",
					orderID, line, u, fmt.Sprintf("SKU-%05d", r.IntN(50000)), 1+r.IntN(5), fmt.Sprintf("%d.%02d", r.IntN(200), r.IntN(100)))
			}
		}
		if b.err != nil {
			return total, b.err
		}
	}
	if err := b.flush(); err != nil {
		return total, err
	}
	total = len(countries) + users + orderID + itemRows
	return total, nil
}

// batcher groups rows of the same INSERT prefix into statements of up to 500 rows.
type batcher struct {
	db      *sql.DB
	ctx     context.Context
	pending map[string]*pendingInsert
	order   []string
	err     error
}

type pendingInsert struct {
	tuple string
	n     int
	args  []any
}

func (b *batcher) add(prefix, tuple string, args ...any) {
	if b.err != nil {
		return
	}
	if b.pending == nil {
		b.pending = map[string]*pendingInsert{}
	}
	p := b.pending[prefix]
	if p == nil {
		p = &pendingInsert{tuple: tuple}
		b.pending[prefix] = p
		b.order = append(b.order, prefix)
	}
	p.n++
	p.args = append(p.args, args...)
	if p.n >= 500 {
		b.err = b.exec(prefix, p)
	}
}

func (b *batcher) exec(prefix string, p *pendingInsert) error {
	if p.n == 0 {
		return nil
	}
	stmt := prefix + strings.TrimSuffix(strings.Repeat(p.tuple+",", p.n), ",")
	if _, err := b.db.ExecContext(b.ctx, stmt, p.args...); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	p.n, p.args = 0, p.args[:0]
	return nil
}

// flush writes what is pending, parents before children (the order prefixes were first seen).
func (b *batcher) flush() error {
	if b.err != nil {
		return b.err
	}
	for _, prefix := range b.order {
		if err := b.exec(prefix, b.pending[prefix]); err != nil {
			return err
		}
	}
	return nil
}

func randomName(r *rand.Rand) string {
	first := []string{"Ada", "Bjørn", "Chloé", "Dmitri", "Emeka", "Fatima", "Grace", "Hiro", "Inès", "José", "Kofi", "Lena", "Mei", "Noor", "Olu", "Priya"}
	last := []string{"Lovelace", "Ødegaard", "Dubois", "Ivanov", "Okafor", "Haddad", "Hopper", "Tanaka", "Martín", "Mensah", "Schmidt", "Chen", "Khan", "Adeyemi", "Patel"}
	return first[r.IntN(len(first))] + " " + last[r.IntN(len(last))]
}

func nullableNote(r *rand.Rand) any {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return ""
	case 2:
		return "prefers email 📧"
	}
	return "vip "
}

// Stats counts the rows a load changed, by kind of change, and its transactions.
type Stats struct {
	Inserts, Updates, Deletes int64
	// Moves are rows whose shard key changed (an order handed to another user).
	Moves        int64
	Transactions int64
}

// Rows is the number of row changes.
func (s Stats) Rows() int64 { return s.Inserts + s.Updates + s.Deletes + s.Moves }

// Load is a rate-limited write load on a seeded shop.
type Load struct {
	DB       *sql.DB
	Database string
	// Rate is the target of row changes per second; 0 writes as fast as it can.
	Rate int
	// Workers are concurrent writers; default 4.
	Workers int
	// Seed makes the sequence of operations repeatable.
	Seed uint64

	inserts, updates, deletes, moves, txs atomic.Int64
}

// Stats returns what the load has written so far.
func (l *Load) Stats() Stats {
	return Stats{Inserts: l.inserts.Load(), Updates: l.updates.Load(), Deletes: l.deletes.Load(), Moves: l.moves.Load(), Transactions: l.txs.Load()}
}

// Run writes until ctx is done, then returns the stats and nil, or the first write error.
func (l *Load) Run(ctx context.Context) (Stats, error) {
	workers := l.Workers
	if workers <= 0 {
		workers = 4
	}
	var lim *rate.Limiter
	if l.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(l.Rate), max(l.Rate/20, 10))
	}
	var maxUser int64
	q := mysqlx.QuoteIdent(l.Database)
	if err := l.DB.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM "+q+".users").Scan(&maxUser); err != nil {
		return l.Stats(), fmt.Errorf("load: read users of %s: %w", l.Database, err)
	}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(l.Seed, uint64(w)+100))
			for ctx.Err() == nil {
				n, err := l.step(ctx, r, q, maxUser)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if mysqlx.Retryable(err) {
						continue
					}
					errc <- err
					return
				}
				if lim != nil && n > 0 {
					if err := lim.WaitN(ctx, min(n, lim.Burst())); err != nil {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return l.Stats(), <-errc
}

// step runs one application transaction and returns the rows it changed.
func (l *Load) step(ctx context.Context, r *rand.Rand, q string, maxUser int64) (int, error) {
	user := 1 + r.Int64N(max(maxUser, 1))
	tx, err := l.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var n int
	var kind *atomic.Int64
	switch p := r.IntN(100); {
	case p < 35: // a new order with its items
		res, err := tx.ExecContext(ctx, "INSERT INTO "+q+".orders (user_id, status, total, created_at) VALUES (?, 'new', ?, UTC_TIMESTAMP(6))", user, fmt.Sprintf("%d.%02d", r.IntN(500), r.IntN(100)))
		if err != nil {
			return 0, err
		}
		id, _ := res.LastInsertId()
		items := 1 + r.IntN(3)
		for line := 1; line <= items; line++ {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+q+".order_items (order_id, line, user_id, sku, qty, price) VALUES (?,?,?,?,?,?)",
				id, line, user, fmt.Sprintf("SKU-%05d", r.IntN(50000)), 1+r.IntN(5), fmt.Sprintf("%d.%02d", r.IntN(200), r.IntN(100))); err != nil {
				return 0, err
			}
		}
		n, kind = 1+items, &l.inserts
	case p < 65: // an order moves on
		res, err := tx.ExecContext(ctx, "UPDATE "+q+".orders SET status = ELT(1 + FLOOR(RAND() * 4), 'new','paid','shipped','cancelled'), total = total + 1 WHERE user_id = ? ORDER BY id DESC LIMIT 1", user)
		if err != nil {
			return 0, err
		}
		a, _ := res.RowsAffected()
		n, kind = int(a), &l.updates
	case p < 85: // a user's balance and note change
		res, err := tx.ExecContext(ctx, "UPDATE "+q+".users SET balance = balance + ?, note = ? WHERE id = ?", fmt.Sprintf("%d.%02d", r.IntN(20), r.IntN(100)), nullableNote(r), user)
		if err != nil {
			return 0, err
		}
		a, _ := res.RowsAffected()
		n, kind = int(a), &l.updates
	case p < 95: // an order is deleted with its items
		var id int64
		err := tx.QueryRowContext(ctx, "SELECT id FROM "+q+".orders WHERE user_id = ? ORDER BY id LIMIT 1 FOR UPDATE", user).Scan(&id)
		if err == sql.ErrNoRows {
			return 0, tx.Commit()
		}
		if err != nil {
			return 0, err
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM "+q+".order_items WHERE order_id = ?", id)
		if err != nil {
			return 0, err
		}
		a, _ := res.RowsAffected()
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+q+".orders WHERE id = ?", id); err != nil {
			return 0, err
		}
		n, kind = int(a)+1, &l.deletes
	default: // an order is handed to another user: its shard key changes
		other := 1 + r.Int64N(max(maxUser, 1))
		var id int64
		err := tx.QueryRowContext(ctx, "SELECT id FROM "+q+".orders WHERE user_id = ? ORDER BY id DESC LIMIT 1 FOR UPDATE", user).Scan(&id)
		if err == sql.ErrNoRows {
			return 0, tx.Commit()
		}
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+q+".orders SET user_id = ? WHERE id = ?", other, id); err != nil {
			return 0, err
		}
		res, err := tx.ExecContext(ctx, "UPDATE "+q+".order_items SET user_id = ? WHERE order_id = ?", other, id)
		if err != nil {
			return 0, err
		}
		a, _ := res.RowsAffected()
		n, kind = 1+int(a), &l.moves
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	kind.Add(int64(n))
	l.txs.Add(1)
	return n, nil
}
