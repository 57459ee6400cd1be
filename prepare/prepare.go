// Package prepare owns `cleave prepare`: it makes every shard ready to receive its rows
// and Kafka ready to carry them. On each shard it creates cleave's bookkeeping database,
// the source databases (with the source's default character set and collation) and the
// configured tables from the source's own SHOW CREATE TABLE, adapted for a shard (see
// ShardDDL) and for the shard's product, which may not be the source's (see Products);
// in Kafka it creates the table and dead-letter topics.
//
// It is idempotent: what exists and matches the source is left alone and reported as up
// to date. It never alters or drops an existing shard table: one whose definition differs
// from the source is an error naming the shard, the table and each difference, for the
// operator to resolve. It only reads the source.
package prepare

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// Step is one thing prepare made sure of.
type Step struct {
	// Target is the shard name, or "kafka".
	Target string
	// Object is what was made sure of: "bookkeeping _cleave", "database shop",
	// "table shop.orders", "topic demo.shop.orders".
	Object string
	// Created is true when prepare created the object, false when it existed and matched.
	Created bool
	// Note adds what the operator should know, e.g. the foreign keys left out.
	Note string
}

// String renders the step on one line: "shard0 table shop.orders: created; <note>".
func (s Step) String() string {
	outcome := "already up to date"
	if s.Created {
		outcome = "created"
	}
	line := fmt.Sprintf("%s %s: %s", s.Target, s.Object, outcome)
	if s.Note != "" {
		line += "; " + s.Note
	}
	return line
}

// DiffError reports a shard table that exists with a definition other than the source's.
type DiffError struct {
	Shard, Table string
	// Diffs are the differences, as Diff words them.
	Diffs []string
	// Created is set when prepare created the table just now from the source's
	// definition and the shard's server made something else of it.
	Created bool
}

func (e *DiffError) Error() string {
	lines := make([]string, len(e.Diffs))
	for i, d := range e.Diffs {
		lines[i] = fmt.Sprintf("%s: %s %s", e.Shard, e.Table, d)
	}
	if e.Created {
		lines = append(lines, fmt.Sprintf("%s: %s was created just now from the source's definition, and the shard's server made the above of it (a default of the server's own); drop it on the shard, state what differs in the source's definition or align the shard's server settings, and run prepare again", e.Shard, e.Table))
	}
	return strings.Join(lines, "\n")
}

// stepTimeout bounds the work on one server, so a server that stops answering cannot hang
// prepare.
const stepTimeout = 2 * time.Minute

// sourceTable is a configured table as read from the source, with its shard DDL for a
// shard of the source's product (forShard adapts it to the shard's).
type sourceTable struct {
	name      string // db.table
	db, table string
	def       *schema.Table
	collation string // the table's default collation
	// defaults are information_schema's COLUMN_DEFAULT by column, as the source says them.
	defaults   map[string]string
	ddl        string
	fks        []string
	addVersion bool
}

// sourceDB is a source database and its defaults.
type sourceDB struct {
	name, charset, collation string
}

// source is what prepare read from the source.
type source struct {
	flavor mysqlx.Flavor
	dbs    []sourceDB
	tables []sourceTable
}

// shard is one shard's connection and the statements that make its tables.
type shard struct {
	cfg      config.Shard
	db       *sql.DB
	products Products
	tables   []shardTable
}

type shardTable struct {
	sourceTable
	stmt  string // the CREATE TABLE for this shard's product (forShard)
	notes []string
}

// Run prepares every shard and the Kafka topics of cfg, calling report for each step as
// it completes. It goes on past a shard that fails, so that one run names every problem;
// the error joins them. A source table that cannot be read, or that a shard of another
// product cannot hold faithfully, stops it before any change.
func Run(ctx context.Context, cfg *config.Config, report func(Step)) error {
	src, err := readSource(ctx, cfg)
	if err != nil {
		return err
	}
	var errs, refused []error
	var shards []*shard
	defer func() {
		for _, sh := range shards {
			sh.db.Close()
		}
	}()
	for _, sc := range cfg.Shards {
		sh, err := openShard(ctx, sc, src)
		var ue *UnfaithfulError
		switch {
		case errors.As(err, &ue):
			refused = append(refused, err)
		case err != nil:
			errs = append(errs, err)
		}
		if sh != nil {
			shards = append(shards, sh)
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("the source tables cannot be prepared on every shard; nothing was changed:\n%w", errors.Join(append(refused, errs...)...))
	}
	for _, sh := range shards {
		if err := prepareShard(ctx, sh, src.dbs, report); err != nil {
			errs = append(errs, err)
		}
	}
	if err := prepareTopics(ctx, cfg, report); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// openShard connects to a shard, learns its product and makes each table's statement for
// it. A table the shard cannot hold faithfully is an *UnfaithfulError.
func openShard(ctx context.Context, sc config.Shard, src *source) (*shard, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	db, err := mysqlx.Open(ctx, "shard "+sc.Name, sc.DSN)
	if err != nil {
		return nil, err
	}
	f, err := mysqlx.DetectFlavor(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", sc.Name, err)
	}
	sh := &shard{cfg: sc, db: db, products: Products{Source: src.flavor, Shard: f}}
	var refused []Refused
	for _, t := range src.tables {
		ddl, notes, bad := forShard(t, sh.products)
		refused = append(refused, bad...)
		sh.tables = append(sh.tables, shardTable{sourceTable: t, stmt: ddl, notes: notes})
	}
	if len(refused) > 0 {
		db.Close()
		return nil, &UnfaithfulError{Shard: sc.Name, Products: sh.products, Columns: refused}
	}
	return sh, nil
}

func readSource(ctx context.Context, cfg *config.Config) (*source, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	src, err := mysqlx.Open(ctx, "source", cfg.Source.DSN)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// SHOW CREATE TABLE quotes identifiers only with sql_quote_show_create, which a server
	// may have turned off: pin it on one connection.
	conn, err := src.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_quote_show_create = 1"); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	flavor, err := mysqlx.DetectFlavor(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}

	var dbs []sourceDB
	var tables []sourceTable
	var errs []error
	seen := map[string]bool{}
	for i, tc := range cfg.Tables {
		key := fmt.Sprintf("tables[%d] %s", i, tc.Name)
		t := sourceTable{name: tc.Name, db: tc.DB(), table: tc.TableName(), addVersion: tc.VersionColumn == ""}
		if !seen[t.db] {
			seen[t.db] = true
			d := sourceDB{name: t.db}
			err := conn.QueryRowContext(ctx, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", t.db).
				Scan(&d.charset, &d.collation)
			if errors.Is(err, sql.ErrNoRows) {
				errs = append(errs, fmt.Errorf("%s: database %s does not exist on the source", key, t.db))
				continue
			} else if err != nil {
				return nil, fmt.Errorf("source: read database %s: %w", t.db, err)
			}
			dbs = append(dbs, d)
		}
		def, err := schema.Load(ctx, src, t.db, t.table)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		t.def = def
		if t.addVersion && def.Column(shardmeta.VersionColumn) != nil {
			errs = append(errs, fmt.Errorf("%s: the source table already has a column %s, the bookkeeping column prepare adds: set version_column to it or rename it", key, shardmeta.VersionColumn))
			continue
		}
		if vc := tc.VersionColumn; vc != "" {
			if c := def.Column(vc); c == nil || (c.Kind != schema.KindInt && c.Kind != schema.KindUint) {
				errs = append(errs, fmt.Errorf("%s: version_column %q is not an integer column of the table (run cleave check)", key, vc))
				continue
			}
		}
		var name, create string
		if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+mysqlx.QuoteTable(t.db, t.table)).Scan(&name, &create); err != nil {
			return nil, fmt.Errorf("source: SHOW CREATE TABLE %s: %w", t.name, err)
		}
		var coll sql.NullString
		if err := conn.QueryRowContext(ctx, "SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", t.db, t.table).Scan(&coll); err != nil {
			return nil, fmt.Errorf("source: read the collation of %s: %w", t.name, err)
		}
		t.collation = coll.String
		if t.defaults, err = columnDefaults(ctx, conn, t.db, t.table); err != nil {
			return nil, fmt.Errorf("source: read the column defaults of %s: %w", t.name, err)
		}
		t.ddl, t.fks, err = ShardDDL(create, t.db, t.addVersion)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		tables = append(tables, t)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("the source tables cannot be prepared; nothing was changed:\n%w", errors.Join(errs...))
	}
	return &source{flavor: flavor, dbs: dbs, tables: tables}, nil
}

func prepareShard(ctx context.Context, s *shard, dbs []sourceDB, report func(Step)) error {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	db, sh := s.db, s.cfg

	var have int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)",
		shardmeta.Database, shardmeta.Offsets, shardmeta.AppliedDDL).Scan(&have); err != nil {
		return fmt.Errorf("%s: read bookkeeping tables: %w", sh.Name, err)
	}
	if err := shardmeta.Ensure(ctx, db); err != nil {
		return fmt.Errorf("%s: %w", sh.Name, err)
	}
	report(Step{Target: sh.Name, Object: "bookkeeping " + shardmeta.Database, Created: have < 2})

	for _, d := range dbs {
		step := Step{Target: sh.Name, Object: "database " + d.name}
		// The shard's equal of the source's default collation; a database default that
		// has none is left to the shard (tables state their own collations).
		want, ok := s.products.collation(d.collation)
		var charset, collation string
		err := db.QueryRowContext(ctx, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", d.name).
			Scan(&charset, &collation)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			stmt := fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s CHARACTER SET %s", mysqlx.QuoteIdent(d.name), d.charset)
			if ok {
				stmt += " COLLATE " + want
			} else {
				step.Note = fmt.Sprintf("the source's default collation %s has no equal on %s: the database keeps the shard's default for %s (tables state their own)", d.collation, s.products.Shard.Product(), d.charset)
			}
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: create database %s: %w", sh.Name, d.name, err)
			}
			step.Created = true
		case err != nil:
			return fmt.Errorf("%s: read database %s: %w", sh.Name, d.name, err)
		case charset != d.charset || !ok || collation != want:
			// Tables carry their own charset in their DDL: only tables created later
			// without one would differ.
			step.Note = fmt.Sprintf("its default is %s/%s, the source's %s/%s", charset, collation, d.charset, d.collation)
		}
		report(step)
	}

	var errs []error
	for _, t := range s.tables {
		if err := prepareTable(ctx, db, sh.Name, s.products, t, report); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func prepareTable(ctx context.Context, db *sql.DB, shard string, products Products, t shardTable, report func(Step)) error {
	step := Step{Target: shard, Object: "table " + t.name}
	existing, err := schema.Load(ctx, db, t.db, t.table)
	if errors.Is(err, schema.ErrNoTable) {
		if _, err := db.ExecContext(ctx, t.stmt); err != nil {
			return fmt.Errorf("%s: create table %s: %w", shard, t.name, err)
		}
		// What the shard made of the statement, checked as a second prepare would: a
		// server fills in what a definition leaves unsaid with its own defaults.
		created, err := schema.Load(ctx, db, t.db, t.table)
		if err != nil {
			return fmt.Errorf("%s: read table %s after creating it: %w", shard, t.name, err)
		}
		if diffs := Diff(t.def, created, t.addVersion, products); len(diffs) > 0 {
			return &DiffError{Shard: shard, Table: t.name, Diffs: diffs, Created: true}
		}
		step.Created = true
		notes := t.notes
		if len(t.fks) > 0 {
			notes = append([]string{fmt.Sprintf("foreign key %s left out: a parent row may live on another shard, and sinks apply rows per partition, not in constraint order", strings.Join(t.fks, ", "))}, notes...)
		}
		step.Note = strings.Join(notes, "; ")
		report(step)
		return nil
	}
	if existing == nil {
		return fmt.Errorf("%s: read table %s: %w", shard, t.name, err)
	}
	diffs := Diff(t.def, existing, t.addVersion, products)
	fks, err := foreignKeys(ctx, db, t.db, t.table)
	if err != nil {
		return fmt.Errorf("%s: read foreign keys of %s: %w", shard, t.name, err)
	}
	for _, fk := range fks {
		diffs = append(diffs, fmt.Sprintf("foreign key %s: on the shard (shard tables must not have foreign keys: a parent row may live on another shard)", fk))
	}
	if len(diffs) > 0 {
		return &DiffError{Shard: shard, Table: t.name, Diffs: diffs}
	}
	report(step)
	return nil
}

func columnDefaults(ctx context.Context, conn *sql.Conn, schemaName, table string) (map[string]string, error) {
	rows, err := conn.QueryContext(ctx, "SELECT COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_DEFAULT IS NOT NULL", schemaName, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			return nil, err
		}
		out[n] = d
	}
	return out, rows.Err()
}

func foreignKeys(ctx context.Context, db *sql.DB, schemaName, table string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? ORDER BY CONSTRAINT_NAME", schemaName, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func prepareTopics(ctx context.Context, cfg *config.Config, report func(Step)) error {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	topics := cfg.Topics()
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	md, err := kafkax.Client(cfg.Kafka.Brokers).Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("kafka: read topics from %v: %w", cfg.Kafka.Brokers, err)
	}
	existed := map[string]bool{}
	for _, t := range md.Topics {
		if t.Error == nil {
			existed[t.Name] = true
		}
	}
	if err := kafkax.EnsureTopics(ctx, cfg.Kafka.Brokers, topics); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	for _, t := range topics {
		report(Step{Target: "kafka", Object: "topic " + t.Name, Created: !existed[t.Name],
			Note: fmt.Sprintf("%s, replication factor %d", plural(t.Partitions, "partition"), t.ReplicationFactor)})
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
