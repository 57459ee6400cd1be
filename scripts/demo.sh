#!/usr/bin/env bash
# cleave's demo, start to finish on local services: a shop monolith of ~100k rows is split
# onto two shards while it keeps taking writes, a reconcile proves the shards match, three
# drifts injected behind cleave's back are caught, repaired and checked again.
#
# Usage: scripts/demo.sh            (or: make demo; DEMO_FLAVOR=mysql make demo for MySQL)
# Env:   DEMO_FLAVOR (mariadb, the default, or mysql: the source and both shards run it),
#        DEMO_USERS (default 15000, about 7 rows each), DEMO_RATE (row changes/s, 1000),
#        DEMO_LOAD_SECONDS (30)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

flavor=${DEMO_FLAVOR:-mariadb}
users=${DEMO_USERS:-15000}
rate=${DEMO_RATE:-1000}
load_seconds=${DEMO_LOAD_SECONDS:-30}
work=.local/demo
mkdir -p "$work" bin

bold=$'\033[1m'; dim=$'\033[2m'; green=$'\033[32m'; red=$'\033[31m'; reset=$'\033[0m'
if [[ ! -t 1 ]]; then bold=; dim=; green=; red=; reset=; fi
started=$(date +%s)
step() { printf '\n%s== %s%s  %s(+%ss)%s\n' "$bold" "$*" "$reset" "$dim" "$(($(date +%s) - started))" "$reset"; }
say() { printf '   %s\n' "$*"; }
die() { printf '%sdemo failed: %s%s\n' "$red" "$*" "$reset" >&2; exit 1; }

run_pid=
cleanup() {
	if [[ -n "$run_pid" ]] && kill -0 "$run_pid" 2>/dev/null; then
		kill -TERM "$run_pid" 2>/dev/null || true
		wait "$run_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

case $flavor in
mariadb)
	product=MariaDB
	src_port=${CLEAVE_SOURCE_PORT:-3307}; s0_port=${CLEAVE_SHARD0_PORT:-3308}; s1_port=${CLEAVE_SHARD1_PORT:-3309}
	;;
mysql)
	product=MySQL
	src_port=${CLEAVE_MYSQL_SOURCE_PORT:-3317}; s0_port=${CLEAVE_MYSQL_SHARD0_PORT:-3318}; s1_port=${CLEAVE_MYSQL_SHARD1_PORT:-3319}
	;;
*) die "DEMO_FLAVOR=$flavor: expected mariadb or mysql" ;;
esac
source_dsn="cleave:cleave@tcp(127.0.0.1:$src_port)/"

step "1/8  Local services: $product source ($src_port), two $product shards ($s0_port, $s1_port), Kafka (9092)"
CLEAVE_FLAVORS=$flavor scripts/services.sh up
eval "$(scripts/services.sh env)"
# The MariaDB client speaks to both products (caching_sha2_password included).
mysql_at() { mariadb --no-defaults -h127.0.0.1 -P"$1" -ucleave -pcleave --batch --skip-column-names "${@:2}"; }

step "2/8  Building cleave"
go build -o bin/cleave ./cmd/cleave
go build -o bin/cleave-loadgen ./cmd/cleave-loadgen
bin/cleave version

# A fresh run every time: the shop is dropped everywhere and the topics get a new prefix.
prefix="demo-$(date +%Y%m%d%H%M%S)"
cfg="$work/cleave.yaml"
sed -e "s/topic_prefix: demo/topic_prefix: $prefix/" -e "s/flavor: mariadb/flavor: $flavor/" \
	-e "s/127.0.0.1:3307/127.0.0.1:$src_port/" -e "s/127.0.0.1:3308/127.0.0.1:$s0_port/" \
	-e "s/127.0.0.1:3309/127.0.0.1:$s1_port/" configs/demo.yaml >"$cfg"
for p in "$src_port" "$s0_port" "$s1_port"; do mysql_at "$p" -e 'DROP DATABASE IF EXISTS shop'; done
rm -f "$work"/*.json "$work"/*.sql .cleave-reconcile.state.json

step "3/8  The monolith: shop.users, orders and order_items (which follow their user), countries"
bin/cleave-loadgen --dsn "$source_dsn" --database shop --seed-users "$users" --seed 42
for t in users orders order_items countries; do
	say "$(printf '%-12s %8s rows' "$t" "$(mysql_at "$src_port" -e "SELECT COUNT(*) FROM shop.$t")")"
done

step "4/8  Pre-flight check and shard preparation"
bin/cleave check --config "$cfg" | sed 's/^/   /'
bin/cleave prepare --config "$cfg" | sed 's/^/   /'

step "5/8  cleave run: backfill of the existing rows + every change streamed, while the shop takes ${rate} writes/s for ${load_seconds}s"
bin/cleave run --config "$cfg" --log-level warn >"$work/run.log" 2>&1 &
run_pid=$!
say "daemon pid $run_pid, logs in $work/run.log, metrics at http://127.0.0.1:9466/metrics"
bin/cleave-loadgen --dsn "$source_dsn" --database shop --rate "$rate" --duration "${load_seconds}s" >"$work/load.log" 2>&1 &
load_pid=$!

# progress prints one line from /status: backfill per table, capture lag, each shard's lag.
progress() {
	bin/cleave status --config "$cfg" --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
bf = " ".join("%s %d%%" % (b["table"].split(".")[-1], round(100 * b["progress_ratio"])) for b in s.get("backfill") or [])
cap = s.get("capture") or {}
shards = " ".join("%s lag %.1fs (%d waiting)" % (x["name"], x.get("lag_seconds") or 0, x.get("consumer_lag_messages") or 0) for x in s.get("shards") or [])
print("backfill: %s | capture lag %.1fs | %s" % (bf or "-", cap.get("lag_seconds") or 0, shards))
' 2>/dev/null || echo "(daemon starting)"
}
caught_up() {
	bin/cleave status --config "$cfg" --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
done = all(b["progress_ratio"] >= 1 for b in s.get("backfill") or [])
idle = all((x.get("consumer_lag_messages") or 0) == 0 for x in s.get("shards") or [])
sys.exit(0 if done and idle and s.get("shards") else 1)
' 2>/dev/null
}
while kill -0 "$load_pid" 2>/dev/null; do
	kill -0 "$run_pid" 2>/dev/null || { tail -20 "$work/run.log"; die "cleave run stopped (see $work/run.log)"; }
	say "$(progress)"
	sleep 5
done
wait "$load_pid" || die "the write load failed: $(tail -3 "$work/load.log")"
say "$(tail -1 "$work/load.log")"
for _ in $(seq 1 120); do
	caught_up && break
	kill -0 "$run_pid" 2>/dev/null || die "cleave run stopped (see $work/run.log)"
	sleep 1
done
caught_up || die "shards did not catch up within 2 minutes: $(progress)"
say "caught up: $(progress)"

step "6/8  Reconcile: the source against the union of the shards"
bin/cleave reconcile --config "$cfg" --no-progress --state "$work/reconcile.state.json" --alert-state "$work/alerts.json" || die "reconcile did not report the shards consistent (exit $?)"
printf '   %sno drift%s\n' "$green" "$reset"

step "7/8  Three drifts injected straight into shard1, behind cleave's back"
user=$(mysql_at "$s1_port" -e 'SELECT id FROM shop.users ORDER BY id LIMIT 1')
order=$(mysql_at "$s1_port" -e 'SELECT id FROM shop.orders ORDER BY id LIMIT 1')
item=$(mysql_at "$s1_port" -e 'SELECT CONCAT(order_id, ",", line, ",", user_id) FROM shop.order_items ORDER BY order_id LIMIT 1')
mysql_at "$s1_port" -e "DELETE FROM shop.users WHERE id = $user"
say "deleted users.id=$user"
mysql_at "$s1_port" -e "UPDATE shop.orders SET total = total + 0.01 WHERE id = $order"
say "changed orders.id=$order: total + 0.01"
IFS=, read -r item_order item_line item_user <<<"$item"
mysql_at "$s1_port" -e "INSERT INTO shop.order_items (order_id, line, user_id, sku, qty, price) VALUES ($item_order, 99, $item_user, 'NOT-IN-SOURCE', 1, 9.99)"
say "inserted order_items ($item_order, 99), which the source does not have"
set +e
bin/cleave reconcile --config "$cfg" --no-progress --state "$work/reconcile.state.json" --alert-state "$work/alerts.json" --json "$work/drift.json" --repair-sql "$work/repair.sql"
code=$?
set -e
[[ $code == 1 ]] || die "reconcile should exit 1 on drift, it exited $code"
printf '   %sdrift found, exit 1%s; the rows (from %s):\n' "$red" "$reset" "$work/drift.json"
python3 - "$work/drift.json" <<'PY'
import json, sys
for t in json.load(open(sys.argv[1]))["tables"]:
    for r in t.get("drift") or []:
        cols = ("  columns: " + ", ".join(r["columns"])) if r.get("columns") else ""
        print("   %-9s %-18s on %-7s key %s%s" % (r["kind"], t["table"], r["shard"], json.dumps(r["key"]), cols))
PY
say "repair SQL (dry run) written to $work/repair.sql"

step "8/8  Repair through cleave's version-checked writes, then a final reconcile"
bin/cleave reconcile --config "$cfg" --no-progress --state "$work/reconcile.state.json" --alert-state "$work/alerts.json" --repair || die "repair did not leave the shards consistent"
bin/cleave reconcile --config "$cfg" --no-progress --state "$work/reconcile.state.json" --alert-state "$work/alerts.json" || die "the final reconcile found drift"
printf '   %sno drift after repair%s\n' "$green" "$reset"

kill -TERM "$run_pid"
wait "$run_pid" && say "cleave run stopped cleanly on SIGTERM (exit 0)"
run_pid=
printf '\n%sDemo done in %ss.%s\n' "$bold" "$(($(date +%s) - started))" "$reset"
cat <<TXT
   Explore further:
     bin/cleave run --config $cfg &          # the daemon again, where it stopped
     curl -s http://127.0.0.1:9466/metrics | grep ^cleave_
     bin/cleave status --config $cfg
   Stop the local services:  scripts/services.sh down
TXT
