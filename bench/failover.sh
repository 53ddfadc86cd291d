#!/usr/bin/env bash
#
# bench/failover.sh [TRIALS]: how long a pg_raft cluster is without a leader
# after kill -9 of the leader's postmaster.
#
# Three instances on 127.0.0.1 with the default settings
# (raft.election_timeout = 1 s, raft.heartbeat_interval = 100 ms).  Each
# trial kills the leader and measures two times: until a survivor commits
# raft.barrier(), and until an INSERT is accepted through a multi-host
# libpq conninfo with target_session_attrs=read-write (DESIGN.md's
# failover figure); then the old leader restarts and catches up.  A third
# time, measured at once beside the second: until an INSERT is accepted
# through HAProxy's write port, checked with the health API's /leader as
# docs/operations.md configures it.  Prints every trial and p50/p90/max.
# The times include the polling (a psql per attempt, about 20 ms).  With LOAD=1, pgbench (scale 10, 2 clients) writes
# through the leader when it is killed.  Run as a normal user with pg_raft
# installed (demo/main_job.sh shows how as root).

set -euo pipefail
trials="${1:-20}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_failover}"
source "$tree/bench/lib.sh"
source "$tree/bench/haproxy.sh"
# below the range of ports the kernel hands to outgoing connections; the
# health API listens 10 above each
ports=(25331 25332 25333)
haproxy_port=25350
mkdir -p "$RAFT_BASE"
trap 'haproxy_stop; for p in "${ports[@]}"; do node_stop "$p"; done' EXIT

for port in "${ports[@]}"; do
	node_init "node_$port" "$port" "raft.http_listen = '127.0.0.1:$((port + 10))'"
done
# the others copy the tables when they join
node_sql "${ports[0]}" "CREATE TABLE bench_failover (trial int, at timestamptz DEFAULT now())"
if [ -n "${LOAD:-}" ]; then
	"$PG_BIN/pgbench" -i -q -s 10 -h "$RAFT_BASE" -p "${ports[0]}" -U postgres postgres > /dev/null 2>&1
fi
cluster_form "${ports[@]}"
multi_host="host=127.0.0.1,127.0.0.1,127.0.0.1 port=$(IFS=,; echo "${ports[*]}") dbname=postgres user=postgres target_session_attrs=read-write connect_timeout=2"
# docs/operations.md's write port
haproxy_start "$RAFT_BASE/haproxy" "$(haproxy_listen write "$haproxy_port" "$PG_RAFT_WRITE_CHECKS" \
	$(for p in "${ports[@]}"; do echo "node_$p:$p:$((p + 10))"; done))"

results="$RAFT_BASE/failover_ms"
inserts="$RAFT_BASE/insert_ms"
via_haproxy="$RAFT_BASE/haproxy_ms"
: > "$results"
: > "$inserts"
: > "$via_haproxy"
for trial in $(seq 1 "$trials"); do
	leader=$(wait_for_leader "${ports[@]}")
	node_sql "$leader" "SELECT raft.barrier()" > /dev/null
	survivors=()
	for port in "${ports[@]}"; do [ "$port" != "$leader" ] && survivors+=("$port"); done
	load=""
	if [ -n "${LOAD:-}" ]; then
		"$PG_BIN/pgbench" -n -c 2 -j 2 -T 600 -h "$RAFT_BASE" -p "$leader" -U postgres postgres > /dev/null 2>&1 &
		load=$!
		sleep 2
	fi
	start=$(date +%s%N)
	kill -9 "$(node_pid "$leader")"
	rm -f "$RAFT_BASE/haproxy_trial_ms"
	haproxy_poll_insert "$haproxy_port" "$start" bench_failover "$trial" "$RAFT_BASE/haproxy_trial_ms" &
	poller=$!
	done_ms=""
	while [ -z "$done_ms" ]; do
		for port in "${survivors[@]}"; do
			if node_sql "$port" "SELECT raft.barrier('1s')" > /dev/null 2>&1; then
				done_ms=$(( ($(date +%s%N) - start) / 1000000 ))
				break
			fi
		done
	done
	until "$PG_BIN/psql" -X -q -d "$multi_host" -c "INSERT INTO bench_failover VALUES ($trial)" > /dev/null 2>&1; do :; done
	insert_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	wait "$poller"
	haproxy_ms=$(cat "$RAFT_BASE/haproxy_trial_ms")
	if [ -n "$load" ]; then kill "$load" 2> /dev/null || true; wait "$load" 2> /dev/null || true; fi
	echo "$done_ms" >> "$results"
	echo "$insert_ms" >> "$inserts"
	echo "$haproxy_ms" >> "$via_haproxy"
	printf 'trial %2d: leader %s killed; barrier committed after %d ms, INSERT accepted after %d ms (libpq), %d ms (HAProxy)\n' \
		"$trial" "$leader" "$done_ms" "$insert_ms" "$haproxy_ms"
	until node_start "$leader" 2> /dev/null; do sleep 0.2; done
	new=$(wait_for_leader "${survivors[@]}")
	until [ "$(node_sql "$new" "SELECT bool_and(reachable AND lag_entries = 0) FROM raft.nodes" 2> /dev/null)" = t ]; do
		sleep 0.1
	done
done

summary()
{
	sort -n "$1" | awk -v what="$2" -v load="${LOAD:+, pgbench running}" '
		{ v[NR] = $1 }
		END {
			p50 = v[int((NR + 1) * 0.50)]; p90 = v[int((NR * 0.90) + 0.5)]
			printf "pg_raft failover (kill -9 leader -> %s), %d trials, defaults%s: p50 %d ms, p90 %d ms, max %d ms\n", what, NR, load, p50, p90, v[NR]
		}'
}
summary "$results" "barrier committed"
summary "$inserts" "INSERT accepted via target_session_attrs=read-write"
summary "$via_haproxy" "INSERT accepted via HAProxy's write port, /leader checks every 200 ms"
