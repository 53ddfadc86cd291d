#!/usr/bin/env bash
#
# demo/main_job.sh: the main job, end to end, on one machine.
#
# Run as root on a fresh Debian 12 machine, it installs what pg_raft needs,
# builds and installs it, then (as the unprivileged user pgraft, since
# PostgreSQL refuses to run as root):
#
#   1. starts three PostgreSQL instances on 127.0.0.1, forms a cluster, and
#      creates and alters the table on the leader (schema changes travel
#      through the log);
#   2. shows raft.nodes;
#   3. inserts rows through the leader, one transaction each, remembering
#      every one whose COMMIT was acknowledged;
#   4. kills the leader's postmaster with kill -9 while the writes run;
#   5. finds the new leader with a multi-host conninfo
#      (target_session_attrs=read-write), says how long until it accepted
#      an INSERT, checks that every acknowledged row is there, and changes
#      the schema again there;
#   6. restarts the old leader, which reports the transaction that was
#      committing when it died, if any (committed there, never
#      acknowledged, never in the Raft log) in
#      raft.status.diverged_transactions, keeps it in a file, and then
#      repairs the rows it touched from the new leader; and shows the table on
#      every member: all hold the same rows (same checksum), columns and
#      indexes.
#
# Run as a normal user (with pg_raft already
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
# below the range of ports the kernel hands to outgoing connections
ports=(25321 25322 25323)
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
# the table exists on the first instance; the others copy it when they join
cluster_form "${ports[@]}"
leader=$(wait_for_leader "${ports[@]}")
echo "== a schema change after the cluster formed, on node_$leader: it travels through the log"
node_sql "$leader" "CREATE TABLE orders (id int PRIMARY KEY, placed timestamptz DEFAULT now())" > /dev/null
node_sql "$leader" "ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web'" > /dev/null
echo "== the cluster (raft.nodes on the leader, node_$leader)"
"$PG_BIN/psql" -X -h "$RAFT_BASE" -p "$leader" -U postgres -d postgres -c \
	"SELECT node_name, voting, is_leader, reachable, match_index, lag_entries, replay_lag FROM raft.nodes ORDER BY node_name"

echo "== writing rows through node_$leader, one transaction each, then kill -9 of its postmaster"
acked="$RAFT_BASE/acked"
: > "$acked"
seq 1 1000000 | sed 's/.*/INSERT INTO orders (id) VALUES (&) RETURNING id;/' |
	"$PG_BIN/psql" -X -q -A -t -h "$RAFT_BASE" -p "$leader" -U postgres -d postgres \
		>> "$acked" 2> /dev/null &
writer=$!
sleep 2
pid=$(node_pid "$leader")
killed_at=$(date +%s.%N)
kill -9 "$pid"
wait "$writer" || true
echo "   $(wc -l < "$acked") inserts acknowledged before the kill; the last was id $(tail -n 1 "$acked")"

survivors=()
for port in "${ports[@]}"; do [ "$port" != "$leader" ] && survivors+=("$port"); done
any_leader="host=127.0.0.1,127.0.0.1,127.0.0.1 port=$(IFS=,; echo "${ports[*]}") dbname=postgres user=postgres target_session_attrs=read-write connect_timeout=1"
until new_leader=$("$PG_BIN/psql" -X -q -A -t -d "$any_leader" -c \
		"INSERT INTO orders (id) VALUES (0) RETURNING current_setting('port')" 2> /dev/null); do
	sleep 0.02
done
committed_at=$(date +%s.%N)
awk -v a="$killed_at" -v b="$committed_at" -v n="$new_leader" \
	'BEGIN { printf "== node_%s leads: an INSERT through target_session_attrs=read-write was accepted %.2f s after the kill\n", n, b - a }'
echo "== another schema change, on the new leader"
node_sql "$new_leader" "ALTER TABLE orders ADD COLUMN checked boolean NOT NULL DEFAULT false" > /dev/null
node_sql "$new_leader" "CREATE INDEX orders_placed ON orders (placed)" > /dev/null
acked_ids=$(paste -sd, "$acked")
lost=$(node_sql "$new_leader" "SELECT count(*) FROM unnest('{${acked_ids}}'::int[]) AS a(id) WHERE NOT EXISTS (SELECT FROM orders o WHERE o.id = a.id)")
if [ "$lost" = 0 ]; then
	echo "   nothing lost: all $(wc -l < "$acked") acknowledged rows are on the new leader"
else
	echo "   LOST: $lost acknowledged rows are missing on the new leader"
	exit 1
fi
"$PG_BIN/psql" -X -h "$RAFT_BASE" -p "$new_leader" -U postgres -d postgres -c \
	"SELECT node_name, role, term, leader_name, commit_index, applied_index, writable FROM raft.status"

echo "== restarting node_$leader"
until node_start "$leader" 2> /dev/null; do sleep 0.2; done
until [ "$(node_sql "$new_leader" "SELECT reachable AND lag_entries = 0 FROM raft.nodes WHERE node_name = 'node_$leader'" 2> /dev/null)" = t ]; do
	sleep 0.1
done
"$PG_BIN/psql" -X -h "$RAFT_BASE" -p "$new_leader" -U postgres -d postgres -c \
	"SELECT node_name, voting, is_leader, reachable, match_index, lag_entries, replay_lag FROM raft.nodes ORDER BY node_name"
# the old leader settles the slot of its leadership once it has caught up,
# and repairs the rows of the transactions the log never had, if any
deadline=$((SECONDS + 120))
until [ "$(node_sql "$leader" "SELECT NOT resyncing AND NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'pg_raft') FROM raft.status" 2> /dev/null)" = t ]; do
	if [ $SECONDS -ge $deadline ]; then
		echo "   node_$leader did not settle its old leadership within 120 s"
		exit 1
	fi
	sleep 0.1
done
echo "== node_$leader, the old leader: transactions that committed there but never reached the log"
"$PG_BIN/psql" -X -h "$RAFT_BASE" -p "$leader" -U postgres -d postgres -c \
	"SELECT node_name, diverged_transactions, diverged_file, resyncing FROM raft.status"
index=$(node_sql "$new_leader" "SELECT commit_index FROM raft.status")
echo "== the table on every member, once each applied index $index"
declare -A tables
for port in "${ports[@]}"; do
	node_sql "$port" "SELECT raft.wait_for_index($index, '60s')" > /dev/null
	tables[$port]=$(node_sql "$port" "SELECT count(*) || ' rows, checksum ' || left(raft.table_checksum('orders'), 16)
		|| ', columns ' || (SELECT string_agg(attname, ' ' ORDER BY attnum) FROM pg_attribute
							WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped)
		|| ', indexes ' || (SELECT count(*) FROM pg_index WHERE indrelid = 'orders'::regclass) FROM orders")
	echo "   node_$port: ${tables[$port]}"
done
if [ "$(printf '%s\n' "${tables[@]}" | sort -u | wc -l)" -ne 1 ]; then
	echo "   the members hold different rows or schemas"
	exit 1
fi
echo "== done"
