#!/usr/bin/env bash
#
# bench/wakeups.sh [SECONDS]: what each process of a 3-member pg_raft
# cluster costs a small commit: CPU time and voluntary context switches
# (wakeups) per transaction, per process, over a pgbench run.
#
# The cluster is bench/commit.sh's (pgbench -i scale 10 on every member
# before it forms).  After a 3 s warm-up, pgbench (TPC-B like, -n, over
# TCP to 127.0.0.1) runs SECONDS (default 15) with CLIENTS (default 2)
# clients against the leader.  Each long-lived process's
# /proc/<pid>/stat and status are read before and after; pgbench's
# backends come and go with the run and are left out.  Lines start with
# L (the leader) or F (a follower).  Run as a normal user with pg_raft
# installed: runuser -u pgraft -- bash bench/wakeups.sh.  Works under
# RAFT_BASE (default /tmp/pg_raft_bench_wakeups); the exit trap stops
# every instance.

set -Eeuo pipefail
seconds="${1:-15}"
clients="${CLIENTS:-2}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_wakeups}"
source "$tree/bench/lib.sh"

raft=(25471 25472 25473)
all_ports=("${raft[@]}")

if [ "$(id -u)" = 0 ]; then
	echo "$0: run as a normal user (PostgreSQL refuses to run as root)" >&2
	exit 2
fi

bench_traps

# snapshot: "PID|ROLE|NAME|TICKS|SWITCHES" per process of every member
snapshot()
{
	local port role pid ticks switches
	for port in "${raft[@]}"; do
		role=F
		[ "$port" = "$leader" ] && role=L
		for pid in $(instance_pids "$port"); do
			ticks=$(cpu_ticks "$pid" | awk '{ print $2 }')
			switches=$(awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$pid/status" 2> /dev/null || true)
			[ -n "$ticks" ] && [ -n "$switches" ] || continue
			echo "$pid|$role|$(tr '\0' ' ' < "/proc/$pid/cmdline" | sed 's/ *$//' | cut -c1-44)|$ticks|$switches"
		done
	done
}

mkdir -p "$RAFT_BASE"
raft_pgbench_init "${raft[@]}"
leader=$(wait_for_leader "${raft[@]}") || fail "no writable leader"
"$PG_BIN/pgbench" -n -c "$clients" -j "$clients" -h 127.0.0.1 -p "$leader" -U postgres \
	-T 3 postgres > "$RAFT_BASE/warmup.log" 2>&1 || fail "pgbench failed, see $RAFT_BASE/warmup.log"
snapshot > "$RAFT_BASE/before"
"$PG_BIN/pgbench" -n -c "$clients" -j "$clients" -h 127.0.0.1 -p "$leader" -U postgres \
	-T "$seconds" postgres > "$RAFT_BASE/pgbench.log" 2>&1 || fail "pgbench failed, see $RAFT_BASE/pgbench.log"
snapshot > "$RAFT_BASE/after"
txns=$(awk '/^number of transactions actually processed: / { print $6 }' "$RAFT_BASE/pgbench.log")
echo "pgbench, $clients clients, $seconds s: $(awk '/^tps = / { printf "%.1f", $3 }' "$RAFT_BASE/pgbench.log") TPS"
awk -F'|' -v n="$txns" -v hz="$(getconf CLK_TCK)" '
	NR == FNR { ticks[$1] = $4; switches[$1] = $5; next }
	$1 in ticks {
		cpu = ($4 - ticks[$1]) * 1000 / hz / n
		woke = ($5 - switches[$1]) / n
		if (cpu >= 0.001 || woke >= 0.01)
			printf "%s %-46s %6.3f ms CPU %6.2f wakeups per transaction\n", $2, $3, cpu, woke
		all_cpu += cpu; all_woke += woke
	}
	END { printf "all %-44s %6.3f ms CPU %6.2f wakeups per transaction\n", "", all_cpu, all_woke }' \
	"$RAFT_BASE/before" "$RAFT_BASE/after" | sort
for port in "${raft[@]}"; do node_stop "$port"; done
