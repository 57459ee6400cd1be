// Package bench measures cleave on the local services for scripts/bench.sh and renders one
// run's figures as a Markdown table and JSON: end-to-end lag of `cleave run` under the
// loadgen write load, catch-up of `cleave capture` beside Debezium's MariaDB connector in
// Kafka Connect on the same binlog backlog, and the figures of the packages' own
// `go test -bench` benchmarks, parsed from their output. It drives the cleave binary as
// an operator would (a config file, a subprocess, signals) and never reaches into the
// running parts; it must never leave its databases, topics or processes behind.
package bench
