#!/usr/bin/env bash
#
# bench/resync.sh [SCALE]: how long a member takes to copy its data from
# the leader, beside pg_basebackup of the same data.
#
# Three instances on 127.0.0.1.  pgbench -i -s SCALE (default 10) fills the
# first, which creates the cluster; the second joins with a copy (timed:
# raft.join_cluster returns once the node is a voter), the third joins too.
# Then, TRIALS times (default 3), the second is stopped, left with
# pg_raft/copy_pending (as a copy cut short would), and started again: its
# apply worker empties the database and copies it from the leader.  Timed
# from the start until raft.status.resyncing is false and the node has
# applied the leader's commit index.  With LOAD=1, pgbench (2 clients)
# writes through the leader during every trial.  After the trials every
# node must hold the same raft.table_checksum of the four pgbench tables.
# For reference, pg_basebackup -X stream copies the leader's whole
# instance to a local directory.
#
# Prints each figure, then a summary.  Run as a normal user with pg_raft
# installed; works under RAFT_BASE (default /tmp/pg_raft_bench_resync), and
# the exit trap stops every instance.

set -euo pipefail
scale="${1:-10}"
trials="${TRIALS:-3}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_resync}"
source "$tree/bench/lib.sh"
# below the range of ports the kernel hands to outgoing connections
ports=(25341 25342 25343)
mkdir -p "$RAFT_BASE"
load=""
cleanup()
{
	if [ -n "$load" ]; then kill "$load" 2> /dev/null || true; fi
	for p in "${ports[@]}"; do node_stop "$p"; done
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

for port in "${ports[@]}"; do node_init "node_$port" "$port"; done
leader="${ports[0]}"
copied="${ports[1]}"
"$PG_BIN/pgbench" -i -q -s "$scale" -h "$RAFT_BASE" -p "$leader" -U postgres postgres > /dev/null 2>&1
size_mb=$(node_sql "$leader" "SELECT pg_database_size('postgres') / (1024 * 1024)")
echo "data: pgbench scale $scale, database of $size_mb MB"

PGOPTIONS="-c client_min_messages=warning" node_sql "$leader" \
	"SELECT raft.create_cluster('node_$leader', '$(node_conninfo "$leader")')" > /dev/null
start=$(now_ms)
PGOPTIONS="-c client_min_messages=warning" node_sql "$copied" \
	"SELECT raft.join_cluster('node_$copied', '$(node_conninfo "$copied")', '$(node_conninfo "$leader")')" > /dev/null
join_ms=$(( $(now_ms) - start ))
echo "raft.join_cluster with the copy: $join_ms ms"
PGOPTIONS="-c client_min_messages=warning" node_sql "${ports[2]}" \
	"SELECT raft.join_cluster('node_${ports[2]}', '$(node_conninfo "${ports[2]}")', '$(node_conninfo "$leader")')" > /dev/null
leader=$(wait_for_leader "${ports[@]}") || { echo "no leader"; exit 1; }
if [ "$leader" = "$copied" ]; then copied="${ports[0]}"; fi

rm -rf "$RAFT_BASE/basebackup"
start=$(now_ms)
"$PG_BIN/pg_basebackup" -h "$RAFT_BASE" -p "$leader" -U postgres -D "$RAFT_BASE/basebackup" -X stream -c fast
basebackup_ms=$(( $(now_ms) - start ))
rm -rf "$RAFT_BASE/basebackup"
echo "pg_basebackup -X stream of the leader: $basebackup_ms ms"

results="$RAFT_BASE/resync_ms"
: > "$results"
for trial in $(seq 1 "$trials"); do
	node_stop "$copied"
	if [ -e "$(node_dir "$copied")/postmaster.pid" ]; then
		echo "trial $trial: node_$copied did not stop"
		exit 1
	fi
	: > "$(node_dir "$copied")/pg_raft/copy_pending"
	if [ -n "${LOAD:-}" ]; then
		"$PG_BIN/pgbench" -n -c 2 -j 2 -T 600 -h "$RAFT_BASE" -p "$leader" -U postgres postgres > /dev/null 2>&1 &
		load=$!
	fi
	start=$(now_ms)
	node_start "$copied"
	wait_caught_up "trial $trial" "$leader" "$copied"
	ms=$(( $(now_ms) - start ))
	if [ -n "$load" ]; then kill "$load" 2> /dev/null || true; wait "$load" 2> /dev/null || true; load=""; fi
	echo "$ms" >> "$results"
	printf 'trial %d: node_%s re-synchronised in %d ms (%s MB/s)%s\n' "$trial" "$copied" "$ms" \
		"$(awk -v mb="$size_mb" -v ms="$ms" 'BEGIN { printf "%.1f", mb * 1000 / ms }')" "${LOAD:+, pgbench writing}"
done

same_data "$leader" "array['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history']::regclass[]" "${ports[@]}"

sort -n "$results" | awk -v join="$join_ms" -v bb="$basebackup_ms" -v mb="$size_mb" -v load="${LOAD:+, pgbench writing}" '
	{ v[NR] = $1 }
	END {
		printf "summary (%d MB): join %d ms; re-synchronisation p50 %d ms, max %d ms%s; pg_basebackup %d ms\n",
			mb, join, v[int((NR + 1) / 2)], v[NR], load, bb
	}'
