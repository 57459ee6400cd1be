package loadgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
)

// App is the shop's application as it lives through a cut-over: it writes to the source
// until it is told to switch (Switch, which its switch hook's handler calls) or the source
// refuses one of its writes with the cut-over's guard, and from then on sends each
// transaction to the shard that owns its user; after a rollback (SwitchBack, or a shard's
// guard refusing) it writes to the source again.
//
// Design note: what makes the proof possible.
//
//   - Every transaction touches one user's rows only (users by id; orders and order_items
//     by user_id), so it has one owning shard, and it is retried whole: a write the guard
//     refused was rolled back on the source, so it is retried on the owner, never dropped.
//   - Inserted orders take ids from one counter above the seeded ones, never from
//     AUTO_INCREMENT, whose counters on two shards would hand out the same ids.
//   - A transaction counts as acknowledged when its COMMIT returned nil, and only then
//     enters the model (each user's balance increments, the orders alive and deleted). A
//     COMMIT that fails without the server's answer may have committed: the App stops with
//     an error rather than guess, since the model could no longer be exact.
//   - Stopping (ctx done) stops starting transactions; the ones in flight finish on a
//     context of their own, so that no acknowledgement is cut in half.
//
// Verify then compares the model with an independent SELECT of the shards.
type App struct {
	Source *sql.DB
	// Shards are sessions on the shards' servers, in the Router's shard order.
	Shards []*sql.DB
	// Database is the shop's database, the same name on the source and every shard.
	Database string
	// Router routes the shop tables, keyed db.table (config.Config.Router).
	Router *route.Router
	// Rate is the target of row changes per second; 0 writes as fast as it can.
	Rate int
	// Workers are concurrent writers; default 4.
	Workers int
	// Seed makes the sequence of operations repeatable.
	Seed uint64

	switched   atomic.Bool
	switchedAt atomic.Int64 // unix nanoseconds
	byRefusal  atomic.Bool  // the guard's refusal told it first, not Switch
	back       atomic.Bool  // switched back to the source by a rollback
	backAt     atomic.Int64
	backByRef  atomic.Bool

	txs, rows, onShards, refused, failed atomic.Int64

	mu        sync.Mutex
	seed      map[int64]int64 // user -> balance in cents before the App wrote
	deposits  map[int64]int64 // user -> cents acknowledged
	orders    map[int64]appOrder
	deletable []int64 // acknowledged orders no transaction has claimed for deletion
	deleted   map[int64]int64
	firstID   int64 // the first order id the App hands out
	samples   []Sample
	failures  []string // the first few refused attempts, for the report
	nextID    atomic.Int64
}

type appOrder struct {
	user  int64
	items int
}

// Sample is one acknowledged transaction: when it began (its first attempt) and how long
// it took until its COMMIT returned, retries included.
type Sample struct {
	Start   time.Time
	Latency time.Duration
	// OnShard says a shard acknowledged it; Refused that the source's guard refused an
	// attempt first.
	OnShard, Refused bool
}

// AppStats counts what the App had acknowledged.
type AppStats struct {
	Transactions, Rows int64
	// OnShards are transactions a shard acknowledged; Refused those the guard refused on
	// the source first, then retried on their shard.
	OnShards, Refused int64
	// Failed counts attempts the server refused with another error (and rolled back),
	// then retried; Failures are the first few of them.
	Failed   int64
	Failures []string
}

// Stats returns what the App has acknowledged so far.
func (a *App) Stats() AppStats {
	a.mu.Lock()
	failures := append([]string(nil), a.failures...)
	a.mu.Unlock()
	return AppStats{Transactions: a.txs.Load(), Rows: a.rows.Load(), OnShards: a.onShards.Load(), Refused: a.refused.Load(),
		Failed: a.failed.Load(), Failures: failures}
}

// Switch sends every transaction from now on to its shard. It is idempotent: the same
// notice may reach the hook more than once.
func (a *App) Switch() { a.switchNow(false) }

func (a *App) switchNow(byRefusal bool) {
	if a.switched.CompareAndSwap(false, true) {
		a.switchedAt.Store(time.Now().UnixNano())
		a.byRefusal.Store(byRefusal)
	}
}

// SwitchBack sends every transaction from now on to the source again, as a rollback's
// hook tells the application. It is idempotent.
func (a *App) SwitchBack() { a.switchBackNow(false) }

func (a *App) switchBackNow(byRefusal bool) {
	if a.back.CompareAndSwap(false, true) {
		a.backAt.Store(time.Now().UnixNano())
		a.backByRef.Store(byRefusal)
	}
}

// SwitchedBack returns when the App went back to the source and whether a shard's guard
// refusal, not SwitchBack, made it; ok is false before it did.
func (a *App) SwitchedBack() (at time.Time, byRefusal, ok bool) {
	if !a.back.Load() {
		return time.Time{}, false, false
	}
	return time.Unix(0, a.backAt.Load()), a.backByRef.Load(), true
}

// Switched returns when the App switched and whether the guard's refusal, not Switch, made
// it; ok is false before it switched.
func (a *App) Switched() (at time.Time, byRefusal, ok bool) {
	if !a.switched.Load() {
		return time.Time{}, false, false
	}
	return time.Unix(0, a.switchedAt.Load()), a.byRefusal.Load(), true
}

// Samples returns every acknowledged transaction, in the order of their start.
func (a *App) Samples() []Sample {
	a.mu.Lock()
	out := append([]Sample(nil), a.samples...)
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// txTimeout bounds one transaction with its retries: far above any write pause a cut-over
// allows, so that only a broken server reaches it.
const txTimeout = 2 * time.Minute

// Run reads the seeded state, then writes until ctx is done, and returns nil, or the first
// error that leaves a transaction unacknowledged.
func (a *App) Run(ctx context.Context) error {
	if err := a.start(ctx); err != nil {
		return err
	}
	workers := a.Workers
	if workers <= 0 {
		workers = 4
	}
	var lim *rate.Limiter
	if a.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(a.Rate), max(a.Rate/20, 10))
	}
	users := make([]int64, 0, len(a.seed))
	for u := range a.seed {
		users = append(users, u)
	}
	sort.Slice(users, func(i, j int) bool { return users[i] < users[j] })
	if len(users) == 0 {
		return fmt.Errorf("app: %s has no users to write for", a.Database)
	}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(a.Seed, uint64(w)+200))
			for ctx.Err() == nil {
				t := a.next(r, users)
				// The transaction outlives ctx: stopping must not cut an acknowledgement.
				tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), txTimeout)
				err := a.do(tctx, t)
				cancel()
				if err != nil {
					errc <- err
					return
				}
				if lim != nil {
					if lim.WaitN(ctx, min(t.rows(), lim.Burst())) != nil {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// start reads each user's balance and the highest order id from the source.
func (a *App) start(ctx context.Context) error {
	q := mysqlx.QuoteIdent(a.Database)
	rows, err := a.Source.QueryContext(ctx, "SELECT id, balance FROM "+q+".users")
	if err != nil {
		return fmt.Errorf("app: read the users of %s: %w", a.Database, err)
	}
	defer rows.Close()
	a.seed, a.deposits, a.orders, a.deleted = map[int64]int64{}, map[int64]int64{}, map[int64]appOrder{}, map[int64]int64{}
	for rows.Next() {
		var id int64
		var bal string
		if err := rows.Scan(&id, &bal); err != nil {
			return fmt.Errorf("app: read the users of %s: %w", a.Database, err)
		}
		c, err := cents(bal)
		if err != nil {
			return fmt.Errorf("app: user %d: %w", id, err)
		}
		a.seed[id] = c
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("app: read the users of %s: %w", a.Database, err)
	}
	var top int64
	if err := a.Source.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM "+q+".orders").Scan(&top); err != nil {
		return fmt.Errorf("app: read the orders of %s: %w", a.Database, err)
	}
	a.firstID = top + 1
	a.nextID.Store(top)
	return nil
}

// appTxn is one application transaction, decided before its first attempt so that every
// retry, on the source or on a shard, does the same.
type appTxn struct {
	kind  int // deposit, newOrder or cancelOrder
	user  int64
	cents int64 // deposit
	order int64 // newOrder, cancelOrder
	items int
}

const (
	deposit = iota
	newOrder
	cancelOrder
)

func (t appTxn) rows() int {
	if t.kind == deposit {
		return 1
	}
	return 1 + t.items
}

// next decides a transaction: half balance increments, four in ten new orders, one in ten
// the deletion of an order the App inserted (when one is free).
func (a *App) next(r *rand.Rand, users []int64) appTxn {
	p := r.IntN(100)
	if p >= 90 {
		a.mu.Lock()
		if n := len(a.deletable); n > 0 {
			i := r.IntN(n)
			id := a.deletable[i]
			a.deletable[i] = a.deletable[n-1]
			a.deletable = a.deletable[:n-1]
			o := a.orders[id]
			a.mu.Unlock()
			return appTxn{kind: cancelOrder, user: o.user, order: id, items: o.items}
		}
		a.mu.Unlock()
	}
	user := users[r.IntN(len(users))]
	if p < 50 {
		return appTxn{kind: deposit, user: user, cents: 1 + r.Int64N(2000)}
	}
	return appTxn{kind: newOrder, user: user, order: a.nextID.Add(1), items: 1 + r.IntN(3)}
}

// do runs t until it is acknowledged: on the source until the switch, then on the owner;
// retryable errors again after a backoff with jitter.
func (a *App) do(ctx context.Context, t appTxn) error {
	began := time.Now()
	wait := 5 * time.Millisecond
	refused := false
	failed := 0
	for {
		shard := -1
		db := a.Source
		if a.switched.Load() && !a.back.Load() {
			var err error
			if shard, err = a.owner(t.user); err != nil {
				return err
			}
			db = a.Shards[shard]
		}
		err := a.exec(ctx, db, t)
		if err == nil {
			a.acknowledge(t, Sample{Start: began, Latency: time.Since(began), OnShard: shard >= 0, Refused: refused})
			return nil
		}
		where := "the source"
		if shard >= 0 {
			where = "shard " + a.Router.Shards()[shard].Name
		}
		switch {
		case shard < 0 && IsGuardRefusal(err):
			// The cut-over switched and the source rolled the transaction back: the
			// shards own the rows now, whether or not the hook has told us yet.
			refused = true
			a.refused.Add(1)
			a.switchNow(true)
			continue
		case shard >= 0 && IsRollbackRefusal(err):
			// A rollback switched back: the source owns the rows again.
			refused = true
			a.refused.Add(1)
			a.switchBackNow(true)
			continue
		case errors.Is(err, errUnknownOutcome), ctx.Err() != nil:
			return fmt.Errorf("app: %s on %s: %w", t, where, err)
		case !mysqlx.Retryable(err):
			// A statement the server refused: the transaction is rolled back, so a retry
			// is safe. An application would show the error and let the user try again;
			// counting it keeps it visible (MariaDB can fail a write with "table doesn't
			// exist" for a trigger's table while the trigger is being created, MDEV-26048).
			failed++
			if mysqlx.Number(err) == 0 || failed > 3 {
				return fmt.Errorf("app: %s on %s: %w", t, where, err)
			}
			a.fail(fmt.Sprintf("%s on %s: %v", t, where, err))
		}
		jitter := time.Duration(rand.Int64N(int64(wait)/2 + 1))
		select {
		case <-ctx.Done():
			return fmt.Errorf("app: %s on %s: gave up after %s: %w", t, where, time.Since(began).Round(time.Millisecond), err)
		case <-time.After(wait + jitter):
		}
		wait = min(2*wait, time.Second)
	}
}

func (t appTxn) String() string {
	switch t.kind {
	case deposit:
		return fmt.Sprintf("balance increment of user %d", t.user)
	case newOrder:
		return fmt.Sprintf("new order %d of user %d", t.order, t.user)
	}
	return fmt.Sprintf("deletion of order %d of user %d", t.order, t.user)
}

// errUnknownOutcome marks a COMMIT that failed without the server's answer.
var errUnknownOutcome = errors.New("the commit's outcome is unknown (no answer from the server)")

// exec runs t once on db as one transaction.
func (a *App) exec(ctx context.Context, db *sql.DB, t appTxn) error {
	q := mysqlx.QuoteIdent(a.Database)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	switch t.kind {
	case deposit:
		res, err := tx.ExecContext(ctx, "UPDATE "+q+".users SET balance = balance + ? WHERE id = ?", decimal(t.cents), t.user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("user %d is not there (%d rows updated)", t.user, n)
		}
	case newOrder:
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+q+".orders (id, user_id, status, total, created_at) VALUES (?, ?, 'new', ?, UTC_TIMESTAMP(6))",
			t.order, t.user, decimal(t.order%50000)); err != nil {
			return err
		}
		for line := 1; line <= t.items; line++ {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+q+".order_items (order_id, line, user_id, sku, qty, price) VALUES (?, ?, ?, ?, ?, ?)",
				t.order, line, t.user, fmt.Sprintf("SKU-%05d", (t.order+int64(line))%50000), line, decimal(100*int64(line))); err != nil {
				return err
			}
		}
	case cancelOrder:
		res, err := tx.ExecContext(ctx, "DELETE FROM "+q+".order_items WHERE order_id = ?", t.order)
		if err != nil {
			return err
		}
		items, _ := res.RowsAffected()
		if res, err = tx.ExecContext(ctx, "DELETE FROM "+q+".orders WHERE id = ?", t.order); err != nil {
			return err
		}
		// An acknowledged order that is not where it belongs is a lost write: say so.
		if n, _ := res.RowsAffected(); n != 1 || int(items) != t.items {
			return fmt.Errorf("acknowledged order %d with %d items is not there (%d orders, %d items deleted)", t.order, t.items, n, items)
		}
	}
	if err := tx.Commit(); err != nil {
		if mysqlx.Number(err) != 0 {
			return err // the server answered: rolled back
		}
		return fmt.Errorf("%w: %v", errUnknownOutcome, err)
	}
	return nil
}

// fail notes an attempt the server refused.
func (a *App) fail(msg string) {
	a.failed.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.failures) < 5 {
		a.failures = append(a.failures, msg)
	}
}

// acknowledge enters an acknowledged transaction in the model.
func (a *App) acknowledge(t appTxn, s Sample) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch t.kind {
	case deposit:
		a.deposits[t.user] += t.cents
	case newOrder:
		a.orders[t.order] = appOrder{user: t.user, items: t.items}
		a.deletable = append(a.deletable, t.order)
	case cancelOrder:
		delete(a.orders, t.order)
		a.deleted[t.order] = t.user
	}
	a.samples = append(a.samples, s)
	a.txs.Add(1)
	a.rows.Add(int64(t.rows()))
	if s.OnShard {
		a.onShards.Add(1)
	}
}

// owner is the shard of every row a transaction of user writes; the shop's tables must
// agree on it, or one transaction would span shards.
func (a *App) owner(user int64) (int, error) {
	key := route.UintValue(uint64(user))
	owner := -1
	for _, tbl := range []string{"users", "orders", "order_items"} {
		to, err := a.Router.Route(a.Database+"."+tbl, key)
		if err != nil {
			return 0, fmt.Errorf("app: route user %d: %w", user, err)
		}
		if len(to) != 1 || owner >= 0 && to[0] != owner {
			return 0, fmt.Errorf("app: the rows of user %d in %s route to shards %v, not to shard %d with the user's other rows", user, tbl, to, owner)
		}
		owner = to[0]
	}
	if owner >= len(a.Shards) {
		return 0, fmt.Errorf("app: user %d routes to shard %d, and the App has %d shards", user, owner, len(a.Shards))
	}
	return owner, nil
}

// IsGuardRefusal reports whether err is the cut-over's guard refusing a write to a moved
// table on the source. The guard signals SQLSTATE 45000 (error 1644, which any SIGNAL
// raises), so its message tells it from another trigger's.
func IsGuardRefusal(err error) bool {
	return mysqlx.Number(err) == 1644 && strings.Contains(err.Error(), "moved to the shards")
}

// IsRollbackRefusal reports whether err is a rollback's guard refusing a write to a moved
// table on a shard.
func IsRollbackRefusal(err error) bool {
	return mysqlx.Number(err) == 1644 && strings.Contains(err.Error(), "moved back to the source")
}

// Check is what Verify found.
type Check struct {
	Users, Orders, Deleted int
	// Problems names every acknowledged change that is missing, wrong, doubled or on a
	// shard that does not own it, and every order of the App no acknowledgement explains.
	Problems []string
}

// OK reports whether the shards hold exactly what the App had acknowledged.
func (c *Check) OK() bool { return len(c.Problems) == 0 }

// Verify reads every shard with plain SELECTs, independent of cleave, and compares them
// with the model, for use after Run has returned: each user on its owner only, with its
// balance before the App wrote plus every increment it acknowledged; every order it
// acknowledged on its owner only, with its items; no order it deleted, or never
// acknowledged, anywhere.
func (a *App) Verify(ctx context.Context) (*Check, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &Check{Users: len(a.seed), Orders: len(a.orders), Deleted: len(a.deleted)}
	problem := func(format string, args ...any) { c.Problems = append(c.Problems, fmt.Sprintf(format, args...)) }
	q := mysqlx.QuoteIdent(a.Database)
	balances := map[int64]map[int]int64{} // user -> shard -> cents
	orders := map[int64]map[int]int64{}   // order -> shard -> user
	items := map[int64]map[int]int{}      // order -> shard -> items
	for i, db := range a.Shards {
		err := scan(ctx, db, "SELECT id, balance FROM "+q+".users", func(rs *sql.Rows) error {
			var id int64
			var bal string
			if err := rs.Scan(&id, &bal); err != nil {
				return err
			}
			c, err := cents(bal)
			if err != nil {
				return fmt.Errorf("user %d: %w", id, err)
			}
			put(balances, id, i, c)
			return nil
		})
		if err == nil {
			err = scan(ctx, db, "SELECT id, user_id FROM "+q+".orders WHERE id >= ?", func(rs *sql.Rows) error {
				var id, user int64
				if err := rs.Scan(&id, &user); err != nil {
					return err
				}
				put(orders, id, i, user)
				return nil
			}, a.firstID)
		}
		if err == nil {
			err = scan(ctx, db, "SELECT order_id, COUNT(*) FROM "+q+".order_items WHERE order_id >= ? GROUP BY order_id", func(rs *sql.Rows) error {
				var id int64
				var n int
				if err := rs.Scan(&id, &n); err != nil {
					return err
				}
				put(items, id, i, n)
				return nil
			}, a.firstID)
		}
		if err != nil {
			return nil, fmt.Errorf("app: verify shard %d: %w", i, err)
		}
	}
	for user, seed := range a.seed {
		owner, err := a.owner(user)
		if err != nil {
			return nil, err
		}
		want := seed + a.deposits[user]
		for shard, got := range balances[user] {
			switch {
			case shard != owner:
				problem("user %d is on shard %d, which does not own it (owner %d)", user, shard, owner)
			case got != want:
				problem("user %d has balance %s on its shard %d, want %s (%s before the App plus %s acknowledged)",
					user, decimal(got), shard, decimal(want), decimal(seed), decimal(a.deposits[user]))
			}
		}
		if _, ok := balances[user][owner]; !ok {
			problem("user %d is missing on its shard %d", user, owner)
		}
	}
	for id, o := range a.orders {
		owner, err := a.owner(o.user)
		if err != nil {
			return nil, err
		}
		if orders[id][owner] != o.user {
			problem("acknowledged order %d of user %d is missing on its shard %d", id, o.user, owner)
		} else if items[id][owner] != o.items {
			problem("acknowledged order %d has %d items on its shard %d, want %d", id, items[id][owner], owner, o.items)
		}
	}
	for id, on := range orders {
		o, live := a.orders[id]
		for shard := range on {
			switch {
			case !live && wasDeleted(a.deleted, id):
				problem("order %d, whose deletion was acknowledged, is on shard %d", id, shard)
			case !live:
				problem("order %d is on shard %d, and no acknowledged insert explains it", id, shard)
			default:
				if owner, _ := a.owner(o.user); shard != owner {
					problem("order %d is on shard %d, which does not own it (owner %d)", id, shard, owner)
				}
			}
		}
	}
	for id, on := range items {
		if _, ok := orders[id]; !ok {
			for shard := range on {
				problem("items of order %d are on shard %d without their order", id, shard)
			}
		}
	}
	sort.Strings(c.Problems)
	return c, nil
}

// wasDeleted reports whether the App acknowledged the deletion of order id.
func wasDeleted(m map[int64]int64, id int64) bool {
	_, ok := m[id]
	return ok
}

func put[V any](m map[int64]map[int]V, id int64, shard int, v V) {
	if m[id] == nil {
		m[id] = map[int]V{}
	}
	m[id][shard] = v
}

func scan(ctx context.Context, db *sql.DB, query string, row func(*sql.Rows) error, args ...any) error {
	rs, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		if err := row(rs); err != nil {
			return err
		}
	}
	return rs.Err()
}

// cents parses a DECIMAL(12,2) as the server renders it.
func cents(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(whole, "-")
	w, err := strconv.ParseInt(strings.TrimPrefix(whole, "-"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("balance %q: %w", s, err)
	}
	f := int64(0)
	if frac != "" {
		if len(frac) != 2 {
			return 0, fmt.Errorf("balance %q: want two decimals", s)
		}
		if f, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return 0, fmt.Errorf("balance %q: %w", s, err)
		}
	}
	c := w*100 + f
	if neg {
		c = -c
	}
	return c, nil
}

// decimal renders cents as a DECIMAL literal.
func decimal(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// Pause summarises the latency of acknowledged transactions.
type Pause struct {
	N             int
	P50, P99, Max time.Duration
}

func (p Pause) String() string {
	return fmt.Sprintf("p50 %s, p99 %s, max %s over %d transactions", p.P50.Round(time.Microsecond), p.P99.Round(time.Microsecond), p.Max.Round(time.Microsecond), p.N)
}

// PauseOf summarises the samples whose transactions overlapped [from, to] (from the
// first attempt's start to the acknowledgement), or all of them when from and to are zero.
// Percentiles are nearest-rank.
func PauseOf(samples []Sample, from, to time.Time) Pause {
	var ls []time.Duration
	for _, s := range samples {
		if from.IsZero() && to.IsZero() || !s.Start.After(to) && !s.Start.Add(s.Latency).Before(from) {
			ls = append(ls, s.Latency)
		}
	}
	if len(ls) == 0 {
		return Pause{}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(ls)))) - 1
		return ls[min(max(i, 0), len(ls)-1)]
	}
	return Pause{N: len(ls), P50: rank(50), P99: rank(99), Max: ls[len(ls)-1]}
}
