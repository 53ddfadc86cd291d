#!/usr/bin/env bash
#
# bench/migration.sh [SCALE]: how long a schema migration of 20 statements
# takes on a 3-member pg_raft cluster, beside the same migration on a
# single instance with the same settings.
#
# Each side gets pgbench -i -s SCALE (default 10), then the migration runs
# in one psql session, one statement per transaction (as migration tools
# do), timed from its first statement to its last COMMIT; psql's time for
# each statement is printed too.  On the cluster
# every statement travels through the Raft log (each COMMIT waits for a
# majority), and at the end every member must hold the same schema and the
# same rows.
#
# Run as a normal user with pg_raft installed; works under RAFT_BASE
# (default /tmp/pg_raft_bench_migration), and the exit trap stops every
# instance.

set -euo pipefail
scale="${1:-10}"
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAFT_BASE="${RAFT_BASE:-/tmp/pg_raft_bench_migration}"
source "$tree/bench/lib.sh"
ports=(25361 25362 25363)
single=25364
mkdir -p "$RAFT_BASE"
cleanup()
{
	for p in "${ports[@]}" "$single"; do node_stop "$p"; done
}
trap cleanup EXIT

migration()
{
	cat <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 10000) g;
ALTER TABLE pgbench_accounts ADD COLUMN customer int;
UPDATE pgbench_accounts SET customer = aid % 10000 + 1 WHERE aid <= 100000;
ALTER TABLE pgbench_accounts ADD CONSTRAINT accounts_customer_fk FOREIGN KEY (customer) REFERENCES customers;
CREATE INDEX accounts_customer ON pgbench_accounts (customer);
ALTER TABLE pgbench_accounts ADD COLUMN opened date DEFAULT '2026-01-01';
ALTER TABLE pgbench_history ADD COLUMN channel text DEFAULT 'web' NOT NULL;
CREATE INDEX history_mtime ON pgbench_history (mtime);
ALTER TABLE customers ADD COLUMN tier text DEFAULT 'basic' NOT NULL;
UPDATE customers SET tier = 'gold' WHERE id % 10 = 0;
ALTER TABLE customers RENAME COLUMN name TO full_name;
CREATE TYPE account_state AS ENUM ('open', 'frozen', 'closed');
ALTER TABLE pgbench_accounts ADD COLUMN state account_state DEFAULT 'open';
CREATE VIEW customer_balances AS SELECT c.id, c.full_name, sum(a.abalance) AS balance FROM customers c JOIN pgbench_accounts a ON a.customer = c.id GROUP BY c.id, c.full_name;
CREATE MATERIALIZED VIEW branch_totals AS SELECT bid, sum(abalance) AS total FROM pgbench_accounts GROUP BY bid;
CREATE FUNCTION customer_of(account int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT customer FROM pgbench_accounts WHERE aid = account $$;
ALTER TABLE pgbench_tellers DROP COLUMN filler;
COMMENT ON TABLE customers IS 'who holds the accounts';
GRANT SELECT ON customer_balances TO PUBLIC;
SQL
}

# time_migration PORT FILE: milliseconds from the first statement to the
# last COMMIT; psql's time for each statement goes to FILE
time_migration()
{
	local start end
	start=$(date +%s%N)
	{ echo '\timing on'; migration; } |
		"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RAFT_BASE" -p "$1" -U postgres -d postgres |
		sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' > "$2"
	end=$(date +%s%N)
	echo $(( (end - start) / 1000000 ))
}

statements=$(migration | grep -c ';$')
instance_init single "$single"
"$PG_BIN/pgbench" -i -q -s "$scale" -h "$RAFT_BASE" -p "$single" -U postgres postgres > /dev/null 2>&1
single_ms=$(time_migration "$single" "$RAFT_BASE/single.times")

for port in "${ports[@]}"; do node_init "node_$port" "$port"; done
cluster_form "${ports[@]}"
leader=$(wait_for_leader "${ports[@]}") || { echo "no leader"; exit 1; }
"$PG_BIN/pgbench" -i -q -s "$scale" -h "$RAFT_BASE" -p "$leader" -U postgres postgres > /dev/null 2>&1
raft_ms=$(time_migration "$leader" "$RAFT_BASE/raft.times")

index=$(node_sql "$leader" "SELECT commit_index FROM raft.status")
check="SELECT md5(string_agg(format('%s %s %s', attrelid::regclass, attname, format_type(atttypid, atttypmod)), ',' ORDER BY attrelid::regclass::text, attnum))
	|| ' ' || raft.table_checksum('pgbench_accounts') || ' ' || raft.table_checksum('customers')
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped"
sums=()
for port in "${ports[@]}"; do
	node_sql "$port" "SELECT raft.wait_for_index($index, '60s')" > /dev/null
	sums+=("$(node_sql "$port" "$check")")
done
if [ "$(printf '%s\n' "${sums[@]}" | sort -u | wc -l)" -ne 1 ]; then
	echo "the members hold different schemas or rows"
	exit 1
fi

printf 'migration of %d statements, pgbench scale %d, one transaction per statement\n' "$statements" "$scale"
printf '%-34s %8s\n' "configuration" "time"
printf '%-34s %6d ms\n' "single instance" "$single_ms"
printf '%-34s %6d ms  (%sx)\n' "pg_raft, 3 members, synchronous" "$raft_ms" \
	"$(awk -v a="$raft_ms" -v b="$single_ms" 'BEGIN { printf "%.2f", a / b }')"
echo "every member holds the same schema and rows"
echo
printf '%-8s %8s %8s  %s\n' "single" "pg_raft" "" "statement"
migration | cut -c1-70 | paste "$RAFT_BASE/single.times" "$RAFT_BASE/raft.times" - |
	awk -F '\t' '{ printf "%6.1f ms %6.1f ms  %s\n", $1, $2, $3 }'
