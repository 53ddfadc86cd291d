# bench/lib.sh: start and stop local pg_raft instances on 127.0.0.1, for
# the demo (main job) and the benchmarks.  Source it; run as a non-root
# user with PostgreSQL 15's binaries on PATH.
#
#   instance_init NAME PORT [EXTRA_CONF]  initdb + settings + start (plain)
#   node_init NAME PORT [EXTRA_CONF]   the same with pg_raft + extension
#   node_conninfo PORT                 conninfo the members use
#   node_sql PORT SQL                  run SQL, print unaligned output
#   cluster_form [--no-copy] PORT...   create on the first, join the others
#                                      (--no-copy: they hold its data already)
#   wait_for_leader PORT...            print the leader's port once all agree

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_demo}"

node_dir() { echo "$RAFT_BASE/node_$1"; }

# wal_level and output plugins every pg_raft member needs; the benchmarks
# give them to plain instances too
LOGICAL_CONF="wal_level = logical
# this PostgreSQL 15 build lists the output plugins a slot may use
output_plugin_libraries = 'pgoutput, test_decoding, pg_raft'"

instance_init()
{
	local name="$1" port="$2" extra="${3:-}" dir
	dir="$(node_dir "$port")"
	rm -rf "$dir" "$dir.log"
	mkdir -p "$dir"
	"$PG_BIN/initdb" -D "$dir" -A trust -U postgres --no-sync > "$dir.initdb.log" 2>&1
	cat >> "$dir/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RAFT_BASE'
cluster_name = '$name'
$extra
CONF
	"$PG_BIN/pg_ctl" -D "$dir" -l "$dir.log" -w start > /dev/null
}

node_init()
{
	instance_init "$1" "$2" "shared_preload_libraries = 'pg_raft'
$LOGICAL_CONF
${3:-}"
	node_sql "$2" "CREATE EXTENSION IF NOT EXISTS pg_raft" > /dev/null
}

node_conninfo() { echo "host=127.0.0.1 port=$1 dbname=postgres user=postgres"; }

node_sql()
{
	"$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$RAFT_BASE" -p "$1" \
		-U postgres -d postgres -c "$2"
}

node_stop() { "$PG_BIN/pg_ctl" -D "$(node_dir "$1")" -m fast -w stop > /dev/null 2>&1 || true; }
node_start() { "$PG_BIN/pg_ctl" -D "$(node_dir "$1")" -l "$(node_dir "$1").log" -w start > /dev/null; }
node_pid() { head -n 1 "$(node_dir "$1")/postmaster.pid"; }

# the processes of the instance on PORT: its postmaster and its children
instance_pids() { local pm; pm="$(node_pid "$1")"; echo "$pm" $(pgrep -P "$pm" || true); }

# cpu_ticks PID...: "PID TICKS NAME" per live process (user + system time)
cpu_ticks()
{
	local pid
	for pid in "$@"; do
		[ -r "/proc/$pid/stat" ] || continue
		# fields after the command's closing parenthesis: utime is 12th, stime 13th
		awk -v pid="$pid" -v name="$(tr '\0' ' ' < "/proc/$pid/cmdline" | sed 's/ *$//')" \
			'{ sub(/^.*\) /, ""); print pid, $12 + $13, name }' "/proc/$pid/stat"
	done
}

# instance_cpu_ticks PORT: the CPU time, in clock ticks, that the instance
# on PORT has used so far: its live processes', and that of the children
# that ended (the postmaster's cutime and cstime, fields 14 and 15 after
# the parenthesis), so that backends ending within a run are counted
instance_cpu_ticks()
{
	local pm
	pm="$(node_pid "$1")"
	{
		cpu_ticks $(instance_pids "$1") | awk '{ print $2 }'
		awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$pm/stat"
	} | awk '{ t += $1 } END { print t + 0 }'
}

cluster_form()
{
	local copy="" first port
	if [ "$1" = --no-copy ]; then
		copy=", copy_data => false"
		shift
	fi
	first="$1"
	shift
	PGOPTIONS="-c client_min_messages=warning" node_sql "$first" "SELECT raft.create_cluster('node_$first', '$(node_conninfo "$first")')" > /dev/null
	for port in "$@"; do
		PGOPTIONS="-c client_min_messages=warning" node_sql "$port" "SELECT raft.join_cluster('node_$port', '$(node_conninfo "$port")', '$(node_conninfo "$first")'$copy)" > /dev/null
	done
}

wait_for_leader()
{
	local port leader i
	for i in $(seq 1 300); do
		leader=""
		for port in "$@"; do
			if [ "$(node_sql "$port" "SELECT role = 'leader' AND writable FROM raft.status" 2>/dev/null)" = t ]; then
				leader="$port"
			fi
		done
		if [ -n "$leader" ]; then
			echo "$leader"
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# For the benchmarks that compare replication set-ups (replication.sh,
# commit.sh).  They set all_ports (every port they may start) and, while a
# background sampler runs, sampler (its PID); bench_traps makes the exit
# stop both.
#
#   fail MESSAGE                       print it and exit 1
#   now_ms                             the wall clock in milliseconds
#   wait_until WHAT TIMEOUT_S PORT SQL poll SQL on PORT every 0.1 s until t
#   wait_caught_up WHAT LEADER PORT    until the member on PORT applied the
#                                      leader's commit index, not copying
#   same_data LEADER TABLES PORT...    once every member on PORT... applied
#                                      the leader's commit index, the
#                                      raft.table_checksum of each of TABLES
#                                      (SQL, a regclass[]) is equal on all
#   pgbench_init PORT                  pgbench -i at scale $scale (default 10)
#   standby_init NAME PORT PRIMARY     a streaming standby of port PRIMARY
#   physical_init PRIMARY S1 S2        a primary with pgbench data and two
#                                      standbys s1, s2, ANY 1 (s1, s2) synchronous
#   raft_pgbench_init PORT...          pg_raft members, each given the same
#                                      pgbench data, formed without copies

sampler=""
bench_cleanup()
{
	[ -n "$sampler" ] && kill "$sampler" 2> /dev/null
	for port in "${all_ports[@]}"; do node_stop "$port"; done
}

bench_traps()
{
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	trap 'echo "$0: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
}

fail() { echo "$0: $*" >&2; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

wait_until()
{
	local what="$1" deadline=$(( $(now_ms) + $2 * 1000 )) port="$3" sql="$4"
	until [ "$(node_sql "$port" "$sql" 2> /dev/null)" = t ]; do
		[ "$(now_ms)" -lt "$deadline" ] || fail "timed out after $2 s waiting for $what"
		sleep 0.1
	done
}

wait_caught_up()
{
	local what="$1" leader="$2" port="$3" deadline=$((SECONDS + 600)) commit
	until commit=$(node_sql "$leader" "SELECT commit_index FROM raft.status" 2> /dev/null) &&
		[ "$(node_sql "$port" "SELECT NOT resyncing AND applied_index >= $commit FROM raft.status" 2> /dev/null)" = t ]; do
		[ $SECONDS -lt $deadline ] || fail "$what: node_$port did not catch up within 600 s"
		sleep 0.1
	done
}

same_data()
{
	local leader="$1" tables="$2" index port sums=""
	shift 2
	index=$(node_sql "$leader" "SELECT commit_index FROM raft.status")
	for port in "$@"; do
		[ "$(node_sql "$port" "SELECT raft.wait_for_index($index, '60s')")" = t ] ||
			fail "node_$port did not apply index $index within 60 s"
		sums+="$(node_sql "$port" "SELECT string_agg(raft.table_checksum(t), ' ') FROM unnest($tables) t")"$'\n'
	done
	[ "$(printf '%s' "$sums" | sort -u | wc -l)" -eq 1 ] || fail "the members hold different data"
	echo "checksums of every table are equal on the $# nodes"
}

pgbench_init()
{
	"$PG_BIN/pgbench" -i -q -s "${scale:-10}" -h "$RAFT_BASE" -p "$1" -U postgres postgres \
		> "$(node_dir "$1").pgbench_init.log" 2>&1 \
		|| fail "pgbench -i on port $1 failed, see $(node_dir "$1").pgbench_init.log"
}

standby_init()
{
	local name="$1" port="$2" primary="$3" dir
	dir="$(node_dir "$port")"
	rm -rf "$dir" "$dir.log"
	"$PG_BIN/pg_basebackup" -D "$dir" -R -X stream -c fast \
		-d "host=127.0.0.1 port=$primary user=postgres application_name=$name" \
		> "$dir.basebackup.log" 2>&1 || fail "pg_basebackup for $name failed, see $dir.basebackup.log"
	printf "port = %s\ncluster_name = '%s'\n" "$port" "$name" >> "$dir/postgresql.conf"
	node_start "$port"
}

raft_pgbench_init()
{
	local port
	for port in "$@"; do
		node_init "node_$port" "$port"
		pgbench_init "$port"
	done
	cluster_form --no-copy "$@"
}

physical_init()
{
	local primary="$1"
	instance_init primary "$primary" "$LOGICAL_CONF"
	pgbench_init "$primary"
	standby_init s1 "$2" "$primary"
	standby_init s2 "$3" "$primary"
	node_sql "$primary" "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (s1, s2)'"
	node_sql "$primary" "SELECT pg_reload_conf()" > /dev/null
	wait_until "s1 and s2 to stream as quorum standbys" 60 "$primary" \
		"SELECT count(*) = 2 FROM pg_stat_replication WHERE application_name IN ('s1', 's2') AND sync_state = 'quorum'"
}
