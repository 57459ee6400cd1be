#!/usr/bin/env bash
# Local services for cleave's tests and demo, all on loopback, all data under .local/:
#   source        MariaDB with binlog ROW/FULL/FULL metadata and GTID   127.0.0.1:3307
#   shard0        MariaDB                                              127.0.0.1:3308
#   shard1        MariaDB                                              127.0.0.1:3309
#   shard2 …      MariaDB, with CLEAVE_SHARDS above 2 (up to 16)         127.0.0.1:3340+N
#   mysql-source  MySQL 9.7 with binlog ROW/FULL/FULL metadata, GTID   127.0.0.1:3317
#   mysql-shard0  MySQL 9.7                                            127.0.0.1:3318
#   mysql-shard1  MySQL 9.7                                            127.0.0.1:3319
#   kafka         Apache Kafka (KRaft, single node) on the machine's JDK 127.0.0.1:9092
#
# usage: scripts/services.sh up|down|status|env
#        scripts/services.sh start|stop NAME...     (NAME: one of the services above)
#        scripts/services.sh kafka-jars             (resolve the Kafka jars, print their dir)
#        scripts/services.sh mysql-root             (build the MySQL root, print its dir)
#
# MySQL comes from Debian sid's mysql-server-core, which needs a newer libc than this
# machine's: it runs in a root of its own (debootstrap, built once under .local/mysql-root
# and reused), started with chroot; its data folders live inside that root.
#
# up/start are idempotent: a service that is already running (pid file, live process with
# our data dir on its command line, answering) is left alone; they return once every
# service answers, or fail naming the service and showing its log. down/stop end only the
# processes this script started (by their pid files).
#
# Environment: CLEAVE_LOCAL_DIR (default <repo>/.local), CLEAVE_SOURCE_PORT (3307),
# CLEAVE_SHARD0_PORT (3308), CLEAVE_SHARD1_PORT (3309), CLEAVE_KAFKA_PORT (9092),
# CLEAVE_KAFKA_CONTROLLER_PORT (9093), CLEAVE_MYSQL_SOURCE_PORT (3317),
# CLEAVE_MYSQL_SHARD0_PORT (3318), CLEAVE_MYSQL_SHARD1_PORT (3319), CLEAVE_MYSQL_ROOT
# (default <local>/mysql-root), CLEAVE_FLAVORS (which servers `up` starts: "mariadb mysql",
# the default, or one of them), CLEAVE_SHARDS (how many MariaDB shards `up` starts, 2 to 16,
# default 2: shardN for N >= 2 listens on 3340+N unless CLEAVE_SHARDN_PORT says otherwise,
# each a server of its own with its own data folder), CLEAVE_SERVICES_TIMEOUT (seconds, 90).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/ensure.sh
source "$ROOT/scripts/lib/ensure.sh"

LOCAL=${CLEAVE_LOCAL_DIR:-$ROOT/.local}
mkdir -p "$LOCAL"
LOCAL=$(cd "$LOCAL" && pwd)
TIMEOUT=${CLEAVE_SERVICES_TIMEOUT:-90}
STOP_TIMEOUT=60

SOURCE_PORT=${CLEAVE_SOURCE_PORT:-3307}
SHARD0_PORT=${CLEAVE_SHARD0_PORT:-3308}
SHARD1_PORT=${CLEAVE_SHARD1_PORT:-3309}
KAFKA_PORT=${CLEAVE_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${CLEAVE_KAFKA_CONTROLLER_PORT:-9093}
MYSQL_SOURCE_PORT=${CLEAVE_MYSQL_SOURCE_PORT:-3317}
MYSQL_SHARD0_PORT=${CLEAVE_MYSQL_SHARD0_PORT:-3318}
MYSQL_SHARD1_PORT=${CLEAVE_MYSQL_SHARD1_PORT:-3319}
MYSQL_ROOT=${CLEAVE_MYSQL_ROOT:-$LOCAL/mysql-root}
# The Debian suite and packages the MySQL root is built from. A change here rebuilds it.
MYSQL_SUITE=sid
MYSQL_PACKAGES=(mysql-server-core mysql-client-core)
MYSQL_MIRROR=${CLEAVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
USER_NAME=cleave
USER_PASS=cleave

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")
KAFKA_CACHE=$LOCAL/cache/kafka-$KAFKA_VERSION
KAFKA_JARS=$KAFKA_CACHE/jars
KAFKA_DIR=$LOCAL/kafka
# server.properties of every local broker, shared with testenv's private brokers.
KAFKA_TEMPLATE=$ROOT/scripts/kafka/server.properties.tmpl

SHARDS=${CLEAVE_SHARDS:-2}
[[ $SHARDS =~ ^[0-9]+$ ]] && ((SHARDS >= 2 && SHARDS <= 16)) ||
	{ echo "services: error: CLEAVE_SHARDS=$SHARDS: give a number of MariaDB shards from 2 to 16" >&2; exit 1; }
# MARIADB_SHARDS are the MariaDB shards `up` starts: shard0 and shard1, and shard2 … with
# CLEAVE_SHARDS above 2.
MARIADB_SHARDS=()
for ((i = 0; i < SHARDS; i++)); do MARIADB_SHARDS+=("shard$i"); done

ALL=(source "${MARIADB_SHARDS[@]}" mysql-source mysql-shard0 mysql-shard1 kafka)

# up_services lists what `up` starts: every service of the flavors in CLEAVE_FLAVORS, and Kafka.
up_services() {
	local flavors=${CLEAVE_FLAVORS:-mariadb mysql} f
	local -a out=()
	for f in $flavors; do
		case $f in
		mariadb) out+=(source "${MARIADB_SHARDS[@]}") ;;
		mysql) out+=(mysql-source mysql-shard0 mysql-shard1) ;;
		*) die "CLEAVE_FLAVORS: unknown flavor '$f' (expected mariadb and/or mysql)" ;;
		esac
	done
	out+=(kafka)
	echo "${out[@]}"
}

# is_mysql NAME: the service is one of the MySQL servers.
is_mysql() { [[ $1 == mysql-* ]]; }

log() { echo "services: $*" >&2; }
die() {
	echo "services: error: $*" >&2
	exit 1
}

port_of() {
	case $1 in
	source) echo "$SOURCE_PORT" ;;
	shard0) echo "$SHARD0_PORT" ;;
	shard1) echo "$SHARD1_PORT" ;;
	mysql-source) echo "$MYSQL_SOURCE_PORT" ;;
	mysql-shard0) echo "$MYSQL_SHARD0_PORT" ;;
	mysql-shard1) echo "$MYSQL_SHARD1_PORT" ;;
	kafka) echo "$KAFKA_PORT" ;;
	shard[0-9] | shard1[0-5])
		local var=CLEAVE_${1^^}_PORT
		echo "${!var:-$((3340 + ${1#shard}))}"
		;;
	*) die "unknown service '$1' (expected one of: ${ALL[*]})" ;;
	esac
}

server_id_of() {
	case $1 in
	source) echo 1 ;;
	shard0) echo 2 ;;
	shard1) echo 3 ;;
	mysql-source) echo 11 ;;
	mysql-shard0) echo 12 ;;
	mysql-shard1) echo 13 ;;
	shard*) echo $((20 + ${1#shard})) ;;
	esac
}

# A MySQL server's folder inside the root: /srv/NAME there, MYSQL_ROOT/srv/NAME here.
mysql_inner_dir() { echo "/srv/$1"; }

svc_dir() {
	if is_mysql "$1"; then
		echo "$MYSQL_ROOT$(mysql_inner_dir "$1")"
	else
		echo "$LOCAL/$1"
	fi
}
pid_file() { echo "$LOCAL/run/$1.pid"; }

log_file() {
	case $1 in
	kafka) echo "$KAFKA_DIR/server.log" ;;
	*) echo "$(svc_dir "$1")/error.log" ;;
	esac
}

# A unix socket path must fit in 108 bytes; a deep checkout falls back to /tmp.
socket_of() {
	local s
	s="$(svc_dir "$1")/mysqld.sock"
	if is_mysql "$1"; then
		echo "$s"
		return
	fi
	if ((${#s} > 100)); then
		s="/tmp/cleave-$(echo -n "$LOCAL" | md5sum | cut -c1-10)-$1.sock"
	fi
	echo "$s"
}

# The string that must appear on a live process's command line for its pid file to be
# trusted (guards against a recycled pid after a reboot or crash).
marker_of() {
	case $1 in
	kafka) echo "$KAFKA_DIR/server.properties" ;;
	mysql-*) echo "--defaults-file=$(mysql_inner_dir "$1")/my.cnf" ;;
	*) echo "--datadir=$(svc_dir "$1")/data" ;;
	esac
}

# running_pid NAME prints the pid of our live process for NAME, or fails; a stale pid file
# is removed.
running_pid() {
	local f pid
	f=$(pid_file "$1")
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$(marker_of "$1")"; then
		echo "$pid"
		return 0
	fi
	log "$1: removing stale pid file $f (pid $pid is not running)"
	rm -f "$f"
	return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# fail_if_port_taken NAME PORT: a port answered before we started our process.
fail_if_port_taken() {
	local who=""
	if port_open "$2"; then
		if command -v ss >/dev/null 2>&1; then
			who=$(ss -ltnpH "sport = :$2" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1)
		fi
		die "$1: port 127.0.0.1:$2 is already in use by another process${who:+ ($who)}; stop it, or choose another port (e.g. CLEAVE_$(echo "$1" | tr '[:lower:]' '[:upper:]')_PORT=...)"
	fi
}

show_log_tail() {
	local f
	f=$(log_file "$1")
	if [[ -f $f ]]; then
		echo "---- last lines of $f ----" >&2
		tail -n 30 "$f" >&2
		echo "----" >&2
	fi
	if [[ $1 == kafka && -s $KAFKA_DIR/stdout.log ]]; then
		echo "---- last lines of $KAFKA_DIR/stdout.log ----" >&2
		tail -n 15 "$KAFKA_DIR/stdout.log" >&2
		echo "----" >&2
	fi
}

fail_service() {
	echo "services: error: $1: $2 (log: $(log_file "$1"))" >&2
	show_log_tail "$1"
	exit 1
}

# spawn PIDFILE LOGFILE CMD... starts CMD in its own session, detached from this shell and
# from the lock descriptor, and records its pid.
spawn() {
	local pidf=$1 out=$2
	shift 2
	mkdir -p "$(dirname "$pidf")"
	# setsid without -f does not fork here (a background child is not a group leader), so
	# $! is the server's own pid.
	setsid nohup "$@" </dev/null >>"$out" 2>&1 9>&- &
	echo $! >"$pidf"
}

# ---------------------------------------------------------------------------- MariaDB

ensure_mariadb_installed() {
	ensure_tool mariadbd
	command -v mariadbd >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
}

mariadb_launch() {
	local name=$1 dir port sock
	dir=$(svc_dir "$name")
	port=$(port_of "$name")
	sock=$(socket_of "$name")
	fail_if_port_taken "$name" "$port"
	# A private tmpdir: nothing another program does in /tmp can reach the server's
	# temporary tables.
	mkdir -p "$dir/tmp"
	# A data dir made before the .installed marker existed counts when its install succeeded.
	if [[ ! -f $dir/data/.installed && -d $dir/data/mysql ]] && ! grep -q ERROR "$dir/install.log" 2>/dev/null; then
		touch "$dir/data/.installed"
	fi
	if [[ ! -f $dir/data/.installed ]]; then
		log "$name: initialising data dir $dir/data"
		local try
		for try in 1 2; do
			rm -rf "$dir/data"
			if mariadb-install-db --no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" --user=root \
				--auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1; then
				touch "$dir/data/.installed"
				break
			fi
			if ((try == 2)); then
				tail -n 20 "$dir/install.log" >&2
				die "$name: mariadb-install-db failed twice (log: $dir/install.log)"
			fi
			log "$name: mariadb-install-db failed, retrying once (log: $dir/install.log)"
		done
	fi
	rm -f "$sock"
	# Shards keep a binlog too: after cut-over they are primaries, and a binlog makes each
	# apply transaction a two-phase commit between InnoDB and the binlog, as in production.
	spawn "$(pid_file "$name")" "$dir/stdout.log" mariadbd --no-defaults --user=root \
		--datadir="$dir/data" --tmpdir="$dir/tmp" --port="$port" --bind-address=127.0.0.1 \
		--socket="$sock" --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" \
		--server-id="$(server_id_of "$name")" \
		--log-bin="$name-bin" --binlog-format=ROW --binlog-row-image=FULL \
		--binlog-row-metadata=FULL --gtid-strict-mode=ON --log-slave-updates \
		--max-binlog-size=64M --binlog-expire-logs-seconds=86400 --sync-binlog=0 \
		--innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 \
		--skip-name-resolve --max-connections=500 --max-allowed-packet=64M \
		--character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci
	echo "$port" >"$LOCAL/run/$name.port"
	log "$name: started mariadbd pid $(<"$(pid_file "$name")") on 127.0.0.1:$port"
}

# mariadb_ready NAME waits until the server answers on its socket, creates the cleave user
# (idempotent, kept out of the binlog), and checks that cleave can log in over TCP.
mariadb_ready() {
	local name=$1 port sock deadline pid
	port=$(port_of "$name")
	sock=$(socket_of "$name")
	deadline=$((SECONDS + TIMEOUT))
	while :; do
		pid=$(running_pid "$name") || fail_service "$name" "mariadbd exited during start-up"
		if mariadb-admin --no-defaults --socket="$sock" -uroot --connect-timeout=2 ping >/dev/null 2>&1; then
			break
		fi
		((SECONDS < deadline)) || fail_service "$name" "mariadbd (pid $pid) did not answer on $sock within ${TIMEOUT}s"
		sleep 0.2
	done
	if ! mariadb --no-defaults --socket="$sock" -uroot --batch -e "
		SET SESSION sql_log_bin = 0;
		CREATE USER IF NOT EXISTS '$USER_NAME'@'%' IDENTIFIED BY '$USER_PASS';
		GRANT ALL PRIVILEGES ON *.* TO '$USER_NAME'@'%' WITH GRANT OPTION;" 2>"$(svc_dir "$name")/grant.err"; then
		cat "$(svc_dir "$name")/grant.err" >&2
		fail_service "$name" "could not create user $USER_NAME through $sock"
	fi
	if ! mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -u"$USER_NAME" -p"$USER_PASS" \
		--connect-timeout=5 --batch -e 'SELECT 1' >/dev/null 2>"$(svc_dir "$name")/grant.err"; then
		cat "$(svc_dir "$name")/grant.err" >&2
		fail_service "$name" "user $USER_NAME cannot log in over TCP on 127.0.0.1:$port"
	fi
}

# ---------------------------------------------------------------------------- MySQL

# mysql_root builds the root MySQL runs in, once: a minimal Debian sid (debootstrap) with
# mysql-server-core and mysql-client-core, about 70 s and 560 MB. The marker records what it
# was built from, so a change of suite or packages builds it again.
mysql_root() {
	local want="$MYSQL_SUITE ${MYSQL_PACKAGES[*]}"
	if [[ -f $MYSQL_ROOT/.complete && $(<"$MYSQL_ROOT/.complete") == "$want" ]]; then
		return 0
	fi
	[[ $(id -u) -eq 0 ]] || die "mysql: building the MySQL root ($MYSQL_ROOT) needs root (debootstrap and chroot)"
	ensure_cmd debootstrap debootstrap
	command -v debootstrap >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
	local tmp=$MYSQL_ROOT.tmp t0=$SECONDS
	log "mysql: building the MySQL root in $MYSQL_ROOT (debootstrap $MYSQL_SUITE, then ${MYSQL_PACKAGES[*]}; about a minute, once)"
	rm -rf "$tmp"
	mkdir -p "$(dirname "$MYSQL_ROOT")"
	if ! debootstrap --variant=minbase "$MYSQL_SUITE" "$tmp" "$MYSQL_MIRROR" >"$LOCAL/mysql-root.log" 2>&1; then
		tail -n 30 "$LOCAL/mysql-root.log" >&2
		rm -rf "$tmp"
		die "mysql: debootstrap of Debian $MYSQL_SUITE failed (log: $LOCAL/mysql-root.log)"
	fi
	if ! chroot "$tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${MYSQL_PACKAGES[@]}" >>"$LOCAL/mysql-root.log" 2>&1; then
		tail -n 30 "$LOCAL/mysql-root.log" >&2
		rm -rf "$tmp"
		die "mysql: installing ${MYSQL_PACKAGES[*]} in the MySQL root failed (log: $LOCAL/mysql-root.log)"
	fi
	chroot "$tmp" /bin/sh -c 'id mysql >/dev/null 2>&1 || useradd -r mysql' >>"$LOCAL/mysql-root.log" 2>&1
	chroot "$tmp" apt-get clean >>"$LOCAL/mysql-root.log" 2>&1 || true
	# Keep the data folders of a previous root (a rebuild after a package change).
	if [[ -d $MYSQL_ROOT/srv ]]; then
		rm -rf "$tmp/srv"
		mv "$MYSQL_ROOT/srv" "$tmp/srv"
	fi
	rm -rf "$MYSQL_ROOT"
	mv "$tmp" "$MYSQL_ROOT"
	echo "$want" >"$MYSQL_ROOT/.complete"
	log "mysql: root ready ($(chroot "$MYSQL_ROOT" mysqld --version 2>/dev/null | sed 's/^.*Ver //'), $((SECONDS - t0))s)"
}

# in_root CMD... runs CMD inside the MySQL root.
in_root() { chroot "$MYSQL_ROOT" "$@"; }

mysql_write_config() {
	local name=$1 inner dir
	inner=$(mysql_inner_dir "$name")
	dir=$(svc_dir "$name")
	# Every server keeps a binlog with GTIDs, as production primaries do (shards included:
	# after cut-over they are primaries). The collation stays MySQL's default
	# (utf8mb4_0900_ai_ci), as a real monolith's would.
	cat >"$dir/my.cnf" <<EOF
# Generated by scripts/services.sh; edits are overwritten on the next start.
[mysqld]
user=mysql
datadir=$inner/data
tmpdir=$inner/tmp
socket=$inner/mysqld.sock
pid-file=$inner/mysqld.pid
log-error=$inner/error.log
port=$(port_of "$name")
bind-address=127.0.0.1
mysqlx=OFF
secure_file_priv=NULL
skip_name_resolve=ON
server_id=$(server_id_of "$name")
log_bin=$name-bin
binlog_format=ROW
binlog_row_image=FULL
binlog_row_metadata=FULL
gtid_mode=ON
enforce_gtid_consistency=ON
max_binlog_size=64M
binlog_expire_logs_seconds=86400
sync_binlog=0
innodb_buffer_pool_size=256M
innodb_flush_log_at_trx_commit=2
max_connections=500
max_allowed_packet=64M
performance_schema=OFF
EOF
}

mysql_launch() {
	local name=$1 dir inner port
	dir=$(svc_dir "$name")
	inner=$(mysql_inner_dir "$name")
	port=$(port_of "$name")
	fail_if_port_taken "$name" "$port"
	mysql_root
	mkdir -p "$dir/tmp"
	mysql_write_config "$name"
	in_root chown -R mysql:mysql "$inner"
	if [[ ! -f $dir/data/.installed ]]; then
		log "$name: initialising data dir $dir/data"
		rm -rf "$dir/data"
		if ! in_root mysqld --defaults-file="$inner/my.cnf" --initialize-insecure >"$dir/install.log" 2>&1; then
			tail -n 20 "$dir/error.log" >&2 || true
			die "$name: mysqld --initialize-insecure failed (log: $dir/error.log)"
		fi
		touch "$dir/data/.installed"
	fi
	rm -f "$dir/mysqld.sock"
	spawn "$(pid_file "$name")" "$dir/stdout.log" chroot "$MYSQL_ROOT" mysqld --defaults-file="$inner/my.cnf"
	echo "$port" >"$LOCAL/run/$name.port"
	log "$name: started mysqld pid $(<"$(pid_file "$name")") on 127.0.0.1:$port"
}

# mysql_ready NAME waits until the server answers on its socket, creates the cleave user
# (idempotent, kept out of the binlog), and checks that cleave can log in over TCP
# (caching_sha2_password: MySQL 9 has no mysql_native_password).
mysql_ready() {
	local name=$1 port inner deadline pid
	port=$(port_of "$name")
	inner=$(mysql_inner_dir "$name")
	deadline=$((SECONDS + TIMEOUT))
	while :; do
		pid=$(running_pid "$name") || fail_service "$name" "mysqld exited during start-up"
		if in_root mysqladmin --no-defaults --socket="$inner/mysqld.sock" -uroot --connect-timeout=2 ping >/dev/null 2>&1; then
			break
		fi
		((SECONDS < deadline)) || fail_service "$name" "mysqld (pid $pid) did not answer on $inner/mysqld.sock within ${TIMEOUT}s"
		sleep 0.2
	done
	if ! in_root mysql --no-defaults --socket="$inner/mysqld.sock" -uroot --batch -e "
		SET SESSION sql_log_bin = 0;
		CREATE USER IF NOT EXISTS '$USER_NAME'@'%' IDENTIFIED BY '$USER_PASS';
		GRANT ALL PRIVILEGES ON *.* TO '$USER_NAME'@'%' WITH GRANT OPTION;" 2>"$(svc_dir "$name")/grant.err"; then
		cat "$(svc_dir "$name")/grant.err" >&2
		fail_service "$name" "could not create user $USER_NAME through $inner/mysqld.sock"
	fi
	if ! in_root mysql --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -u"$USER_NAME" -p"$USER_PASS" \
		--connect-timeout=5 --batch -e 'SELECT 1' >/dev/null 2>"$(svc_dir "$name")/grant.err"; then
		cat "$(svc_dir "$name")/grant.err" >&2
		fail_service "$name" "user $USER_NAME cannot log in over TCP on 127.0.0.1:$port"
	fi
}

# ---------------------------------------------------------------------------- Kafka

# kafka_jars resolves the broker's jars from Maven Central into the cache once per
# version of scripts/kafka/pom.xml (the cache records the pom's checksum).
kafka_jars() {
	local sum
	sum=$(sha256sum "$ROOT/scripts/kafka/pom.xml" | cut -d' ' -f1)
	if [[ -f $KAFKA_CACHE/.complete && $(<"$KAFKA_CACHE/.complete") == "$sum" ]]; then
		return 0
	fi
	ensure_tool java
	ensure_tool mvn
	log "kafka: resolving Apache Kafka $KAFKA_VERSION jars with Maven into $KAFKA_JARS"
	local tmp=$KAFKA_CACHE.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp"
	if ! (cd "$ROOT/scripts/kafka" && mvn -q -B dependency:copy-dependencies \
		-DoutputDirectory="$tmp/jars" -DincludeScope=runtime >"$tmp/mvn.log" 2>&1); then
		tail -n 40 "$tmp/mvn.log" >&2
		rm -rf "$tmp"
		die "kafka: Maven could not resolve the Kafka jars (pom: scripts/kafka/pom.xml)"
	fi
	rm -rf "$KAFKA_CACHE"
	mv "$tmp" "$KAFKA_CACHE"
	echo "$sum" >"$KAFKA_CACHE/.complete"
}

kafka_java() {
	if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
		echo "$JAVA_HOME/bin/java"
	else
		command -v java
	fi
}

# kafka_properties NAME=VALUE...: $KAFKA_TEMPLATE with its "##" notes dropped and each
# @NAME@ replaced by VALUE, as internal/testenv/kafka.go renders it for private brokers. A
# placeholder left without a value is an error.
kafka_properties() {
	local line kv
	while IFS= read -r line || [[ -n $line ]]; do
		[[ $line == '##'* ]] && continue
		for kv in "$@"; do
			# Quoted, so that an & in a value (a path) is taken literally.
			line=${line//"@${kv%%=*}@"/"${kv#*=}"}
		done
		if [[ $line =~ @[A-Z_]+@ ]]; then
			die "kafka: $KAFKA_TEMPLATE: no value for ${BASH_REMATCH[0]}"
		fi
		printf '%s\n' "$line"
	done <"$KAFKA_TEMPLATE"
}

# kafka_write_config writes the shared broker's config. Its sizing serves the whole suite
# and the benchmarks; the template says how it differs from a private broker's.
kafka_write_config() {
	mkdir -p "$KAFKA_DIR/data"
	kafka_properties PORT="$KAFKA_PORT" CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" LOG_DIR="$KAFKA_DIR/data" \
		OFFSETS_PARTITIONS=10 TXN_PARTITIONS=4 SEGMENT_BYTES=67108864 NETWORK_THREADS=3 IO_THREADS=4 \
		>"$KAFKA_DIR/server.properties"
	cat >"$KAFKA_DIR/log4j2.properties" <<EOF
# Kafka 4.x logs through log4j2; everything goes to files under $KAFKA_DIR.
status = warn
appender.server.type = RollingFile
appender.server.name = SERVER
appender.server.fileName = $KAFKA_DIR/server.log
appender.server.filePattern = $KAFKA_DIR/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = SERVER
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

kafka_launch() {
	fail_if_port_taken kafka "$KAFKA_PORT"
	fail_if_port_taken kafka-controller "$KAFKA_CONTROLLER_PORT"
	kafka_jars
	local java
	java=$(kafka_java)
	kafka_write_config
	local jvm=(-Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR"
		-Djava.awt.headless=true -cp "$KAFKA_JARS/*")
	# A standalone-formatted log dir records the controller's endpoint: it cannot move.
	if [[ -f $KAFKA_DIR/data/meta.properties && -f $KAFKA_DIR/controller.port ]] &&
		[[ $(<"$KAFKA_DIR/controller.port") != "$KAFKA_CONTROLLER_PORT" ]]; then
		die "kafka: $KAFKA_DIR/data was formatted for controller port $(<"$KAFKA_DIR/controller.port"), not $KAFKA_CONTROLLER_PORT; set CLEAVE_KAFKA_CONTROLLER_PORT=$(<"$KAFKA_DIR/controller.port") or remove $KAFKA_DIR/data (its topics are lost)"
	fi
	if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
		local id
		id=$("$java" "${jvm[@]}" kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/format.log" | tail -n 1)
		[[ -n $id ]] || die "kafka: could not generate a cluster id (log: $KAFKA_DIR/format.log)"
		log "kafka: formatting storage $KAFKA_DIR/data (cluster id $id)"
		if ! "$java" "${jvm[@]}" kafka.tools.StorageTool format --standalone --cluster-id="$id" \
			-c "$KAFKA_DIR/server.properties" >>"$KAFKA_DIR/format.log" 2>&1; then
			tail -n 20 "$KAFKA_DIR/format.log" >&2
			die "kafka: storage format failed (log: $KAFKA_DIR/format.log)"
		fi
		echo "$KAFKA_CONTROLLER_PORT" >"$KAFKA_DIR/controller.port"
	fi
	: >"$KAFKA_DIR/stdout.log"
	spawn "$(pid_file kafka)" "$KAFKA_DIR/stdout.log" "$java" -Xms256m -Xmx768m -XX:+UseG1GC \
		-XX:MaxGCPauseMillis=20 "${jvm[@]}" kafka.Kafka "$KAFKA_DIR/server.properties"
	echo "$KAFKA_PORT" >"$LOCAL/run/kafka.port"
	log "kafka: started broker pid $(<"$(pid_file kafka)") on 127.0.0.1:$KAFKA_PORT"
}

kafka_ready() {
	ensure_tool kcat
	local deadline pid
	deadline=$((SECONDS + TIMEOUT))
	while :; do
		pid=$(running_pid kafka) || fail_service kafka "the broker exited during start-up"
		if kcat -L -b "127.0.0.1:$KAFKA_PORT" -m 2 2>/dev/null | grep -q 'broker 1 at'; then
			return 0
		fi
		((SECONDS < deadline)) || fail_service kafka "broker (pid $pid) did not answer a metadata request on 127.0.0.1:$KAFKA_PORT within ${TIMEOUT}s"
		sleep 0.3
	done
}

# ---------------------------------------------------------------------------- commands

# launch NAME starts NAME unless it is already running; prints nothing when it was.
launch() {
	if running_pid "$1" >/dev/null; then
		return 0
	fi
	case $1 in
	kafka) kafka_launch ;;
	mysql-*) mysql_launch "$1" ;;
	*) mariadb_launch "$1" ;;
	esac
}

ready() {
	case $1 in
	kafka) kafka_ready ;;
	mysql-*) mysql_ready "$1" ;;
	*) mariadb_ready "$1" ;;
	esac
}

start_services() {
	local name t0=$SECONDS
	for name in "$@"; do
		port_of "$name" >/dev/null
	done
	for name in "$@"; do
		case $name in
		kafka) ensure_tool kcat ;;
		mysql-*) ensure_mariadb_installed && mysql_root ;;
		*) ensure_mariadb_installed ;;
		esac
	done
	for name in "$@"; do
		launch "$name"
	done
	for name in "$@"; do
		ready "$name"
	done
	log "up: ${*} answering ($((SECONDS - t0))s)"
}

# stop_services NAME... sends TERM to every named running service, then waits for each,
# sending KILL to what is still there after STOP_TIMEOUT.
stop_services() {
	local name pid deadline
	local -a names=() pids=()
	for name in "$@"; do
		port_of "$name" >/dev/null
	done
	for name in "$@"; do
		if pid=$(running_pid "$name"); then
			log "$name: stopping pid $pid"
			kill -TERM "$pid" 2>/dev/null || true
			names+=("$name")
			pids+=("$pid")
		fi
	done
	deadline=$((SECONDS + STOP_TIMEOUT))
	local i
	for i in "${!pids[@]}"; do
		name=${names[$i]}
		pid=${pids[$i]}
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "$name: pid $pid still running after ${STOP_TIMEOUT}s, sending KILL"
				kill -KILL "$pid" 2>/dev/null || true
				sleep 0.5
				break
			fi
			sleep 0.2
		done
		# Anything left in the service's own session (it was started with setsid).
		kill -KILL -- "-$pid" 2>/dev/null || true
		rm -f "$(pid_file "$name")" "$LOCAL/run/$name.port"
	done
}

status() {
	local name pid state port
	printf '%-13s %-5s %-16s %s\n' SERVICE STATE ADDRESS PID
	for name in "${ALL[@]}"; do
		port=$(port_of "$name")
		if pid=$(running_pid "$name" 2>/dev/null); then
			state=up
			# The port it was started with, which may differ from this shell's variables.
			if [[ -f $LOCAL/run/$name.port ]]; then
				port=$(<"$LOCAL/run/$name.port")
			fi
		else
			state=down
			pid=-
		fi
		printf '%-13s %-5s %-16s %s\n' "$name" "$state" "127.0.0.1:$port" "$pid"
	done
}

# print_env prints the addresses for tests. The names carry TEST_ so that they never act
# as cleave's own configuration overrides (CLEAVE_SOURCE_DSN overrides source.dsn).
print_env() {
	local q
	q() { printf 'export %s=%q\n' "$1" "$2"; }
	q CLEAVE_TEST_SOURCE_DSN "$USER_NAME:$USER_PASS@tcp(127.0.0.1:$SOURCE_PORT)/"
	q CLEAVE_TEST_SHARD0_DSN "$USER_NAME:$USER_PASS@tcp(127.0.0.1:$SHARD0_PORT)/"
	q CLEAVE_TEST_SHARD1_DSN "$USER_NAME:$USER_PASS@tcp(127.0.0.1:$SHARD1_PORT)/"
	local n
	for n in "${MARIADB_SHARDS[@]:2}"; do
		q "CLEAVE_TEST_${n^^}_DSN" "$USER_NAME:$USER_PASS@tcp(127.0.0.1:$(port_of "$n"))/"
	done
	q CLEAVE_TEST_KAFKA_BROKERS "127.0.0.1:$KAFKA_PORT"
	q CLEAVE_TEST_SOURCE_SOCKET "$(socket_of source)"
	q CLEAVE_TEST_SHARD0_SOCKET "$(socket_of shard0)"
	q CLEAVE_TEST_SHARD1_SOCKET "$(socket_of shard1)"
	q CLEAVE_TEST_MYSQL_SOURCE_DSN "$USER_NAME:$USER_PASS@tcp(127.0.0.1:$MYSQL_SOURCE_PORT)/"
	q CLEAVE_TEST_MYSQL_SHARD0_DSN "$USER_NAME:$USER_PASS@tcp(127.0.0.1:$MYSQL_SHARD0_PORT)/"
	q CLEAVE_TEST_MYSQL_SHARD1_DSN "$USER_NAME:$USER_PASS@tcp(127.0.0.1:$MYSQL_SHARD1_PORT)/"
	q CLEAVE_MYSQL_ROOT "$MYSQL_ROOT"
	q CLEAVE_LOCAL_DIR "$LOCAL"
	q CLEAVE_KAFKA_JARS "$KAFKA_JARS"
}

# Serialise concurrent invocations (make test and a test helper resolving jars at the same
# time); the servers are spawned with descriptor 9 closed so they never hold the lock.
lock() {
	exec 9>"$LOCAL/.services.lock"
	if ! flock -w 600 9; then
		die "another scripts/services.sh has held $LOCAL/.services.lock for 10 minutes"
	fi
}

usage() {
	sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

main() {
	local cmd=${1:-}
	[[ -n $cmd ]] || usage
	shift
	case $cmd in
	up)
		lock
		# shellcheck disable=SC2046
		start_services $(up_services)
		;;
	down)
		lock
		# Also the extra shards a run with a larger CLEAVE_SHARDS left running.
		extra=()
		for f in "$LOCAL"/run/shard*.pid; do
			[[ -e $f ]] || continue
			n=$(basename "$f" .pid)
			[[ " ${ALL[*]} " == *" $n "* ]] || extra+=("$n")
		done
		stop_services "${ALL[@]}" "${extra[@]}"
		;;
	start)
		[[ $# -gt 0 ]] || die "start: name a service (${ALL[*]})"
		lock
		start_services "$@"
		;;
	stop)
		[[ $# -gt 0 ]] || die "stop: name a service (${ALL[*]})"
		lock
		stop_services "$@"
		;;
	status) status ;;
	env) print_env ;;
	kafka-jars)
		lock
		kafka_jars
		echo "$KAFKA_JARS"
		;;
	mysql-root)
		lock
		mysql_root
		echo "$MYSQL_ROOT"
		;;
	-h | --help | help) usage ;;
	*)
		echo "services: unknown command '$cmd'" >&2
		usage
		;;
	esac
}

main "$@"
