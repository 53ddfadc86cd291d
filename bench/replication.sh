#!/usr/bin/env bash
#
# bench/replication.sh [SECONDS]: what replication costs, pg_raft beside
# PostgreSQL's own, on 127.0.0.1.
#
# Every instance is PostgreSQL 15 with wal_level = logical and otherwise
# the defaults; pgbench (TPC-B like, scale SCALE = 10) runs with
# -n -c 2 -j 2 over the unix socket, each run SECONDS long (default 30).
# One after the other, each set of instances stopped before the next:
#
#   1. TPS and average latency on one plain instance (no pg_raft).
#   2. The same on a primary with physical streaming replication to two
#      standbys (pg_basebackup -R, application_name s1 and s2),
#      synchronous_standby_names = 'ANY 1 (s1, s2)', synchronous_commit = on.
#   3. pg_raft, 3 nodes in synchronous mode (synchronous_standby_names =
#      'pg_raft', as raft.create_cluster sets it).  Every node runs
#      pgbench -i before the cluster forms (its data is deterministic), and
#      the others join with copy_data => false.  On this cluster:
#      - catch-up: one follower is stopped (pg_ctl stop -m fast), pgbench
#        -T SECONDS runs on the leader, the follower restarts, and its
#        raft.status.applied_index is sampled every 10 ms until it reaches
#        the leader's commit_index; figure: pgbench transactions applied
#        per second, from the restart and from the first entry applied
#        (the leader reaches the follower only after its reconnection
#        backoff, up to 0.5 s).  This runs first, on a young log: the leader
#        compacts entries an absent member still needs once its log passes
#        16K entries or 16 MB, and the follower could not catch up then;
#      - TPS and latency on the leader, then every follower applies the
#        leader's commit_index and the four pgbench tables'
#        raft.table_checksum must be equal on all nodes;
#      - replay lag: under pgbench -R 200 -T SECONDS on the leader, psql
#        samples every 100 ms (\watch 0.1) the replay_lag of raft.nodes
#        WHERE NOT is_leader (a value per follower per sample); p50/p99/max.
#   4. Native logical replication, publisher (CREATE PUBLICATION p FOR ALL
#      TABLES) and subscriber (same pgbench -i data, copy_data = false):
#      - replay lag as in 3, from pg_stat_replication.replay_lag on the
#        publisher;
#      - catch-up: ALTER SUBSCRIPTION s DISABLE, pgbench -t on the publisher
#        with as many transactions as pg_raft's catch-up had, ENABLE (at
#        least wal_retrieve_retry_interval after the DISABLE: the launcher
#        starts workers no more often), and the time from ENABLE until the
#        slot's confirmed_flush_lsn (sampled every 10 ms) reaches the
#        publisher's LSN after the workload; the subscriber then must hold
#        as many pgbench_history rows as the publisher.
#
# Prints each figure as it is measured, then a summary table.  A step that
# fails prints what failed and the script exits non-zero; a checksum
# difference is reported and makes the exit status 1.  Run as a normal
# user with pg_raft installed, e.g. runuser -u pgraft -- bash
# bench/replication.sh 30; works under RAFT_BASE (default
# /tmp/pg_raft_bench_repl), and the exit trap stops every instance.

set -Eeuo pipefail
seconds="${1:-30}"
scale="${SCALE:-10}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_repl}"
source "$tree/bench/lib.sh"
CATCHUP_TIMEOUT=600    # seconds a catch-up may take before the script gives up

# ports under the kernel's ephemeral range (32768-60999 by default), which
# the outgoing connections of a busy machine may hold just when a server starts
plain=25350
primary=25351
standbys=(25352 25353)
raft=(25361 25362 25363)
publisher=25371
subscriber=25372
all_ports=("$plain" "$primary" "${standbys[@]}" "${raft[@]}" "$publisher" "$subscriber")
pgbench_tables=(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history)

if [ "$(id -u)" = 0 ]; then
	echo "$0: run as a normal user (PostgreSQL refuses to run as root)" >&2
	exit 2
fi

bench_traps

# pgbench_run PORT NAME ARGS...: pgbench -n -c 2 -j 2 ARGS on PORT; its
# output goes to $RAFT_BASE/NAME.pgbench.log, whose name it prints.
pgbench_run()
{
	local port="$1" log="$RAFT_BASE/$2.pgbench.log"
	shift 2
	"$PG_BIN/pgbench" -n -c 2 -j 2 -h "$RAFT_BASE" -p "$port" -U postgres "$@" postgres > "$log" 2>&1 \
		|| fail "pgbench $* on port $port failed, see $log"
	echo "$log"
}

# from a pgbench log: TPS, average latency in ms, transactions processed
log_tps() { awk '/^tps = / { printf "%.1f", $3 }' "$1"; }
log_latency() { awk '/^latency average = / { printf "%.2f", $4 }' "$1"; }
log_transactions() { awk -F': ' '/actually processed/ { split($2, n, "/"); print n[1] }' "$1"; }

declare -A tps latency
# measure_tps KEY LABEL PORT: pgbench -T SECONDS on PORT
measure_tps()
{
	local log
	log=$(pgbench_run "$3" "$1" -T "$seconds")
	tps[$1]=$(log_tps "$log")
	latency[$1]=$(log_latency "$log")
	printf '%s: %s TPS, average latency %s ms\n' "$2" "${tps[$1]}" "${latency[$1]}"
}

# sample_start PORT SQL INTERVAL FILE: in the background, run SQL (one
# column) on PORT every INTERVAL seconds (psql \watch); FILE gets a line
# "ms|value" per row, ms from the server's clock.  sample_stop ends it.
sample_start()
{
	"$PG_BIN/psql" -X -q -A -t -h "$RAFT_BASE" -p "$1" -U postgres -d postgres \
		<<< "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint, v FROM ($2) AS s(v) \\watch $3" \
		> "$4" 2>&1 &
	sampler=$!
}

sample_stop()
{
	kill "$sampler" 2> /dev/null || true
	wait "$sampler" || true
	sampler=""
}

# sample_time FILE MIN: the time of the first sample whose value is at
# least MIN (MIN "moved": of the last sample before the value first grows);
# fails if none
sample_time()
{
	awk -F'|' -v min="$2" '
		NF == 2 && $1 ~ /^[0-9]+$/ && $2 != "" {
			if (first == "") first = $2
			if (min == "moved" && $2 > first) { print last; found = 1; exit }
			if (min != "moved" && $2 >= min) { print $1; found = 1; exit }
			last = $1
		}
		END { exit !found }' "$1"
}

# sample_wait FILE MIN WHAT [CHECK...]: wait, CATCHUP_TIMEOUT at most, for
# sample_time FILE MIN and print it; the command CHECK runs every round and
# may fail the wait
sample_wait()
{
	local file="$1" min="$2" what="$3" deadline=$(( $(now_ms) + CATCHUP_TIMEOUT * 1000 ))
	shift 3
	until sample_time "$file" "$min"; do
		"${@:-true}"
		[ "$(now_ms)" -lt "$deadline" ] || fail "timed out after $CATCHUP_TIMEOUT s waiting for $what"
		sleep 0.1
	done
}

declare -A lag
# measure_lag KEY LABEL PORT SQL: SQL on PORT every 100 ms (one lag in ms
# per row) while pgbench -R 200 -T SECONDS runs there; lag[KEY] is
# p50/p99/max over every value, and the TPS pgbench achieved.
measure_lag()
{
	local key="$1" port="$3" samples="$RAFT_BASE/$1.lag_ms" log done_tps stats
	sample_start "$port" "$4" 0.1 "$samples"
	log=$(pgbench_run "$port" "$key.rate200" -R 200 -T "$seconds")
	sample_stop
	done_tps=$(log_tps "$log")
	stats=$(awk -F'|' 'NF == 2 && $2 ~ /^[0-9.]+$/ { print $2 }' "$samples" | sort -n | awk '
		{ v[NR] = $1 }
		END { if (NR) printf "%.1f/%.1f/%.1f ms over %d values", v[int((NR + 1) * 0.50)], v[int(NR * 0.99 + 0.5)], v[NR], NR }')
	[ -n "$stats" ] || fail "no replay lag sampled for $2, see $samples"
	echo "$2: replay lag under pgbench -R 200 ($done_tps TPS done): p50/p99/max $stats"
	lag[$key]="${stats%% ms over*} (at $done_tps TPS)"
}

declare -A catchup
# catchup_result KEY LABEL TRANSACTIONS MS: record and print a catch-up
catchup_result()
{
	local rate secs
	rate=$(awk -v n="$3" -v ms="$4" 'BEGIN { printf "%.0f", n * 1000 / ms }')
	secs=$(awk -v ms="$4" 'BEGIN { printf "%.1f", ms / 1000 }')
	echo "$2: applied $3 transactions in $secs s: $rate transactions/s"
	catchup[$1]="$rate ($3 in $secs s)"
}

# ---------------------------------------------------------------- 1. plain
run_plain()
{
	instance_init plain "$plain" "$LOGICAL_CONF"
	pgbench_init "$plain"
	measure_tps plain "no replication" "$plain"
	node_stop "$plain"
}

# ---------------------------------------------------------------- 2. physical
run_physical()
{
	physical_init "$primary" "${standbys[@]}"
	measure_tps physical "physical sync, ANY 1 of 2 standbys" "$primary"
	for port in "$primary" "${standbys[@]}"; do node_stop "$port"; done
}

# ---------------------------------------------------------------- 3. pg_raft
raft_commit_index() { node_sql "$leader" "SELECT commit_index FROM raft.status"; }

# raft_catchup: stop a follower, pgbench -T SECONDS on the leader, restart
# the follower and sample its raft.status.applied_index every 10 ms until
# it reaches the leader's commit index; sets catchup_txns.  Besides the
# time from the restart it gives the rate from the last sample before the
# first entry applied: before that the leader waits out its reconnection
# backoff (up to 5 s).
raft_catchup()
{
	local victim="${followers[0]}" samples="$RAFT_BASE/raft.catchup.applied" log index start moved reached
	node_stop "$victim"
	log=$(pgbench_run "$leader" raft.catchup -T "$seconds")
	catchup_txns=$(log_transactions "$log")
	index=$(raft_commit_index)
	node_start "$victim"
	start=$(now_ms)
	sample_start "$victim" "SELECT applied_index FROM raft.status" 0.01 "$samples"
	reached=$(sample_wait "$samples" "$index" "node_$victim to apply index $index" check_not_compacted "$victim")
	sample_stop
	moved=$(sample_time "$samples" moved) || moved="$start"
	catchup_result raft "pg_raft, follower node_$victim restarted" "$catchup_txns" $(( reached - start ))
	catchup_result raft_applying "pg_raft, from node_$victim's first applied entry" "$catchup_txns" $(( reached - moved ))
}

# check_not_compacted PORT: fail if the node met entries compacted away
check_not_compacted()
{
	if grep -q "cannot apply raft index" "$(node_dir "$1").log"; then
		fail "the leader compacted entries node_$1 needed (workload of $catchup_txns transactions too big; try fewer SECONDS), see $(node_dir "$1").log"
	fi
}

# raft_verify: every follower applies the leader's commit index, then the
# pgbench tables' checksums must be equal everywhere; sets checksums.
raft_verify()
{
	local index port table sums="" first=""
	index=$(raft_commit_index)
	for port in "${followers[@]}"; do
		[ "$(node_sql "$port" "SELECT raft.wait_for_index($index, '120s')")" = t ] \
			|| fail "node_$port did not apply index $index within 120 s"
	done
	for port in "${raft[@]}"; do
		sums=""
		for table in "${pgbench_tables[@]}"; do
			sums+="$(node_sql "$port" "SELECT raft.table_checksum('$table')") "
		done
		if [ -z "$first" ]; then
			first="$sums"
		elif [ "$sums" != "$first" ]; then
			checksums="DIFFER (node_$port differs from node_${raft[0]}) at index $index"
			echo "pg_raft checksums of the pgbench tables: $checksums"
			return
		fi
	done
	checksums="equal on all 3 nodes at index $index"
	echo "pg_raft checksums of the pgbench tables: $checksums"
}

run_raft()
{
	local port
	raft_pgbench_init "${raft[@]}"
	leader=$(wait_for_leader "${raft[@]}") || fail "the pg_raft cluster elected no writable leader"
	[ "$(node_sql "$leader" "SHOW synchronous_standby_names")" = pg_raft ] \
		|| fail "the pg_raft cluster is not in synchronous mode"
	followers=()
	for port in "${raft[@]}"; do
		if [ "$port" != "$leader" ]; then followers+=("$port"); fi
	done
	raft_catchup
	measure_tps raft "pg_raft, 3 nodes, synchronous" "$leader"
	raft_verify
	measure_lag raft "pg_raft" "$leader" \
		"SELECT extract(epoch FROM replay_lag) * 1000 FROM raft.nodes WHERE NOT is_leader"
	for port in "${raft[@]}"; do node_stop "$port"; done
}

# ---------------------------------------------------------------- 4. native logical
logical_catchup()
{
	local n=$(( (catchup_txns + 1) / 2 )) samples="$RAFT_BASE/logical.catchup.confirmed" log lsn start reached retry_ms disabled pause_ms
	# the launcher starts apply workers at most once per
	# wal_retrieve_retry_interval: let that pass (from the DISABLE, after
	# the worker's last start), so that the figure does not include it
	retry_ms=$(node_sql "$subscriber" "SELECT setting FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'")
	node_sql "$subscriber" "ALTER SUBSCRIPTION s DISABLE"
	disabled=$(now_ms)
	wait_until "the subscription to stop" 60 "$publisher" \
		"SELECT count(*) = 0 FROM pg_stat_replication WHERE application_name = 's'"
	log=$(pgbench_run "$publisher" logical.catchup -t "$n")
	lsn=$(node_sql "$publisher" "SELECT pg_current_wal_lsn()")
	pause_ms=$(( disabled + retry_ms - $(now_ms) ))
	if [ "$pause_ms" -gt 0 ]; then
		sleep "$(awk -v ms="$pause_ms" 'BEGIN { print ms / 1000 }')"
	fi
	node_sql "$subscriber" "ALTER SUBSCRIPTION s ENABLE"
	start=$(now_ms)
	sample_start "$publisher" \
		"SELECT (confirmed_flush_lsn >= '$lsn')::int FROM pg_replication_slots WHERE slot_name = 's'" 0.01 "$samples"
	reached=$(sample_wait "$samples" 1 "the subscriber to confirm $lsn")
	sample_stop
	catchup_result logical "native logical, subscription re-enabled" "$(log_transactions "$log")" $(( reached - start ))
	[ "$(node_sql "$subscriber" "SELECT count(*) FROM pgbench_history")" = \
		"$(node_sql "$publisher" "SELECT count(*) FROM pgbench_history")" ] \
		|| fail "the subscriber's pgbench_history differs from the publisher's after the catch-up"
}

run_logical()
{
	instance_init publisher "$publisher" "$LOGICAL_CONF"
	instance_init subscriber "$subscriber" "$LOGICAL_CONF"
	pgbench_init "$publisher"
	pgbench_init "$subscriber"
	node_sql "$publisher" "CREATE PUBLICATION p FOR ALL TABLES"
	PGOPTIONS="-c client_min_messages=warning" node_sql "$subscriber" \
		"CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=$publisher dbname=postgres user=postgres' PUBLICATION p WITH (copy_data = false)"
	wait_until "subscription s to stream" 60 "$publisher" \
		"SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = 's' AND state = 'streaming'"
	measure_lag logical "native logical" "$publisher" \
		"SELECT extract(epoch FROM replay_lag) * 1000 FROM pg_stat_replication WHERE application_name = 's'"
	logical_catchup
	for port in "$publisher" "$subscriber"; do node_stop "$port"; done
}

# ---------------------------------------------------------------- main
mkdir -p "$RAFT_BASE"
echo "pgbench -n -c 2 -j 2, scale $scale, $seconds s per run; logs in $RAFT_BASE"
run_plain
run_physical
run_raft
run_logical

echo
printf '%-40s %10s %8s\n' measure TPS "lat ms"
printf '%-40s %10s %8s\n' "no replication" "${tps[plain]}" "${latency[plain]}"
printf '%-40s %10s %8s\n' "physical sync, ANY 1 of 2 standbys" "${tps[physical]}" "${latency[physical]}"
printf '%-40s %10s %8s\n' "pg_raft, 3 nodes, synchronous" "${tps[raft]}" "${latency[raft]}"
echo "replay lag under 200 TPS (p50/p99/max ms): pg_raft ${lag[raft]}, native logical ${lag[logical]}"
echo "catch-up apply (txn/s): pg_raft ${catchup[raft]}, from its first applied entry ${catchup[raft_applying]}; native logical ${catchup[logical]}"
echo "pg_raft checksums after the runs: $checksums"
[[ "$checksums" == equal* ]] || exit 1
