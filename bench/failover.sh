#!/usr/bin/env bash
#
# bench/failover.sh [TRIALS]: how long a pg_raft cluster is without a leader
# that can commit, after kill -9 of the leader's postmaster.
#
# Three instances on 127.0.0.1 with the default settings
# (raft.election_timeout = 1 s, raft.heartbeat_interval = 100 ms).  Each
# trial kills the leader and measures the time until a survivor commits
# raft.barrier(); then the old leader restarts and catches up.  Prints every
# trial and p50/p90/max.  The time includes the polling (one psql per
# survivor, about 20 ms per round).  Run as a normal user with pg_raft
# installed (demo/main_job.sh shows how as root).

set -euo pipefail
trials="${1:-20}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_failover}"
source "$tree/bench/lib.sh"
ports=(54331 54332 54333)
mkdir -p "$RAFT_BASE"
trap 'for p in "${ports[@]}"; do node_stop "$p"; done' EXIT

for port in "${ports[@]}"; do node_init "node_$port" "$port"; done
cluster_form "${ports[@]}"

results="$RAFT_BASE/failover_ms"
: > "$results"
for trial in $(seq 1 "$trials"); do
	leader=$(wait_for_leader "${ports[@]}")
	node_sql "$leader" "SELECT raft.barrier()" > /dev/null
	survivors=()
	for port in "${ports[@]}"; do [ "$port" != "$leader" ] && survivors+=("$port"); done
	start=$(date +%s%N)
	kill -9 "$(node_pid "$leader")"
	done_ms=""
	while [ -z "$done_ms" ]; do
		for port in "${survivors[@]}"; do
			if node_sql "$port" "SELECT raft.barrier('1s')" > /dev/null 2>&1; then
				done_ms=$(( ($(date +%s%N) - start) / 1000000 ))
				break
			fi
		done
	done
	echo "$done_ms" >> "$results"
	printf 'trial %2d: leader %s killed, a survivor committed after %d ms\n' "$trial" "$leader" "$done_ms"
	until node_start "$leader" 2> /dev/null; do sleep 0.2; done
	new=$(wait_for_leader "${survivors[@]}")
	until [ "$(node_sql "$new" "SELECT bool_and(reachable AND lag_entries = 0) FROM raft.nodes" 2> /dev/null)" = t ]; do
		sleep 0.1
	done
done

sort -n "$results" | awk '
	{ v[NR] = $1 }
	END {
		p50 = v[int((NR + 1) * 0.50)]; p90 = v[int((NR * 0.90) + 0.5)]
		printf "pg_raft failover (kill -9 leader -> barrier committed), %d trials, defaults: p50 %d ms, p90 %d ms, max %d ms\n", NR, p50, p90, v[NR]
	}'
