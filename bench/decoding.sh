#!/usr/bin/env bash
#
# bench/decoding.sh [ROWS]: what decoding one large transaction with the
# pg_raft output plugin costs through a walsender, as capture does it,
# against the same decoding in a backend.
#
# One instance on 127.0.0.1 with pg_raft's library loaded (no cluster):
# INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, ROWS)
# g (default ROWS 1,000,000) commits with one slot per decoding below
# created before it; then, one after the other, the transaction is decoded
#
#   - through a walsender: pg_recvlogical --start --endpos, writing to
#     /dev/null (the walsender decodes, pg_recvlogical only reads);
#   - in a backend: SELECT ... FROM pg_logical_slot_peek_binary_changes(),
#     counting what it returns;
#
# with the plugin's option streaming on (blocks of logical_decoding_work_mem,
# as capture asks by default) and off.  For each it prints the time and
# the instance's CPU time (walsender or backend, with anything else the
# idle instance did).  Run as a normal user with pg_raft installed, e.g.
# runuser -u pgraft -- bash bench/decoding.sh; works under RAFT_BASE
# (default /tmp/pg_raft_bench_decoding), and the exit trap stops the
# instance.

set -Eeuo pipefail
rows="${1:-1000000}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_decoding}"
source "$tree/bench/lib.sh"

port=5641
all_ports=("$port")
sampler=""
bench_traps
mkdir -p "$RAFT_BASE"
hz="$(getconf CLK_TCK)"

instance_init decoding "$port" "shared_preload_libraries = 'pg_raft'
$LOGICAL_CONF
max_wal_size = 4GB"
node_sql "$port" "CREATE TABLE big (id int PRIMARY KEY, pad text)" > /dev/null
for slot in through_walsender_on through_walsender_off in_backend; do
	node_sql "$port" "SELECT pg_create_logical_replication_slot('$slot', 'pg_raft')" > /dev/null
done
node_sql "$port" "INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, $rows) g" > /dev/null
end="$(node_sql "$port" "SELECT pg_current_wal_lsn()")"

# measure LABEL COMMAND...: runs the decoding, prints its time and CPU
measure()
{
	local label="$1" start ticks
	shift
	ticks="$(instance_cpu_ticks "$port")"
	start=$(now_ms)
	"$@"
	printf '%-44s %6d ms, instance CPU %5.1f s\n' "$label" "$(( $(now_ms) - start ))" \
		"$(awk -v a="$ticks" -v b="$(instance_cpu_ticks "$port")" -v hz="$hz" \
			'BEGIN { print (b - a) / hz }')"
}

through_walsender()
{
	"$PG_BIN/pg_recvlogical" -h "$RAFT_BASE" -p "$port" -U postgres -d postgres \
		--slot "through_walsender_$1" --start -o "streaming=$1" \
		--endpos "$end" --no-loop -f /dev/null
}

in_backend()
{
	node_sql "$port" "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('in_backend', '$end', NULL, 'streaming', '$1')" > /dev/null
}

echo "== decoding $rows rows in one transaction, pg_raft plugin"
for streaming in on off; do
	measure "through a walsender, streaming $streaming" through_walsender "$streaming"
	measure "in a backend, streaming $streaming" in_backend "$streaming"
done
