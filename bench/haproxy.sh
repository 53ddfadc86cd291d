# bench/haproxy.sh: HAProxy in front of a cluster, for the benchmarks
# (bench/failover.sh, bench/peers_failover.sh, bench/idle.sh).  Source it;
# run as a normal user with Debian's haproxy installed.
#
#   haproxy_listen NAME PORT CHECKS SERVER...
#       prints a TCP proxy section: 127.0.0.1:PORT to the servers whose
#       HTTP check passes.  CHECKS are the config lines of the check (the
#       peer's documented ones); each SERVER is NAME:PG_PORT:CHECK_PORT.
#   haproxy_start DIR SECTIONS
#       writes DIR/haproxy.cfg with those sections and starts HAProxy in
#       the background (it stops by itself after an hour; haproxy_stop
#       stops it).  Sets HAPROXY_PID.
#   haproxy_stop
#   haproxy_poll_insert PORT START_NS TABLE VALUE OUT
#       loops INSERT INTO TABLE VALUES (VALUE) through 127.0.0.1:PORT until
#       one is accepted, then writes the milliseconds since START_NS
#       (date +%s%N) to OUT.

HAPROXY_PID=""
HAPROXY="${HAPROXY:-/usr/sbin/haproxy}"

haproxy_listen()
{
	local name="$1" port="$2" checks="$3" server server_name pg_port check_port
	shift 3
	printf '\nlisten %s\n    bind 127.0.0.1:%s\n%s\n' "$name" "$port" "$checks"
	for server in "$@"; do
		IFS=: read -r server_name pg_port check_port <<< "$server"
		echo "    server $server_name 127.0.0.1:$pg_port check port $check_port"
	done
}

haproxy_start()
{
	local dir="$1" sections="$2"
	mkdir -p "$dir"
	cat > "$dir/haproxy.cfg" <<CFG
global
    maxconn 200

defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
$sections
CFG
	"$HAPROXY" -c -q -f "$dir/haproxy.cfg" || return 1
	timeout 3600 "$HAPROXY" -db -f "$dir/haproxy.cfg" > "$dir/haproxy.log" 2>&1 &
	HAPROXY_PID=$!
}

haproxy_stop()
{
	[ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2> /dev/null
	HAPROXY_PID=""
	return 0
}

haproxy_poll_insert()
{
	local port="$1" start="$2" table="$3" value="$4" out="$5"
	until "${PG_BIN:-/usr/lib/postgresql/15/bin}/psql" -X -q -d "host=127.0.0.1 port=$port dbname=postgres user=postgres connect_timeout=2" \
		-c "INSERT INTO $table VALUES ($value)" > /dev/null 2>&1; do
		sleep 0.02
	done
	echo $(( ($(date +%s%N) - start) / 1000000 )) > "$out"
}

# The checks of docs/operations.md's configuration for pg_raft.
PG_RAFT_WRITE_CHECKS="    retries 0
    option httpchk
    http-check send meth GET uri /leader
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions"
PG_RAFT_READ_CHECKS="    retries 0
    balance roundrobin
    option httpchk
    http-check send meth GET uri /replica?lag=1s
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions"
