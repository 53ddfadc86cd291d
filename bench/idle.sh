#!/usr/bin/env bash
#
# bench/idle.sh [SECONDS]: the CPU an idle member uses, pg_raft beside
# PostgreSQL's own replication, on 127.0.0.1.
#
# One after the other, each set of instances stopped before the next,
# nothing writing:
#
#   1. one plain instance;
#   2. a primary with physical streaming replication to two standbys
#      (pg_basebackup -R);
#   3. pg_raft, 3 nodes, once the cluster has formed and a leader leads;
#   4. the same, with HAProxy checking each member's health API as
#      docs/operations.md configures it (a write and a read port, a check
#      every 200 ms each).
#
# After 5 s of settling, the CPU time (user + system, from /proc/PID/stat)
# of every process of each instance, the postmaster and all it started, is
# read, again SECONDS later (default 30), and printed as a share of one
# core per instance, with pg_raft's busiest processes named.  Run as a
# normal user with pg_raft installed, e.g. runuser -u pgraft -- bash
# bench/idle.sh 30; works under RAFT_BASE (default /tmp/pg_raft_bench_idle),
# and the exit trap stops every instance.

set -Eeuo pipefail
seconds="${1:-30}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_idle}"
source "$tree/bench/lib.sh"
source "$tree/bench/haproxy.sh"

ports=()
cleanup() { haproxy_stop; for p in "${ports[@]}"; do node_stop "$p"; done; }
trap cleanup EXIT
mkdir -p "$RAFT_BASE"
hz=$(getconf CLK_TCK)

# share TICKS: TICKS over the measured time, in percent of one core
share() { awk -v t="$1" -v hz="$hz" -v s="$seconds" 'BEGIN { printf "%.2f", t * 100 / (hz * s) }'; }

# measure LABEL PORT...: prints the share of a core each instance used
measure()
{
	local label="$1" port before after
	shift
	sleep 5
	declare -A start
	for port in "$@"; do
		while read -r pid ticks name; do start[$pid]=$ticks; done < <(cpu_ticks $(instance_pids "$port"))
	done
	sleep "$seconds"
	for port in "$@"; do
		local total=0 lines=""
		while read -r pid ticks name; do
			local used=$(( ticks - ${start[$pid]:-0} ))
			total=$(( total + used ))
			[ "$used" -gt 0 ] && lines+="$used $name"$'\n'
		done < <(cpu_ticks $(instance_pids "$port"))
		printf '%-20s port %s: %6.2f %% of a core\n' "$label" "$port" "$(share "$total")"
		printf '%s' "$lines" | sort -rn | head -n 4 | while read -r used name; do
			printf '    %6.2f %%  %s\n' "$(share "$used")" "$name"
		done
	done
}

echo "== 1. one plain instance, idle for ${seconds} s"
ports=(5501)
instance_init plain 5501 "$LOGICAL_CONF"
measure "plain instance" 5501
cleanup

echo "== 2. physical streaming replication, a primary and two standbys"
ports=(5511 5512 5513)
instance_init primary 5511 "$LOGICAL_CONF"
for port in 5512 5513; do
	dir="$(node_dir "$port")"
	rm -rf "$dir"
	"$PG_BIN/pg_basebackup" -h "$RAFT_BASE" -p 5511 -U postgres -D "$dir" -R > /dev/null
	cat >> "$dir/postgresql.conf" <<CONF
port = $port
cluster_name = 'standby_$port'
CONF
	node_start "$port"
done
measure "physical streaming" 5511 5512 5513
cleanup

echo "== 3. pg_raft, 3 nodes"
ports=(5521 5522 5523)
for port in "${ports[@]}"; do
	node_init "node_$port" "$port" "raft.http_listen = '127.0.0.1:$((port + 100))'"
done
cluster_form "${ports[@]}"
leader="$(wait_for_leader "${ports[@]}")"
echo "leader: port $leader"
measure "pg_raft" "${ports[@]}"

echo "== 4. pg_raft, 3 nodes, checked by HAProxy"
servers=$(for p in "${ports[@]}"; do echo "node_$p:$p:$((p + 100))"; done)
haproxy_start "$RAFT_BASE/haproxy" "$(haproxy_listen write 5530 "$PG_RAFT_WRITE_CHECKS" $servers)
$(haproxy_listen read 5531 "$PG_RAFT_READ_CHECKS" $servers)"
measure "pg_raft + HAProxy" "${ports[@]}"
