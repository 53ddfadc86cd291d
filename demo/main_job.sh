#!/usr/bin/env bash
#
# demo/main_job.sh: the main job, end to end, on one machine.
#
# Run as root on a fresh Debian 12 machine, it installs what pg_raft needs,
# builds and installs it, then (as the unprivileged user pgraft, since
# PostgreSQL refuses to run as root):
#
#   1. starts three PostgreSQL instances on 127.0.0.1 and forms a cluster;
#   2. shows raft.nodes;
#   3. commits a stream of barriers through the leader, remembering the
#      index of every one that was acknowledged;
#   4. kills the leader's postmaster with kill -9 while the stream runs;
#   5. shows the new leader, how long until it committed, and checks that
#      every acknowledged index is in its committed log;
#   6. restarts the old leader and shows it following.
#
# The Raft log is what replicates today; table data travels through it
# once data replication lands.  Run as a normal user (with pg_raft already
# installed) it skips the installation.  KEEP=1 leaves the instances
# running; they live under $RAFT_BASE (default /tmp/pg_raft_demo).

set -euo pipefail
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "$(id -u)" -eq 0 ]; then
	bash "$tree/.ci/install-deps" > /tmp/pg_raft_install.log 2>&1 ||
		{ cat /tmp/pg_raft_install.log; exit 1; }
	make -C "$tree" -s > /dev/null
	make -C "$tree" -s install > /dev/null
	id pgraft > /dev/null 2>&1 || useradd --create-home --shell /bin/bash pgraft
	chmod o+rx "$tree" "$tree/demo" "$tree/bench"
	exec runuser -u pgraft -- env KEEP="${KEEP:-}" bash "$tree/demo/main_job.sh"
fi

source "$tree/bench/lib.sh"
ports=(54321 54322 54323)
mkdir -p "$RAFT_BASE"
cleanup()
{
	if [ -z "${KEEP:-}" ]; then
		for port in "${ports[@]}"; do node_stop "$port"; done
	fi
}
trap cleanup EXIT

echo "== starting three instances on 127.0.0.1:${ports[*]}"
for port in "${ports[@]}"; do node_init "node_$port" "$port"; done
cluster_form "${ports[@]}"
leader=$(wait_for_leader "${ports[@]}")
echo "== the cluster (raft.nodes on the leader, node_$leader)"
"$PG_BIN/psql" -X -h "$RAFT_BASE" -p "$leader" -U postgres -d postgres -c \
	"SELECT node_name, voting, is_leader, reachable, match_index, lag_entries, replay_lag FROM raft.nodes ORDER BY node_name"

echo "== committing barriers through node_$leader, then kill -9 of its postmaster"
acked="$RAFT_BASE/acked"
: > "$acked"
(
	while node_sql "$leader" "SELECT raft.barrier('1s')" >> "$acked" 2> /dev/null; do :; done
) &
writer=$!
sleep 1
pid=$(node_pid "$leader")
killed_at=$(date +%s.%N)
kill -9 "$pid"
wait "$writer" || true
echo "   $(wc -l < "$acked") barriers acknowledged before the kill; the last at index $(tail -n 1 "$acked")"

survivors=()
for port in "${ports[@]}"; do [ "$port" != "$leader" ] && survivors+=("$port"); done
new_leader=""
until [ -n "$new_leader" ]; do
	for port in "${survivors[@]}"; do
		if node_sql "$port" "SELECT raft.barrier('1s')" > /dev/null 2>&1; then
			new_leader=$port
			break
		fi
	done
done
committed_at=$(date +%s.%N)
awk -v a="$killed_at" -v b="$committed_at" -v n="$new_leader" \
	'BEGIN { printf "== node_%s leads and committed %.2f s after the kill\n", n, b - a }'
commit=$(node_sql "$new_leader" "SELECT commit_index FROM raft.status")
last_acked=$(tail -n 1 "$acked")
if [ "$last_acked" -le "$commit" ]; then
	echo "   nothing lost: every acknowledged barrier (up to $last_acked) is within the new leader's commit index $commit"
else
	echo "   LOST: acknowledged $last_acked but the new leader committed only $commit"
	exit 1
fi
"$PG_BIN/psql" -X -h "$RAFT_BASE" -p "$new_leader" -U postgres -d postgres -c \
	"SELECT node_name, role, term, leader_name, commit_index FROM raft.status"

echo "== restarting node_$leader"
until node_start "$leader" 2> /dev/null; do sleep 0.2; done
until [ "$(node_sql "$new_leader" "SELECT reachable AND lag_entries = 0 FROM raft.nodes WHERE node_name = 'node_$leader'" 2> /dev/null)" = t ]; do
	sleep 0.1
done
"$PG_BIN/psql" -X -h "$RAFT_BASE" -p "$new_leader" -U postgres -d postgres -c \
	"SELECT node_name, voting, is_leader, reachable, match_index, lag_entries, replay_lag FROM raft.nodes ORDER BY node_name"
echo "== done"
