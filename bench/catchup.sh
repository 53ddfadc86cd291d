#!/usr/bin/env bash
#
# bench/catchup.sh [MB]: how long a member that was away takes to catch up
# once it is back, beside a physical standby that was away as long.
#
# Three pg_raft instances on 127.0.0.1; pgbench -i -s 10 fills the first,
# which creates the cluster, and the others join.  Then, once with
# raft.log_keep_size = 1GB (the default) and once with 0: a follower is
# stopped, the leader's raft.nodes says it has not been heard from for
# 11 s (it lags), MB (default 64) transactions of 1 MB each commit through
# the leader, and the follower is started again.  Timed from its start
# until it has applied the leader's commit index and is not
# re-synchronising.  With the archive it catches up from the log kept on
# disk; without, the log is compacted past it and it copies every table
# from the leader.  The server log says which.  Every member must then
# hold the same raft.table_checksum of every table.
#
# The peer: a primary and a physical streaming standby (wal_keep_size =
# 1GB), the standby stopped while the same transactions commit on the
# primary, then started; timed until its replay_lsn reaches the primary's
# current WAL position.
#
# Run as a normal user with pg_raft installed; works under RAFT_BASE
# (default /tmp/pg_raft_bench_catchup), and the exit trap stops every
# instance.

set -euo pipefail
mb="${1:-64}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_catchup}"
source "$tree/bench/lib.sh"
# below the range of ports the kernel hands to outgoing connections
ports=(25351 25352 25353)
primary=25354
standby=25355
mkdir -p "$RAFT_BASE"
cleanup()
{
	for p in "${ports[@]}" "$primary" "$standby"; do node_stop "$p"; done
}
trap cleanup EXIT

# write PORT: MB transactions of 1 MB each
write()
{
	local i
	for i in $(seq 1 "$mb"); do
		node_sql "$1" "INSERT INTO big (payload) SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 32768)" > /dev/null
	done
}

for port in "${ports[@]}"; do node_init "node_$port" "$port"; done
leader="${ports[0]}"
"$PG_BIN/pgbench" -i -q -s 10 -h "$RAFT_BASE" -p "$leader" -U postgres postgres > /dev/null 2>&1
node_sql "$leader" "CREATE TABLE big (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text)"
cluster_form "${ports[@]}"
leader=$(wait_for_leader "${ports[@]}") || { echo "no leader"; exit 1; }
away="${ports[1]}"
if [ "$leader" = "$away" ]; then away="${ports[2]}"; fi

declare -A took
for keep in 1GB 0; do
	for port in "${ports[@]}"; do
		node_sql "$port" "ALTER SYSTEM SET raft.log_keep_size = '$keep'" > /dev/null
		node_sql "$port" "SELECT pg_reload_conf()" > /dev/null
	done
	node_stop "$away"
	until [ "$(node_sql "$leader" "SELECT last_contact < now() - interval '11 s' FROM raft.nodes WHERE node_name = 'node_$away'")" = t ]; do
		sleep 0.5
	done
	write "$leader"
	log_lines=$(wc -l < "$(node_dir "$away").log")
	start=$(now_ms)
	node_start "$away"
	wait_caught_up "raft.log_keep_size = $keep" "$leader" "$away"
	ms=$(( $(now_ms) - start ))
	if tail -n +"$((log_lines + 1))" "$(node_dir "$away").log" | grep -q "re-synchronises this node's data"; then
		how="copied every table from the leader"
	else
		how="caught up from the log"
	fi
	took[$keep]="$ms ms ($how)"
	echo "raft.log_keep_size = $keep: node_$away, away while $mb MB were written, $how in $ms ms"
done

same_data "$leader" "array['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history', 'big']::regclass[]" "${ports[@]}"
for port in "${ports[@]}"; do node_stop "$port"; done

# the peer: physical streaming replication
instance_init primary "$primary" "wal_keep_size = '1GB'"
node_sql "$primary" "CREATE TABLE big (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text)"
"$PG_BIN/pgbench" -i -q -s 10 -h "$RAFT_BASE" -p "$primary" -U postgres postgres > /dev/null 2>&1
rm -rf "$(node_dir "$standby")"
"$PG_BIN/pg_basebackup" -h "$RAFT_BASE" -p "$primary" -U postgres -D "$(node_dir "$standby")" -R -X stream -c fast
echo "port = $standby" >> "$(node_dir "$standby")/postgresql.conf"
node_start "$standby"
node_stop "$standby"
write "$primary"
target=$(node_sql "$primary" "SELECT pg_current_wal_lsn()")
start=$(now_ms)
node_start "$standby"
wait_until "the standby's replay" 600 "$standby" "SELECT pg_last_wal_replay_lsn() >= '$target'"
physical_ms=$(( $(now_ms) - start ))
echo "physical standby, away while $mb MB were written, caught up in $physical_ms ms"

echo "summary ($mb MB written while away): pg_raft with the archive ${took[1GB]}; with raft.log_keep_size = 0 ${took[0]}; physical standby $physical_ms ms"
