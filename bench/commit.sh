#!/usr/bin/env bash
#
# bench/commit.sh [SECONDS]: the commit path, pg_raft beside physical
# synchronous replication, on 127.0.0.1.
#
# Both are three PostgreSQL 15 instances with wal_level = logical and
# otherwise the defaults:
#   - physical: a primary and two streaming standbys (pg_basebackup -R),
#     synchronous_standby_names = 'ANY 1 (s1, s2)';
#   - pg_raft: three members in synchronous mode, each given the same
#     pgbench -i data before the cluster forms (copy_data => false).
# On each, pgbench (TPC-B like, scale 10, -n, over TCP to 127.0.0.1) runs
# SECONDS (default 20) at every client count in CLIENTS (default "2 8"),
# -j equal to -c, and the CPU time every instance of the side used per
# transaction is read from /proc (pgbench's own is left out: the same on
# both sides).  On pg_raft it then waits for the followers to apply
# what those runs left behind, and runs at -R 200 while psql samples
# raft.nodes.replay_lag of the followers every 100 ms (p50/p99/max), and
# the script counts the elections over all runs (the term before and
# after; an election under load is a spurious one).
#
# RUN=raft or RUN=physical runs one side only.  Run as a normal user with
# pg_raft installed: runuser -u pgraft -- bash bench/commit.sh 20.  Works
# under RAFT_BASE (default /tmp/pg_raft_bench_commit); the exit trap stops
# every instance.

set -Eeuo pipefail
seconds="${1:-20}"
clients="${CLIENTS:-2 8}"
run="${RUN:-physical raft}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_commit}"
source "$tree/bench/lib.sh"

primary=25451
standbys=(25452 25453)
raft=(25461 25462 25463)
all_ports=("$primary" "${standbys[@]}" "${raft[@]}")

if [ "$(id -u)" = 0 ]; then
	echo "$0: run as a normal user (PostgreSQL refuses to run as root)" >&2
	exit 2
fi

bench_traps

declare -A tps latency cpu
hz=$(getconf CLK_TCK)
# the instances of the side being measured, the one pgbench writes to first
instances=()

# measure KEY PORT CLIENTS [ARGS...]: pgbench over TCP; records its TPS, its
# latency and the CPU time the instances used per transaction (in ms: the
# whole side's, and after the slash the standbys' or followers')
measure()
{
	local key="$1" port="$2" c="$3" log="$RAFT_BASE/$1.c$3.pgbench.log" p txns
	local -A before
	shift 3
	for p in "${instances[@]}"; do before[$p]=$(instance_cpu_ticks "$p"); done
	"$PG_BIN/pgbench" -n -c "$c" -j "$c" -h 127.0.0.1 -p "$port" -U postgres "$@" postgres \
		> "$log" 2>&1 || fail "pgbench on port $port failed, see $log"
	tps[$key.$c]=$(awk '/^tps = / { printf "%.1f", $3 }' "$log")
	latency[$key.$c]=$(awk '/^latency average = / { printf "%.2f", $4 }' "$log")
	txns=$(awk '/^number of transactions actually processed: / { print $6 }' "$log")
	cpu[$key.$c]=$(for p in "${instances[@]}"; do
			echo "$p $(( $(instance_cpu_ticks "$p") - ${before[$p]} ))"
		done | awk -v first="${instances[0]}" -v n="$txns" -v hz="$hz" '
			{ all += $2; if ($1 != first) others += $2 }
			END { if (n > 0) printf "%.2f/%.2f", all * 1000 / hz / n, others * 1000 / hz / n }')
}

run_physical()
{
	local port
	physical_init "$primary" "${standbys[@]}"
	instances=("$primary" "${standbys[@]}")
	for c in $clients; do
		measure physical "$primary" "$c" -T "$seconds"
		echo "physical sync, $c clients: ${tps[physical.$c]} TPS, ${latency[physical.$c]} ms, CPU ms per transaction (all/standbys) ${cpu[physical.$c]}"
	done
	for port in "$primary" "${standbys[@]}"; do node_stop "$port"; done
}

run_raft()
{
	local port leader term_before term_after samples="$RAFT_BASE/raft.lag_ms" log
	raft_pgbench_init "${raft[@]}"
	leader=$(wait_for_leader "${raft[@]}") || fail "no writable leader"
	term_before=$(node_sql "$leader" "SELECT term FROM raft.status")
	instances=("$leader")
	for port in "${raft[@]}"; do [ "$port" = "$leader" ] || instances+=("$port"); done
	for c in $clients; do
		measure raft "$leader" "$c" -T "$seconds"
		echo "pg_raft, $c clients: ${tps[raft.$c]} TPS, ${latency[raft.$c]} ms, CPU ms per transaction (all/followers) ${cpu[raft.$c]}"
	done
	# the lag at 200 TPS, not the backlog the saturating runs left behind
	wait_until "the followers to apply the backlog" 120 "$leader" \
		"SELECT bool_and(lag_entries = 0) FROM raft.nodes WHERE NOT is_leader"
	# from a second into the run: replay_lag keeps the last entry's figure
	# while nothing is written, and pgbench takes a moment to connect
	(
		sleep 1
		exec "$PG_BIN/psql" -X -q -A -t -h "$RAFT_BASE" -p "$leader" -U postgres -d postgres \
			<<< "SELECT extract(epoch FROM replay_lag) * 1000 FROM raft.nodes WHERE NOT is_leader \\watch 0.1"
	) > "$samples" 2>&1 &
	sampler=$!
	measure raft_rate "$leader" 2 -R 200 -T "$seconds"
	kill "$sampler" 2> /dev/null || true
	wait "$sampler" || true
	sampler=""
	lag=$(awk '$1 ~ /^[0-9.]+$/ { print $1 }' "$samples" | sort -n | awk '
		{ v[NR] = $1 }
		END { if (NR) printf "%.1f/%.1f/%.1f ms over %d values", v[int((NR + 1) * 0.50)], v[int(NR * 0.99 + 0.5)], v[NR], NR }')
	[ -n "$lag" ] || fail "no replay lag sampled, see $samples"
	echo "pg_raft replay lag at ${tps[raft_rate.2]} TPS: p50/p99/max $lag"
	term_after=$(node_sql "$leader" "SELECT term FROM raft.status")
	elections=$(( term_after - term_before ))
	[ "$(node_sql "$leader" "SELECT role = 'leader' FROM raft.status")" = t ] \
		|| fail "node_$leader lost its leadership during the runs"
	echo "pg_raft elections during the runs: $elections"
	for port in "${raft[@]}"; do node_stop "$port"; done
}

mkdir -p "$RAFT_BASE"
echo "pgbench -n over TCP, scale 10, $seconds s per run, clients: $clients; logs in $RAFT_BASE"
for side in $run; do "run_$side"; done

echo
printf '%-8s %-22s %-22s %-7s %s\n' clients "physical TPS (ms)" "pg_raft TPS (ms)" ratio \
	"CPU ms/txn, physical and pg_raft (all/replicas)"
for c in $clients; do
	printf '%-8s %-22s %-22s %-7s %s\n' "$c" \
		"${tps[physical.$c]:--} (${latency[physical.$c]:--})" \
		"${tps[raft.$c]:--} (${latency[raft.$c]:--})" \
		"$(awk -v r="${tps[raft.$c]:-0}" -v p="${tps[physical.$c]:-0}" 'BEGIN { if (p > 0 && r > 0) printf "%.2fx", r / p; else print "-" }')" \
		"${cpu[physical.$c]:--} and ${cpu[raft.$c]:--}"
done
[ -z "${lag:-}" ] || echo "pg_raft replay lag at 200 TPS (p50/p99/max): $lag; elections during the runs: $elections"
