package backfill

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// keyCol is one primary key column: how a held key value is bound again so that the
// server compares it exactly as it orders the column.
type keyCol struct {
	col   *schema.Column
	quote string
	param string // placeholder expression, with one "?"
	arg   func(v any) (any, error)
}

var decimalType = regexp.MustCompile(`(?i)^decimal\((\d+),(\d+)\)`)

func newKeyCol(c *schema.Column) (keyCol, error) {
	k := keyCol{col: c, quote: mysqlx.QuoteIdent(c.Name), param: "?"}
	sqlArg := func(v any) (any, error) { return event.SQLArg(c, v) }
	k.arg = sqlArg
	switch c.Kind {
	case schema.KindInt, schema.KindYear, schema.KindUint, schema.KindBit, schema.KindDouble, schema.KindBinary:
	case schema.KindFloat:
		// SQLArg rounds to the float32 value the column holds; the server widens the column
		// to the same double when it compares.
	case schema.KindDecimal:
		m := decimalType.FindStringSubmatch(c.ColumnType)
		if m == nil {
			m = []string{"", "65", "30"}
		}
		k.param = "CAST(? AS DECIMAL(" + m[1] + "," + m[2] + "))"
	case schema.KindDate:
		k.param = "CAST(? AS DATE)"
	case schema.KindTime:
		k.param = mysqlx.TimeParam(c.FSP)
	case schema.KindDateTime, schema.KindTimestamp:
		k.param = fmt.Sprintf("CAST(? AS DATETIME(%d))", c.FSP)
	case schema.KindString:
		// The UTF-8 text becomes a string of the column's own character set and collation,
		// so that the comparison is the one the primary key index is ordered by.
		cs, coll := c.Charset, c.Collation
		if cs == "" || coll == "" {
			cs, coll = "utf8mb4", "utf8mb4_bin"
		}
		k.param = "CONVERT(? USING " + cs + ") COLLATE " + coll
	case schema.KindEnum:
		// An ENUM orders by its index, and compares with a number by its index.
		k.arg = func(v any) (any, error) {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("enum value of Go type %T", v)
			}
			if s == "" {
				return uint64(0), nil
			}
			for i, e := range c.Elements {
				if e == s {
					return uint64(i + 1), nil
				}
			}
			return nil, fmt.Errorf("%q is not a label of %s", s, c.ColumnType)
		}
	case schema.KindSet:
		k.arg = func(v any) (any, error) {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("set value of Go type %T", v)
			}
			var bits uint64
			if s != "" {
			labels:
				for _, l := range strings.Split(s, ",") {
					for i, e := range c.Elements {
						if e == l {
							bits |= 1 << i
							continue labels
						}
					}
					return nil, fmt.Errorf("%q is not a label of %s", l, c.ColumnType)
				}
			}
			return bits, nil
		}
	default:
		return k, fmt.Errorf("primary key column %s of type %s cannot be paged by: the backfill cannot copy the table", c.Name, c.ColumnType)
	}
	return k, nil
}

// tableReader reads one table in chunks: its definition, how each column is selected so
// that the value reads back exactly, and the keyset SQL.
type tableReader struct {
	name     string
	db, tbl  string
	def      *schema.Table
	schemaAt capture.Position
	keys     []keyCol
	cols     []string // column names, as the SELECT returns them
	selects  string   // the select list
	enc      *encoder
	limit    int
	json     *jsonTyper // the types of MySQL JSON scalars (json.go); nil without JSON columns

	first, next string // SQL of the first chunk, and of the chunks after a key
}

// openTable reads the definition of table and prepares its SQL. schemaAt must be a
// position read before the definition.
func openTable(ctx context.Context, src *sql.DB, name string, schemaAt capture.Position, limit int) (*tableReader, error) {
	db, tbl, err := config.SplitName(name)
	if err != nil {
		return nil, err
	}
	def, err := schema.Load(ctx, src, db, tbl)
	if err != nil {
		return nil, fmt.Errorf("backfill %s: %w", name, err)
	}
	tr := &tableReader{name: name, db: db, tbl: tbl, def: def, schemaAt: schemaAt, enc: newEncoder(def), limit: limit}
	var sel []string
	for i := range def.Columns {
		c := &def.Columns[i]
		q := mysqlx.QuoteIdent(c.Name)
		switch {
		case c.Kind == schema.KindBit:
			// As a number: its raw bytes could read as decimal digits.
			q = "(" + q + "+0)"
		case (c.Kind == schema.KindString || c.Kind == schema.KindJSON) && !utf8Compatible(c.Charset):
			// The stored bytes, converted as the binlog's are (event.Encode by charset).
			q = "CAST(" + q + " AS BINARY)"
		}
		sel = append(sel, q)
		tr.cols = append(tr.cols, c.Name)
	}
	tr.selects = strings.Join(sel, ", ")
	var order []string
	for _, i := range def.PK {
		k, err := newKeyCol(&def.Columns[i])
		if err != nil {
			return nil, fmt.Errorf("backfill %s: %w", name, err)
		}
		tr.keys = append(tr.keys, k)
		order = append(order, k.quote)
	}
	from := mysqlx.QuoteTable(db, tbl)
	tail := " ORDER BY " + strings.Join(order, ", ") + " LIMIT " + strconv.Itoa(limit)
	tr.first = "SELECT " + tr.selects + " FROM " + from + tail
	tr.next = "SELECT " + tr.selects + " FROM " + from + " WHERE " + tr.after() + tail
	tr.json = newJSONTyper(tr)
	return tr, nil
}

func utf8Compatible(cs string) bool {
	switch strings.ToLower(cs) {
	case "", "utf8mb4", "utf8mb3", "utf8", "ascii", "binary":
		return true
	}
	return false
}

// after renders "key > (?, ?, …)" in the order of the primary key index:
//
//	a >= ? AND ((a > ?) OR (a = ? AND b > ?))
//
// The leading a >= ? gives the optimizer a range on the index for composite keys.
func (tr *tableReader) after() string {
	var ors []string
	for i := range tr.keys {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, tr.keys[j].quote+" = "+tr.keys[j].param)
		}
		ands = append(ands, tr.keys[i].quote+" > "+tr.keys[i].param)
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	cond := strings.Join(ors, " OR ")
	if len(tr.keys) > 1 {
		cond = tr.keys[0].quote + " >= " + tr.keys[0].param + " AND (" + cond + ")"
	}
	return cond
}

// afterArgs binds a key (its values in event form) to after's placeholders.
func (tr *tableReader) afterArgs(key []any) ([]any, error) {
	if len(key) != len(tr.keys) {
		return nil, fmt.Errorf("stored key %v has %d values, the primary key of %s %d columns: the table's primary key changed; copy it again (cleave backfill --table %s)", key, len(key), tr.name, len(tr.keys), tr.name)
	}
	vals := make([]any, len(key))
	for i, k := range tr.keys {
		a, err := k.arg(key[i])
		if err != nil {
			return nil, fmt.Errorf("stored key of %s, column %s: %w", tr.name, k.col.Name, err)
		}
		vals[i] = a
	}
	var args []any
	if len(tr.keys) > 1 {
		args = append(args, vals[0])
	}
	for i := range tr.keys {
		args = append(args, vals[:i+1]...)
	}
	return args, nil
}

// estimate returns the server's estimate of the table's row count.
func (tr *tableReader) estimate(ctx context.Context, src *sql.DB) int64 {
	var n sql.NullInt64
	_ = src.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", tr.db, tr.tbl).Scan(&n)
	return n.Int64
}

// snapshotConn is the copier's connection to the source: REPEATABLE READ, and for the
// lock method a second connection that holds the table lock.
type snapshotConn struct {
	db     *sql.DB
	conn   *sql.Conn
	lock   *sql.Conn
	method string
	// showPos is the statement that shows the binlog position (MySQL 8.2 renamed it).
	showPos string
	stmts   map[string]*sql.Stmt
}

const (
	methodStatus = "snapshot-status" // MariaDB: binlog_snapshot_file/position
	methodLock   = "lock-tables"     // MySQL: LOCK TABLES t READ around the snapshot start
)

func openSnapshotConn(ctx context.Context, db *sql.DB, method, showPos string) (*snapshotConn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the source: %w", err)
	}
	s := &snapshotConn{db: db, conn: conn, method: method, showPos: showPos, stmts: map[string]*sql.Stmt{}}
	// A consistent snapshot needs REPEATABLE READ: under READ COMMITTED every statement
	// would see the table anew.
	if _, err := conn.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		s.close()
		return nil, fmt.Errorf("set the copy's isolation level: %w", err)
	}
	if method == methodLock {
		if s.lock, err = db.Conn(ctx); err != nil {
			s.close()
			return nil, fmt.Errorf("connect to the source: %w", err)
		}
		// A writer that holds the table (a long transaction) must not make the lock wait,
		// with every other writer queued behind it: give up after a second and try again.
		if _, err := s.lock.ExecContext(ctx, "SET SESSION lock_wait_timeout = 1"); err != nil {
			s.close()
			return nil, fmt.Errorf("set lock_wait_timeout for the copy's table lock: %w", err)
		}
	}
	return s, nil
}

func (s *snapshotConn) close() {
	for _, st := range s.stmts {
		st.Close()
	}
	if s.conn != nil {
		s.conn.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

func (s *snapshotConn) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st := s.stmts[q]; st != nil {
		return st, nil
	}
	// Prepared, so that rows come in the binary protocol: FLOAT exactly, not as the six
	// digits the text protocol shows.
	st, err := s.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.stmts[q] = st
	return st, nil
}

// begin starts a consistent snapshot for table and returns its binlog position.
func (s *snapshotConn) begin(ctx context.Context, table string) (capture.Position, error) {
	if s.method == methodLock {
		return s.beginLocked(ctx, table)
	}
	if _, err := s.conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return capture.Position{}, fmt.Errorf("start a consistent snapshot: %w", err)
	}
	rows, err := s.conn.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('Binlog_snapshot_file', 'Binlog_snapshot_position')")
	if err != nil {
		s.rollback()
		return capture.Position{}, fmt.Errorf("read the snapshot's binlog position: %w", err)
	}
	defer rows.Close()
	var p capture.Position
	var posText string
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			s.rollback()
			return p, fmt.Errorf("read the snapshot's binlog position: %w", err)
		}
		switch strings.ToLower(k) {
		case "binlog_snapshot_file":
			p.File = v
		case "binlog_snapshot_position":
			posText = v
		}
	}
	if err := rows.Err(); err != nil {
		s.rollback()
		return p, fmt.Errorf("read the snapshot's binlog position: %w", err)
	}
	if p.File == "" || posText == "" {
		s.rollback()
		return p, errors.New("the source shows no Binlog_snapshot_file/Binlog_snapshot_position status, which MariaDB has whenever its binary log is on: turn log_bin on")
	}
	if p.Pos, err = strconv.ParseUint(posText, 10, 64); err != nil {
		s.rollback()
		return p, fmt.Errorf("Binlog_snapshot_position %q is not an offset", posText)
	}
	return p, nil
}

// beginLocked is the snapshot for servers without binlog_snapshot_position: while a second
// connection holds the table's read lock no write to it can commit, so the position read
// then and the snapshot started then see the same table.
func (s *snapshotConn) beginLocked(ctx context.Context, table string) (capture.Position, error) {
	db, tbl, _ := config.SplitName(table)
	var p capture.Position
	if _, err := s.lock.ExecContext(ctx, "LOCK TABLES "+mysqlx.QuoteTable(db, tbl)+" READ"); err != nil {
		return p, fmt.Errorf("lock %s for the snapshot: %w", table, err)
	}
	unlock := func() error {
		_, err := s.lock.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES")
		return err
	}
	if _, err := s.conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		_ = unlock()
		return p, fmt.Errorf("start a consistent snapshot: %w", err)
	}
	p, err := showPosition(ctx, s.lock, s.showPos)
	if uerr := unlock(); err == nil && uerr != nil {
		err = fmt.Errorf("unlock %s after the snapshot: %w", table, uerr)
	}
	if err != nil {
		s.rollback()
		return p, err
	}
	return p, nil
}

func (s *snapshotConn) rollback() {
	_, _ = s.conn.ExecContext(context.Background(), "ROLLBACK")
}

func (s *snapshotConn) commit(ctx context.Context) error {
	_, err := s.conn.ExecContext(ctx, "COMMIT")
	return err
}

// showPosition reads the source's current binlog position with stmt.
func showPosition(ctx context.Context, q mysqlx.Querier, stmt string) (capture.Position, error) {
	file, pos, _, err := mysqlx.BinlogStatus(ctx, q, stmt)
	return capture.Position{File: file, Pos: pos}, err
}

// chunkRead is one chunk as read, before it is handed to capture.
type chunkRead struct {
	chunk   *capture.Chunk
	rows    int
	lastKey []byte // message key of the last row
	// final: fewer rows than the limit came back, so nothing lies beyond the last key at
	// the snapshot.
	final bool
}

// readChunk copies the rows after key (nil: from the start) inside one consistent
// snapshot. watch must have been opened before; the chunk is encoded with the source
// header src. It stops early, at a row boundary, once maxBytes are encoded.
func (tr *tableReader) readChunk(ctx context.Context, sc *snapshotConn, watch *capture.Watch, key []any, src event.Source, maxBytes int64) (*chunkRead, error) {
	q, args := tr.first, []any(nil)
	if key != nil {
		q = tr.next
		var err error
		if args, err = tr.afterArgs(key); err != nil {
			return nil, err
		}
	}
	st, err := sc.stmt(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare the chunk query of %s: %w", tr.name, err)
	}
	at, err := sc.begin(ctx, tr.name)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			sc.rollback()
		}
	}()
	if err := watch.SetPosition(at); err != nil {
		return nil, err
	}
	v, err := event.NewVersion(at.File, at.Pos, 0)
	if err != nil {
		return nil, err
	}
	src.File, src.Pos = at.File, at.Pos
	tr.enc.setSource(&src)
	tsMs := time.Now().UnixMilli()

	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("read a chunk of %s: %w", tr.name, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("read a chunk of %s: %w", tr.name, err)
	}
	if len(cols) != len(tr.cols) {
		return nil, errDefinitionChanged
	}
	raw := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	vals := make([]any, len(cols))
	type span struct{ k0, k1, v1 int }
	var spans []span
	buf := make([]byte, 0, 64<<10)
	n := 0
	cut := false
	tr.json.start()
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("read a chunk of %s: %w", tr.name, err)
		}
		for i := range raw {
			if vals[i], err = event.Encode(&tr.def.Columns[i], raw[i]); err != nil {
				return nil, fmt.Errorf("copy %s: %w", tr.name, err)
			}
		}
		k0 := len(buf)
		tr.enc.load(vals)
		buf = tr.enc.appendKey(buf)
		k1 := len(buf)
		buf = tr.enc.appendEvent(buf, tsMs, v, nil)
		spans = append(spans, span{k0, k1, len(buf)})
		if err := tr.json.scan(tr.def, n, vals); err != nil {
			return nil, fmt.Errorf("copy %s: %w", tr.name, err)
		}
		n++
		if int64(len(buf)) >= maxBytes {
			cut = true
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read a chunk of %s: %w", tr.name, err)
	}
	rows.Close()
	typed, err := tr.json.resolve(ctx, sc, tr, args, n)
	if err != nil {
		return nil, err
	}
	if err := sc.commit(ctx); err != nil {
		return nil, fmt.Errorf("end the snapshot of %s: %w", tr.name, err)
	}
	committed = true

	ch := &capture.Chunk{Watch: watch, At: at, SchemaAt: tr.schemaAt, Bytes: int64(len(buf)),
		Keys: make([][]byte, n), Values: make([][]byte, n)}
	for i, s := range spans {
		ch.Keys[i] = buf[s.k0:s.k1:s.k1]
		ch.Values[i] = buf[s.k1:s.v1:s.v1]
	}
	tr.json.retype(ch, tr.enc, typed, tsMs, v)
	cr := &chunkRead{chunk: ch, rows: n, final: !cut && n < tr.limit}
	if n > 0 {
		cr.lastKey = ch.Keys[n-1]
	}
	return cr, nil
}

// errDefinitionChanged: the SELECT returned other columns than the definition read.
var errDefinitionChanged = errors.New("the table's columns changed")

// decodeKey turns a stored message key back into its values.
func decodeKey(raw json.RawMessage) ([]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	return event.UnmarshalKey(raw)
}
