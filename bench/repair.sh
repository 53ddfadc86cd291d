#!/usr/bin/env bash
#
# bench/repair.sh [SCALE]: how long a former leader with diverged
# transactions takes to rejoin, and how much it copies, beside a full copy
# of the same database.
#
# Three instances on 127.0.0.1, each filled with pgbench -i -s SCALE
# (default 70: a database of about 1 GB; pgbench_history gets a key so
# that its rows can be told apart), form a cluster without copying (they
# hold the same data).  pgbench (2 clients) writes through the leader;
# after 5 s the leader's raft worker is stopped (SIGSTOP) until another
# member leads, then resumed.  The commits that were waiting on the old
# leader never reached the log: it finds them, repairs the rows they
# touched from the new leader, and applies on.  Timed from the resume
# until the old leader is not resyncing and has applied the new leader's
# commit index; the bytes and rows come from its LOG line.  For
# reference, a follower then copies the whole database again
# (pg_raft/copy_pending, as a join cut short leaves it), which is what a
# former leader with diverged transactions did before it repaired rows.
# Every member must end with the same checksums of the pgbench tables.
#
# Run as a normal user with pg_raft installed; works under RAFT_BASE
# (default /tmp/pg_raft_bench_repair), and the exit trap stops every
# instance.

set -euo pipefail
scale="${1:-70}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_repair}"
source "$tree/bench/lib.sh"
ports=(25351 25352 25353)
mkdir -p "$RAFT_BASE"
load=""
cleanup()
{
	if [ -n "$load" ]; then kill "$load" 2> /dev/null || true; fi
	for p in "${ports[@]}"; do node_stop "$p"; done
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
tables="array['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history']::regclass[]"

for port in "${ports[@]}"; do
	node_init "node_$port" "$port" "max_wal_size = 4GB"
	"$PG_BIN/pgbench" -i -q -s "$scale" -h "$RAFT_BASE" -p "$port" -U postgres postgres > /dev/null 2>&1
	node_sql "$port" "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY" > /dev/null
done
size_mb=$(node_sql "${ports[0]}" "SELECT pg_database_size('postgres') / (1024 * 1024)")
echo "data: pgbench scale $scale, database of $size_mb MB on each member"
cluster_form --no-copy "${ports[@]}"
leader=$(wait_for_leader "${ports[@]}") || { echo "no leader"; exit 1; }

"$PG_BIN/pgbench" -n -c 2 -j 2 -T 600 -h 127.0.0.1 -p "$leader" -U postgres postgres > /dev/null 2>&1 &
load=$!
sleep 5
worker=$(node_sql "$leader" "SELECT worker_pid FROM raft.status")
log_offset=$(stat -c %s "$(node_dir "$leader").log")
kill -STOP "$worker"
others=()
for port in "${ports[@]}"; do [ "$port" != "$leader" ] && others+=("$port"); done
new_leader=$(wait_for_leader "${others[@]}") || { echo "no new leader"; exit 1; }
kill -CONT "$worker"
start=$(now_ms)
deadline=$((SECONDS + 600))
until commit=$(node_sql "$new_leader" "SELECT commit_index FROM raft.status" 2> /dev/null) &&
	[ "$(node_sql "$leader" "SELECT NOT resyncing AND diverged_transactions > 0 AND applied_index >= $commit FROM raft.status" 2> /dev/null)" = t ]; do
	if [ $SECONDS -ge $deadline ]; then
		echo "node_$leader did not repair within 600 s"
		exit 1
	fi
	sleep 0.05
done
repair_ms=$(( $(now_ms) - start ))
kill "$load" 2> /dev/null || true
wait "$load" 2> /dev/null || true
load=""
line=$(tail -c +"$log_offset" "$(node_dir "$leader").log" | grep -m 1 'pg_raft repaired' || true)
diverged=$(node_sql "$leader" "SELECT diverged_transactions FROM raft.status")
echo "old leader node_$leader: $diverged diverged transactions; rejoined in $repair_ms ms"
echo "  ${line#*LOG:  }"

# the reference: a follower copies the whole database again
copied="${others[0]}"
[ "$copied" = "$new_leader" ] && copied="${others[1]}"
node_stop "$copied"
: > "$(node_dir "$copied")/pg_raft/copy_pending"
start=$(now_ms)
node_start "$copied"
deadline=$((SECONDS + 1200))
until commit=$(node_sql "$new_leader" "SELECT commit_index FROM raft.status" 2> /dev/null) &&
	[ "$(node_sql "$copied" "SELECT NOT resyncing AND applied_index >= $commit FROM raft.status" 2> /dev/null)" = t ]; do
	if [ $SECONDS -ge $deadline ]; then
		echo "node_$copied did not copy the database within 1200 s"
		exit 1
	fi
	sleep 0.1
done
full_ms=$(( $(now_ms) - start ))
echo "full copy of the database by node_$copied: $full_ms ms"

same_data "$new_leader" "$tables" "${ports[@]}"
echo "summary ($size_mb MB): repair of a diverged former leader $repair_ms ms; full copy $full_ms ms"
