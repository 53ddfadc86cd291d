# bench/haproxy.sh: an HAProxy write port in front of a cluster, for the
# failover benchmarks (bench/failover.sh, bench/peers_failover.sh).  Source
# it; run as a normal user with Debian's haproxy installed.
#
#   haproxy_start DIR PORT CHECKS SERVER...
#       writes DIR/haproxy.cfg and starts HAProxy in the background (it
#       stops by itself after an hour; haproxy_stop stops it): a TCP proxy
#       on 127.0.0.1:PORT to the servers whose HTTP check passes.  CHECKS
#       are the config lines of the check (the peer's documented ones);
#       each SERVER is NAME:PG_PORT:CHECK_PORT.  Sets HAPROXY_PID.
#   haproxy_stop
#   haproxy_poll_insert PORT START_NS TABLE VALUE OUT
#       loops INSERT INTO TABLE VALUES (VALUE) through 127.0.0.1:PORT until
#       one is accepted, then writes the milliseconds since START_NS
#       (date +%s%N) to OUT.

HAPROXY_PID=""
HAPROXY="${HAPROXY:-/usr/sbin/haproxy}"

haproxy_start()
{
	local dir="$1" port="$2" checks="$3" server name pg_port check_port
	shift 3
	mkdir -p "$dir"
	{
		cat <<CFG
global
    maxconn 200

defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s

listen write
    bind 127.0.0.1:$port
$checks
CFG
		for server in "$@"; do
			IFS=: read -r name pg_port check_port <<< "$server"
			echo "    server $name 127.0.0.1:$pg_port check port $check_port"
		done
	} > "$dir/haproxy.cfg"
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
