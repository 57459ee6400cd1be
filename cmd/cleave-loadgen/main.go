// Command cleave-loadgen creates, seeds and writes to the sample shop monolith that cleave's
// demo and benchmarks move: `cleave-loadgen --dsn ... --database shop --seed-users 20000`
// creates and fills it, `--rate 1000 --duration 30s` then writes to it like an application.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/mysqlx"
)

func main() {
	dsn := flag.String("dsn", os.Getenv("CLEAVE_TEST_SOURCE_DSN"), "source DSN (default $CLEAVE_TEST_SOURCE_DSN)")
	database := flag.String("database", "shop", "database of the shop tables")
	seedUsers := flag.Int("seed-users", 0, "create the schema and seed this many users (about 7 rows each) before any load")
	rateFlag := flag.Int("rate", 1000, "row changes per second of the write load; 0 = as fast as possible")
	duration := flag.Duration("duration", 0, "how long the write load runs; 0 = no load")
	workers := flag.Int("workers", 4, "concurrent writers")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()
	if *dsn == "" {
		fmt.Fprintln(os.Stderr, "cleave-loadgen: --dsn is required (user:password@tcp(host:port)/)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dsn, *database, *seedUsers, *rateFlag, *duration, *workers, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "cleave-loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dsn, database string, seedUsers, rate int, duration time.Duration, workers int, seed uint64) error {
	db, err := mysqlx.Open(ctx, "source", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if seedUsers > 0 {
		start := time.Now()
		if err := loadgen.CreateSchema(ctx, db, database); err != nil {
			return err
		}
		n, err := loadgen.Seed(ctx, db, database, seedUsers, seed)
		if err != nil {
			return err
		}
		fmt.Printf("seeded %s with %d rows in %.1fs\n", database, n, time.Since(start).Seconds())
	}
	if duration <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	l := &loadgen.Load{DB: db, Database: database, Rate: rate, Workers: workers, Seed: seed}
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := l.Run(ctx); done <- err }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			s := l.Stats()
			fmt.Printf("load done: %d row changes in %.1fs (%d inserted, %d updated, %d deleted, %d moved to another user)\n",
				s.Rows(), time.Since(start).Seconds(), s.Inserts, s.Updates, s.Deletes, s.Moves)
			return err
		case <-tick.C:
			s := l.Stats()
			fmt.Printf("load: %d row changes, %.0f/s\n", s.Rows(), float64(s.Rows())/time.Since(start).Seconds())
		}
	}
}
