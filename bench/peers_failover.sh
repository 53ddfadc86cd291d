#!/usr/bin/env bash
#
# bench/peers_failover.sh [TRIALS] [all|pg_auto_failover|patroni]: DESIGN.md's
# failover figure for the peers, so it can be printed beside pg_raft's
# (bench/failover.sh).
#
# The figure: the time from kill -9 of the primary's postmaster to the first
# INSERT accepted through a multi-host libpq conninfo with
# target_session_attrs=read-write, each peer with its DEFAULT settings, all
# on 127.0.0.1:
#
#   pg_auto_failover  a monitor (port 55430) and two data nodes (55431,
#                     55432) made with pg_autoctl create monitor/postgres
#                     --no-ssl --auth trust, each run by `pg_autoctl run`.
#   patroni           one etcd member (127.0.0.1:23790/23800) and two
#                     Patroni nodes (PG 55441/55442, REST 8008/8009) with a
#                     minimal YAML (etcd3, default ttl/loop_wait/retry_timeout).
#
# Before each trial the script waits until the cluster is healthy (one
# primary with one streaming standby; for pg_auto_failover the monitor also
# reports primary + secondary).  A trial loses the primary's node, as
# kill -9 of a pg_raft leader's postmaster does (its raft worker dies with
# it): it kills the node's agent (pg_autoctl or patroni) and then its
# postmaster with kill -9, so that the others must fail over.  With
# MODE=postmaster only the postmaster is killed and the agent does whatever
# its defaults do (restart it in place, mostly).  Then the trial loops
# psql -c "INSERT ..." on
# "host=127.0.0.1,127.0.0.1 port=P1,P2 ... target_session_attrs=read-write
# connect_timeout=2" until one succeeds.  For Patroni, a second poller
# measures at the same time the first INSERT accepted through HAProxy's
# write port, with the checks of Patroni's documentation at their defaults
# (OPTIONS /primary, inter 3s fall 3 rise 2).  The times include the
# polling (a psql per attempt).  Each trial has a hard timeout (TRIAL_TIMEOUT, 180 s) and
# each wait for health one of HEALTH_TIMEOUT (300 s); a peer that cannot be
# set up or measured is reported as "not measured: <reason>".  Prints every
# trial and one summary line per peer, in bench/failover.sh's format.
#
# Needs the Debian packages postgresql-15, postgresql-15-auto-failover,
# pg-auto-failover-cli, patroni and etcd-server (root installs them; if the
# install started an etcd or a postgres, stop it first).  Run as a normal
# user, e.g. runuser -u pgraft -- bash bench/peers_failover.sh 3 all.  Works
# under PEERS_BASE (default /tmp/peers_bench_failover, wiped at start); the
# cleanup trap stops every process the script started.

set -uo pipefail
trials="${1:-3}"
source "$(dirname "${BASH_SOURCE[0]}")/haproxy.sh"
which_peers="${2:-all}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
BASE="${PEERS_BASE:-/tmp/peers_bench_failover}"
TRIAL_TIMEOUT="${TRIAL_TIMEOUT:-180}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-300}"
export PATH="$PG_BIN:/usr/local/bin:/usr/bin:/bin"
export XDG_CONFIG_HOME="$BASE/xdg_config" XDG_DATA_HOME="$BASE/xdg_data"
export PGHOST="$BASE/sock" PGUSER=postgres PGDATABASE=postgres

case "$which_peers" in
	all) peers=(pg_auto_failover patroni) ;;
	pg_auto_failover|patroni) peers=("$which_peers") ;;
	*) echo "usage: $0 [TRIALS] [all|pg_auto_failover|patroni]" >&2; exit 2 ;;
esac
if [ "$(id -u)" = 0 ]; then
	echo "$0: run as a normal user (PostgreSQL refuses to run as root)" >&2
	exit 2
fi

pids=()        # every background process started (agents, etcd)
declare -A agent_of    # data directory -> its agent's PID
MODE="${MODE:-node}"
datadirs=()    # every data directory, stopped at exit in case
# descendants PID...: the PIDs and all their descendants.
descendants()
{
	local p
	for p in "$@"; do
		echo "$p"
		descendants $(pgrep -P "$p")
	done
}

cleanup()
{
	local p d all
	# an agent's services are its children: stop them with it
	all=$(descendants "${pids[@]}")
	for p in $all; do kill -TERM "$p" 2> /dev/null; done
	for p in $all; do
		for _ in $(seq 1 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.2; done
		kill -KILL "$p" 2> /dev/null
	done
	for d in "${datadirs[@]}"; do
		[ -f "$d/postmaster.pid" ] && "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop > /dev/null 2>&1
	done
	pids=()
	datadirs=()
	return 0
}
trap 'haproxy_stop; cleanup' EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
sql() { psql -X -q -A -t -h 127.0.0.1 -p "$1" -c "$2" 2> /dev/null; }

# Print the port of the primary with exactly one streaming standby, if any.
healthy_primary()
{
	local port
	for port in "$@"; do
		if [ "$(sql "$port" "SELECT NOT pg_is_in_recovery() AND (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming') = 1")" = t ]; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

missing()
{
	local b
	for b in "$@"; do
		command -v "$b" > /dev/null 2>&1 || { echo "$b not found"; return 0; }
	done
	return 1
}

summary()
{
	local peer="$1" file="$2"
	sort -n "$file" | awk -v peer="$peer" '
		{ v[NR] = $1 }
		END {
			p50 = v[int((NR + 1) * 0.50)]; p90 = v[int((NR * 0.90) + 0.5)]
			printf "%s failover (kill -9 primary -> INSERT accepted via target_session_attrs=read-write), %d trials, defaults: p50 %d ms, p90 %d ms, max %d ms\n", peer, NR, p50, p90, v[NR]
		}'
}

not_measured()
{
	echo "$1 failover (kill -9 primary -> INSERT accepted via target_session_attrs=read-write): not measured: $2"
}

# kill_tree PID: kill -9 a process and all its descendants (pg_autoctl's
# services, for one, are children of the pg_autoctl run process).
kill_tree()
{
	local child
	for child in $(pgrep -P "$1"); do kill_tree "$child"; done
	kill -9 "$1" 2> /dev/null
}

# run_trials PEER HEALTH_FN DATADIR_FN START_AGENT_FN PORT1 PORT2: the
# measurement itself.  HEALTH_FN prints the primary's port once healthy;
# DATADIR_FN PORT prints the data directory of the node on PORT;
# START_AGENT_FN DIR starts that node's agent again after a trial.
run_trials()
{
	local peer="$1" health="$2" datadir_of="$3" start_agent="$4" p1="$5" p2="$6" haproxy_port="${7:-}"
	local results="$BASE/$peer.failover_ms" conninfo primary start deadline pid trial ms served dir
	local via_haproxy="$BASE/$peer.haproxy_ms" poller="" haproxy_ms=""
	: > "$via_haproxy"
	conninfo="host=127.0.0.1,127.0.0.1 port=$p1,$p2 dbname=postgres user=postgres target_session_attrs=read-write connect_timeout=2"
	: > "$results"
	for trial in $(seq 1 "$trials"); do
		deadline=$(( $(now_ms) + HEALTH_TIMEOUT * 1000 ))
		until primary=$("$health"); do
			if [ "$(now_ms)" -gt "$deadline" ]; then
				not_measured "$peer" "cluster not healthy within ${HEALTH_TIMEOUT} s before trial $trial"
				return 1
			fi
			sleep 0.5
		done
		if [ "$trial" = 1 ]; then
			sql "$primary" "CREATE TABLE IF NOT EXISTS bench_failover (trial int, at timestamptz DEFAULT now())" > /dev/null
			sleep 1    # let the standby replay it
		fi
		dir=$("$datadir_of" "$primary")
		pid=$(head -n 1 "$dir/postmaster.pid")
		start=$(now_ms)
		if [ "$MODE" = node ]; then
			kill_tree "${agent_of[$dir]}"
		fi
		kill -9 "$pid" 2> /dev/null
		if [ -n "$haproxy_port" ]; then
			rm -f "$BASE/haproxy_trial_ms"
			haproxy_poll_insert "$haproxy_port" "${start}000000" bench_failover "$trial" "$BASE/haproxy_trial_ms" &
			poller=$!
		fi
		ms=""
		while [ -z "$ms" ]; do
			if psql -X -q -d "$conninfo" -c "INSERT INTO bench_failover VALUES ($trial)" > /dev/null 2>&1; then
				ms=$(( $(now_ms) - start ))
			elif [ $(( $(now_ms) - start )) -gt $(( TRIAL_TIMEOUT * 1000 )) ]; then
				not_measured "$peer" "no INSERT accepted within ${TRIAL_TIMEOUT} s of kill -9 in trial $trial"
				return 1
			else
				sleep 0.05
			fi
		done
		served=$(psql -X -A -t -d "$conninfo" -c "SELECT current_setting('port')" 2> /dev/null)
		echo "$ms" >> "$results"
		if [ -n "$poller" ]; then
			wait "$poller"
			haproxy_ms=$(cat "$BASE/haproxy_trial_ms")
			echo "$haproxy_ms" >> "$via_haproxy"
			haproxy_ms=", $haproxy_ms ms through HAProxy"
		fi
		printf '%s trial %d: primary %s lost (%s); INSERT accepted after %d ms (by the node on port %s)%s\n' \
			"$peer" "$trial" "$primary" "$MODE" "$ms" "${served:-?}" "$haproxy_ms"
		if [ "$MODE" = node ]; then
			"$start_agent" "$dir"
		fi
	done
	summary "$peer" "$results"
	if [ -s "$via_haproxy" ]; then
		sort -n "$via_haproxy" | awk -v peer="$peer" '
			{ v[NR] = $1 }
			END {
				p50 = v[int((NR + 1) * 0.50)]; p90 = v[int((NR * 0.90) + 0.5)]
				printf "%s failover (kill -9 primary -> INSERT accepted via HAProxy, REST checks at the documented defaults), %d trials: p50 %d ms, p90 %d ms, max %d ms\n", peer, NR, p50, p90, v[NR]
			}'
	fi
}

# ---------------------------------------------------------------- pg_auto_failover
pgaf_mon_port=55430
pgaf_ports=(55431 55432)
pgaf_dir() { echo "$BASE/pgaf/node_$1"; }
pgaf_monitor_uri="postgres://autoctl_node@127.0.0.1:$pgaf_mon_port/pg_auto_failover?sslmode=disable"

pgaf_states()
{
	psql -X -A -t -d "$pgaf_monitor_uri" -c \
		"SELECT string_agg(nodeport || ':' || reportedstate || '/' || goalstate, ' ' ORDER BY nodeport) FROM pgautofailover.node" 2> /dev/null
}

pgaf_health()
{
	local states primary
	states=$(pgaf_states) || return 1
	case " $states " in
		*":primary/primary "*) ;;
		*) return 1 ;;
	esac
	case " $states " in
		*":secondary/secondary "*) ;;
		*) return 1 ;;
	esac
	primary=$(healthy_primary "${pgaf_ports[@]}") || return 1
	case " $states " in
		*" $primary:primary/primary "*) echo "$primary" ;;
		*) return 1 ;;
	esac
}

pgaf_wait_state()   # PORT STATE TIMEOUT_S
{
	local deadline=$(( $(now_ms) + $3 * 1000 ))
	until [[ " $(pgaf_states) " == *" $1:$2/$2 "* ]]; do
		[ "$(now_ms)" -gt "$deadline" ] && return 1
		sleep 0.5
	done
}

# pg_autoctl runs initdb with the binaries' default socket directory
# (/var/run/postgresql, not writable by a normal user): so initdb the monitor
# and the first node here with unix_socket_directories under $BASE; the
# second node is a pg_basebackup of the first and inherits it.
pgaf_initdb()
{
	"$PG_BIN/initdb" -D "$1" -A trust -U "$2" --no-sync > "$1.initdb.log" 2>&1 || return 1
	echo "unix_socket_directories = '$BASE/sock'" >> "$1/postgresql.conf"
}

pgaf_start_agent()
{
	pg_autoctl run --pgdata "$1" >> "$1.run.log" 2>&1 &
	pids+=($!)
	agent_of[$1]=$!
}

pgaf_setup()
{
	local why mon="$BASE/pgaf/monitor" d port first=1
	why=$(missing pg_autoctl "$PG_BIN/initdb") && { echo "$why (install postgresql-15-auto-failover and pg-auto-failover-cli)"; return 1; }
	"$PG_BIN/postgres" -V > /dev/null
	mkdir -p "$BASE/pgaf"
	datadirs+=("$mon")
	pgaf_initdb "$mon" postgres || { echo "initdb of the monitor failed"; return 1; }
	timeout 120 pg_autoctl create monitor --pgdata "$mon" --pgport "$pgaf_mon_port" \
		--hostname 127.0.0.1 --auth trust --no-ssl --pgctl "$PG_BIN/pg_ctl" > "$mon.create.log" 2>&1 \
		|| { echo "pg_autoctl create monitor failed, see $mon.create.log"; return 1; }
	pgaf_start_agent "$mon"
	for port in "${pgaf_ports[@]}"; do
		d=$(pgaf_dir "$port")
		datadirs+=("$d")
		if [ "$first" = 1 ]; then
			pgaf_initdb "$d" postgres || { echo "initdb of node $port failed"; return 1; }
		fi
		timeout 300 pg_autoctl create postgres --pgdata "$d" --pgport "$port" --pgctl "$PG_BIN/pg_ctl" \
			--hostname 127.0.0.1 --name "node_$port" --username postgres --dbname postgres \
			--auth trust --no-ssl --monitor "$pgaf_monitor_uri" > "$d.create.log" 2>&1 \
			|| { echo "pg_autoctl create postgres failed on port $port, see $d.create.log"; return 1; }
		pgaf_start_agent "$d"
		if [ "$first" = 1 ]; then
			pgaf_wait_state "$port" single 120 || { echo "node $port never became single: $(pgaf_states)"; return 1; }
			first=0
		fi
	done
	return 0
}

# ---------------------------------------------------------------- Patroni
pat_ports=(55441 55442)
pat_haproxy_port=55450
pat_dir() { echo "$BASE/patroni/node_$1"; }

pat_health()
{
	healthy_primary "${pat_ports[@]}"
}

pat_start_agent()
{
	patroni "$1.yml" >> "$1.patroni.log" 2>&1 &
	pids+=($!)
	agent_of[$1]=$!
}

pat_setup()
{
	local why port i=0 d yaml
	why=$(missing patroni etcd "$PG_BIN/initdb") && { echo "$why (install patroni and etcd-server)"; return 1; }
	mkdir -p "$BASE/patroni"
	etcd --name e1 --data-dir "$BASE/patroni/etcd" \
		--listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
		--listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
		--initial-cluster e1=http://127.0.0.1:23800 --initial-cluster-state new \
		> "$BASE/patroni/etcd.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 100); do
		python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:23790/health", timeout=1)' 2> /dev/null && break
		sleep 0.2
	done
	python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:23790/health", timeout=1)' 2> /dev/null \
		|| { echo "etcd did not start, see $BASE/patroni/etcd.log"; return 1; }
	for port in "${pat_ports[@]}"; do
		d=$(pat_dir "$port")
		yaml="$d.yml"
		datadirs+=("$d")
		cat > "$yaml" <<YAML
scope: bench_failover
name: node_$port
restapi:
  listen: 127.0.0.1:$((8008 + i))
  connect_address: 127.0.0.1:$((8008 + i))
etcd3:
  hosts: 127.0.0.1:23790
bootstrap:
  dcs: {}    # Patroni 3.0.2 requires the key; empty keeps the defaults
  initdb:
  - encoding: UTF8
  - auth: trust
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$port
  connect_address: 127.0.0.1:$port
  data_dir: $d
  bin_dir: $PG_BIN
  pgpass: $d.pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
  use_pg_rewind: true    # so that a lost primary can rejoin between trials
  parameters:
    unix_socket_directories: '$BASE/sock'
    wal_log_hints: 'on'
YAML
		pat_start_agent "$d"
		if [ "$i" = 0 ]; then
			for _ in $(seq 1 120); do
				[ "$(sql "$port" "SELECT NOT pg_is_in_recovery()")" = t ] && break
				sleep 0.5
			done
			[ "$(sql "$port" "SELECT NOT pg_is_in_recovery()")" = t ] \
				|| { echo "the first Patroni node did not become leader, see $d.patroni.log"; return 1; }
		fi
		i=$((i + 1))
	done
	return 0
}

# ---------------------------------------------------------------- main
# (the setup functions run in this shell, not in $(...), so that pids and
# datadirs reach cleanup; they print only the reason they failed)
rm -rf "$BASE"
mkdir -p "$BASE/sock"
for peer in "${peers[@]}"; do
	case "$peer" in
	pg_auto_failover)
		if pgaf_setup > "$BASE/why"; then
			run_trials pg_auto_failover pgaf_health pgaf_dir pgaf_start_agent "${pgaf_ports[@]}"
		else
			not_measured pg_auto_failover "$(cat "$BASE/why")"
		fi ;;
	patroni)
		if pat_setup > "$BASE/why"; then
			# Patroni's documented HAProxy write port
			if [ -x "$HAPROXY" ] && haproxy_start "$BASE/haproxy" "$(haproxy_listen write "$pat_haproxy_port" \
				"    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions" \
				"node_${pat_ports[0]}:${pat_ports[0]}:8008" "node_${pat_ports[1]}:${pat_ports[1]}:8009")"; then
				run_trials patroni pat_health pat_dir pat_start_agent "${pat_ports[@]}" "$pat_haproxy_port"
				haproxy_stop
			else
				run_trials patroni pat_health pat_dir pat_start_agent "${pat_ports[@]}"
			fi
		else
			not_measured patroni "$(cat "$BASE/why")"
		fi ;;
	esac
	cleanup
done
