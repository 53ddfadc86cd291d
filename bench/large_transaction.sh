#!/usr/bin/env bash
#
# bench/large_transaction.sh [ROWS]: one large transaction, on one instance,
# through physical synchronous replication and through pg_raft (issue 14's
# figure).
#
# One after the other, each set of instances stopped before the next, all
# on 127.0.0.1 with the same settings (wal_level = logical, the output
# plugins listed):
#
#   1. one plain instance;
#   2. a primary with two standbys, synchronous_standby_names = 'ANY 1
#      (s1, s2)';
#   3. native logical replication to one subscriber (CREATE SUBSCRIPTION
#      ... WITH (streaming = on)), synchronous: synchronous_standby_names
#      names the subscription;
#   4. pg_raft, 3 members, with raft.decoding = walsender: the leader's
#      walsender decodes;
#   5. the same with logical_decoding_work_mem = 4MB on every member, so
#      that the leader streams the transaction sooner;
#   6. and 7. the same two with raft.decoding = auto (the default), where
#      the leader hands decoding from its walsender to a decoding worker of
#      its own when the walsender falls behind.
#
# Each runs INSERT INTO big SELECT g, repeat('x', 100) FROM
# generate_series(1, ROWS) g (default ROWS 1,000,000) in one transaction,
# through psql, and prints how long the statement took (its COMMIT
# included) and, with replication, when every member held all the rows
# (counted every 100 ms, from the statement's start).  With logical
# replication it also prints the CPU time the writer's walsenders used
# (with native logical replication they decode the transaction, and the
# COMMIT waits for them), and with pg_raft that of the leader's decoding
# worker, which decodes it there.  Run as a normal
# user with pg_raft installed, e.g. runuser -u pgraft -- bash
# bench/large_transaction.sh; works under RAFT_BASE (default
# /tmp/pg_raft_bench_large), and the exit trap stops every instance.

set -Eeuo pipefail
rows="${1:-1000000}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_large}"
source "$tree/bench/lib.sh"

all_ports=()
sampler=""
bench_traps
mkdir -p "$RAFT_BASE"

statement="INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, $rows) g"

# run LABEL WRITER_PORT [OTHER_PORT...]: times the statement on the writer,
# then until every other instance holds all the rows
run()
{
	local label="$1" writer="$2" start done_ms held_ms port all senders decoder
	shift 2
	PGOPTIONS="-c client_min_messages=warning" \
		node_sql "$writer" "CREATE TABLE IF NOT EXISTS big (id int PRIMARY KEY, pad text)" > /dev/null
	for port in "$@"; do
		wait_until "the table on port $port" 60 "$port" \
			"SELECT count(*) = 1 FROM pg_class WHERE relname = 'big'"
	done
	start=$(date +%s%N)
	node_sql "$writer" "$statement" > /dev/null
	done_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	held_ms=""
	if [ "$#" -gt 0 ]; then
		while :; do
			all=1
			for port in "$@"; do
				[ "$(node_sql "$port" "SELECT count(*) FROM big")" = "$rows" ] || { all=0; break; }
			done
			[ "$all" = 1 ] && break
			sleep 0.1
		done
		held_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	fi
	senders=$(cpu_ticks $(instance_pids "$writer") | awk -v hz="$(getconf CLK_TCK)" \
		'/walsender/ { t += $2 } END { if (t) printf "%.1f", t / hz }')
	decoder=$(cpu_ticks $(instance_pids "$writer") | awk -v hz="$(getconf CLK_TCK)" \
		'/pg_raft decoding worker/ { t += $2 } END { if (t) printf "%.1f", t / hz }')
	printf '%-34s %8d ms to COMMIT%s%s%s\n' "$label" "$done_ms" \
		"${held_ms:+, every member holds the rows after $held_ms ms}" \
		"${senders:+; walsenders on the writer: $senders s of CPU}" \
		"${decoder:+, its decoding worker: $decoder s}"
}

echo "== $rows rows in one transaction"
all_ports=(5601)
instance_init single 5601 "$LOGICAL_CONF"
run "one instance" 5601
bench_cleanup

all_ports=(5611 5612 5613)
instance_init primary 5611 "$LOGICAL_CONF"
standby_init s1 5612 5611
standby_init s2 5613 5611
node_sql 5611 "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (s1, s2)'"
node_sql 5611 "SELECT pg_reload_conf()" > /dev/null
wait_until "s1 and s2 to stream as quorum standbys" 60 5611 \
	"SELECT count(*) = 2 FROM pg_stat_replication WHERE application_name IN ('s1', 's2') AND sync_state = 'quorum'"
run "physical synchronous replication" 5611 5612 5613
bench_cleanup

all_ports=(5631 5632)
instance_init publisher 5631 "$LOGICAL_CONF"
instance_init subscriber 5632 "$LOGICAL_CONF"
for port in 5631 5632; do
	node_sql "$port" "CREATE TABLE big (id int PRIMARY KEY, pad text)" > /dev/null
done
node_sql 5631 "CREATE PUBLICATION p FOR ALL TABLES" > /dev/null
PGOPTIONS="-c client_min_messages=warning" node_sql 5632 "CREATE SUBSCRIPTION s CONNECTION '$(node_conninfo 5631)' PUBLICATION p WITH (streaming = on)" > /dev/null
node_sql 5631 "ALTER SYSTEM SET synchronous_standby_names = 's'"
node_sql 5631 "SELECT pg_reload_conf()" > /dev/null
wait_until "the subscription to stream synchronously" 60 5631 \
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = 's' AND sync_state = 'sync'"
wait_until "the subscription's table to be ready" 60 5632 \
	"SELECT count(*) = 1 FROM pg_subscription_rel WHERE srsubstate = 'r'"
run "native logical, synchronous" 5631 5632
bench_cleanup

# raft_run LABEL [CONF]: a 3-member pg_raft cluster with CONF, then the run
raft_run()
{
	local label="$1" conf="${2:-}" port leader others=()
	all_ports=(5621 5622 5623)
	for port in "${all_ports[@]}"; do node_init "node_$port" "$port" "$conf"; done
	cluster_form "${all_ports[@]}"
	leader="$(wait_for_leader "${all_ports[@]}")"
	for port in "${all_ports[@]}"; do [ "$port" != "$leader" ] && others+=("$port"); done
	run "$label" "$leader" "${others[@]}"
	bench_cleanup
}

raft_run "pg_raft, raft.decoding = walsender" "raft.decoding = walsender"
raft_run "pg_raft, walsender, 4MB" "raft.decoding = walsender
logical_decoding_work_mem = '4MB'"
raft_run "pg_raft, raft.decoding = auto" "raft.decoding = auto"
raft_run "pg_raft, auto, 4MB" "raft.decoding = auto
logical_decoding_work_mem = '4MB'"
