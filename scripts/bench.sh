#!/usr/bin/env bash
# Benchmarks cleave on this machine and prints one table of figures measured in one run,
# each beside the reference it is compared with, on the same data in the same run:
#   capture catch-up           beside go-mysql's bare decode        (capture/BenchmarkCatchUp)
#   sink apply                 beside a bare batched-upsert loader  (sink/BenchmarkBacklogApply)
#   end-to-end lag p50/p99     at 2,000 and 5,000 row changes/s     (cleave-bench lag)
#   cut-over write pause       journaled, and p50/p99/max as an application that follows the
#                              switch saw it, at 1,000 and 5,000 row changes/s, with a check
#                              that nothing it acknowledged was lost (cleave-bench cutover)
#   backfill rows/s            cleave run copying a 500k-row table onto the shards (cleave-bench
#                              backfill), and the backfill package's own (backfill/BenchmarkBackfill)
#   reconcile rows/s           beside pt-table-checksum, a bare scan (reconcile/BenchmarkReconcile1M)
#   peak RSS of cleave run, of cleave capture and of Debezium's Kafka Connect
#   capture catch-up           beside Debezium's MariaDB connector in Kafka Connect
#                              standalone on the same 1M-row-change backlog (cleave-bench peer)
#   capture catch-up and reconcile again with a MySQL 9.7 source and shards
#                              (CLEAVE_BENCH_FLAVOR=mysql), beside the MariaDB rows
#
# usage: scripts/bench.sh
#
# It starts the local services (scripts/services.sh up), installs what it needs when it is
# missing (percona-toolkit, a JDK and Maven from Debian; the Kafka Connect and Debezium jars
# of scripts/debezium/pom.xml from Maven Central, cached under .local/cache), removes every
# database, topic and process it made, writes bench/results/latest.md and latest.json (and
# a dated copy of each; bench/results is not in git) and prints the table. About 10-15
# minutes on 2 cores. Logs and the raw benchmark output stay in .local/bench/ until the
# next run.
#
# Environment (all optional): BENCH_LAG_RATES (2000,5000), BENCH_LAG_DURATION (30s),
# BENCH_CUTOVER_RATES (1000,5000),
# BENCH_PEER_ROWS (1000000), BENCH_BACKFILL_ROWS (500000), BENCH_CAPTURE_ROUNDS (1),
# BENCH_SINK_ROUNDS (1), GO (go).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/ensure.sh
source "$ROOT/scripts/lib/ensure.sh"

GO=${GO:-go}
LAG_RATES=${BENCH_LAG_RATES:-2000,5000}
LAG_DURATION=${BENCH_LAG_DURATION:-30s}
CUTOVER_RATES=${BENCH_CUTOVER_RATES:-1000,5000}
PEER_ROWS=${BENCH_PEER_ROWS:-1000000}
BACKFILL_ROWS=${BENCH_BACKFILL_ROWS:-500000}
SINK_ROUNDS=${BENCH_SINK_ROUNDS:-1}
CAPTURE_ROUNDS=${BENCH_CAPTURE_ROUNDS:-1}
RESULTS=$ROOT/bench/results
BENCH=$ROOT/bin/cleave-bench
CLEAVE=$ROOT/bin/cleave
started=$SECONDS

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# debezium_jars resolves scripts/debezium/pom.xml's jars once per version of the pom and
# prints their folder.
debezium_jars() {
	local pom=$ROOT/scripts/debezium/pom.xml sum dir tmp
	sum=$(sha256sum "$pom" | cut -c1-16)
	dir=$CLEAVE_LOCAL_DIR/cache/debezium-$sum
	if [[ ! -f $dir/.complete ]]; then
		log "resolving the Kafka Connect and Debezium jars with Maven into $dir/jars"
		tmp=$dir.tmp.$$
		rm -rf "$tmp"
		mkdir -p "$tmp"
		if ! (cd "$ROOT/scripts/debezium" && mvn -q -B dependency:copy-dependencies \
			-DoutputDirectory="$tmp/jars" -DincludeScope=runtime >"$tmp/mvn.log" 2>&1); then
			tail -n 40 "$tmp/mvn.log" >&2
			rm -rf "$tmp"
			return 1
		fi
		rm -rf "$dir"
		mv "$tmp" "$dir"
		touch "$dir/.complete"
	fi
	echo "$dir/jars"
}

# pom_property FILE NAME prints a <properties> value of a pom.
pom_property() { sed -n "s:.*<$2>\(.*\)</$2>.*:\1:p" "$1" | head -n 1; }

# missing KEY TITLE REASON writes a figure that could not be measured.
missing() {
	"$BENCH" missing --key "$1" --title "$2" --reason "$3" --how "Not measured in this run: $3." --out "$WORK/$1.json"
}

# gobench KIND PACKAGE PATTERN TIMEOUT [TEST-BINARY-FLAGS...] runs one package benchmark
# once and turns its output into KIND's figure; a failure is recorded in the table.
gobench() {
	local kind=$1 pkg=$2 pattern=$3 timeout=$4 t0=$SECONDS
	shift 4
	log "$kind: go test -run '^\$' -bench '$pattern' -benchtime 1x $pkg $*"
	if ! "$GO" test -run '^$' -bench "$pattern" -benchtime 1x -count 1 -timeout "$timeout" "$pkg" "$@" >"$WORK/$kind.txt" 2>&1; then
		log "$kind: the benchmark failed; last lines of $WORK/$kind.txt:"
		tail -n 15 "$WORK/$kind.txt" >&2
	fi
	"$BENCH" gotest --kind "$kind" --in "$WORK/$kind.txt" --out "$WORK/$kind.json"
	log "$kind: $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------- setup

load_start=$(loadavg)
scripts/services.sh up
eval "$(scripts/services.sh env)"
WORK=$CLEAVE_LOCAL_DIR/bench
rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS"

ensure_tool pt-table-checksum
ensure_tool java
ensure_tool mvn
JARS=$(debezium_jars) || die "Maven could not resolve the Debezium jars (pom: scripts/debezium/pom.xml)"

log "building bin/cleave and bin/cleave-bench"
"$GO" build -o "$CLEAVE" ./cmd/cleave
"$GO" build -o "$BENCH" ./cmd/cleave-bench

KAFKA_VERSION=$(pom_property scripts/kafka/pom.xml kafka.version)
CONNECT_VERSION=$(pom_property scripts/debezium/pom.xml kafka.version)
DEBEZIUM_VERSION=$(pom_property scripts/debezium/pom.xml debezium.version)

# ---------------------------------------------------------------------------- figures

# Lag first: it is the figure most sensitive to what else the machine is doing.
t0=$SECONDS
log "lag: cleave run under the loadgen at $LAG_RATES row changes/s offered, $LAG_DURATION each"
if ! "$BENCH" lag --cleave "$CLEAVE" --rates "$LAG_RATES" --duration "$LAG_DURATION" --work "$WORK" --out "$WORK/lag.json" 2>"$WORK/lag.log"; then
	cat "$WORK/lag.log" >&2
	missing lag "end-to-end lag of cleave run" "failed: $(tail -n 1 "$WORK/lag.log")"
else
	cat "$WORK/lag.log" >&2
fi
log "lag: $((SECONDS - t0))s"

# The cut-over's write pause next: it is a latency too, and a fresh deployment per rate.
t0=$SECONDS
log "cutover: a cut-over under an application that follows it, at $CUTOVER_RATES row changes/s offered"
if ! "$BENCH" cutover --cleave "$CLEAVE" --rates "$CUTOVER_RATES" --work "$WORK" --out "$WORK/cutover.json" 2>"$WORK/cutover.log"; then
	cat "$WORK/cutover.log" >&2
	missing cutover "write pause of a cut-over" "failed: $(tail -n 1 "$WORK/cutover.log")"
else
	cat "$WORK/cutover.log" >&2
fi
log "cutover: $((SECONDS - t0))s"

t0=$SECONDS
log "peer: cleave capture and Debezium $DEBEZIUM_VERSION catching up with one backlog of $PEER_ROWS row changes"
if ! "$BENCH" peer --cleave "$CLEAVE" --java "$(command -v java)" --jars "$JARS" --debezium-version "$DEBEZIUM_VERSION" \
	--connect-version "$CONNECT_VERSION" --rows "$PEER_ROWS" --work "$WORK" --out "$WORK/peer.json" 2>"$WORK/peer.log"; then
	cat "$WORK/peer.log" >&2
	missing peer "capture catch-up beside Debezium" "failed: $(tail -n 1 "$WORK/peer.log")"
else
	cat "$WORK/peer.log" >&2
fi
log "peer: $((SECONDS - t0))s"

# One round each: the packages' own defaults take medians over several rounds, which this
# run cannot afford within its quarter of an hour on 2 cores.
CLEAVE_BENCH_ROUNDS=$CAPTURE_ROUNDS gobench capture ./capture/ '^BenchmarkCatchUp$' 10m

sink_flags=()
if grep -q '"sink.rounds"' sink/bench_test.go 2>/dev/null; then
	sink_flags+=("-sink.rounds=$SINK_ROUNDS")
fi
gobench sink ./sink/ '^BenchmarkBacklogApply$' 10m "${sink_flags[@]}"

t0=$SECONDS
log "backfill: cleave run copying a table of $BACKFILL_ROWS rows that exists before it starts"
if ! "$BENCH" backfill --cleave "$CLEAVE" --rows "$BACKFILL_ROWS" --work "$WORK" --out "$WORK/backfill.json" 2>"$WORK/backfill.log"; then
	cat "$WORK/backfill.log" >&2
	missing backfill "backfill rows/s" "failed: $(tail -n 1 "$WORK/backfill.log")"
else
	cat "$WORK/backfill.log" >&2
fi
log "backfill: $((SECONDS - t0))s"
# The backfill package's own benchmark, once it has one.
if grep -qs '^func Benchmark' backfill/*_test.go; then
	gobench backfill_package ./backfill/ . 10m
fi

gobench reconcile ./reconcile/ '^BenchmarkReconcile1M$' 10m

# The same two on MySQL 9.7: a MySQL source for capture, a MySQL source and MySQL shards
# for the checker.
CLEAVE_BENCH_FLAVOR=mysql CLEAVE_BENCH_ROUNDS=$CAPTURE_ROUNDS gobench capture_mysql ./capture/ '^BenchmarkCatchUp$' 10m
CLEAVE_BENCH_FLAVOR=mysql gobench reconcile_mysql ./reconcile/ '^BenchmarkReconcile1M$' 10m

# ---------------------------------------------------------------------------- report

versions=(
	--version "cleave=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+uncommitted changes')"
	--version "Go=$("$GO" env GOVERSION)"
	--version "MariaDB=$(mariadb --no-defaults --socket="$CLEAVE_TEST_SOURCE_SOCKET" -uroot -N -e 'SELECT VERSION()')"
	--version "MySQL=$(chroot "$CLEAVE_MYSQL_ROOT" mysql --no-defaults --socket=/srv/mysql-source/mysqld.sock -uroot -N -e 'SELECT VERSION()')"
	--version "Kafka=$KAFKA_VERSION"
	--version "Debezium MariaDB connector=$DEBEZIUM_VERSION (Kafka Connect $CONNECT_VERSION)"
	--version "Java=$(java -version 2>&1 | head -n 1 | sed 's/.*version "\([^"]*\)".*/\1/')"
	--version "pt-table-checksum=$(pt-table-checksum --version 2>/dev/null | awk '{print $2}')"
)
figures=()
for f in lag cutover peer capture capture_mysql sink backfill backfill_package reconcile reconcile_mysql; do
	[[ -f $WORK/$f.json ]] && figures+=("$WORK/$f.json")
done
stamp=$(date -u +%Y-%m-%d)
"$BENCH" report "${versions[@]}" --load "start $load_start, end $(loadavg)" --seconds "$((SECONDS - started))" \
	--md "$RESULTS/latest.md" --json "$RESULTS/latest.json" "${figures[@]}"
cp "$RESULTS/latest.md" "$RESULTS/$stamp.md"
cp "$RESULTS/latest.json" "$RESULTS/$stamp.json"
log "wrote $RESULTS/latest.md and latest.json (and $stamp.md, $stamp.json) in $((SECONDS - started))s"
