# Copyright (c) pg_raft contributors
#
# Schema changes travel through the Raft log, in order with the rows.
#
#  - after the cluster forms, the leader runs every common form of DDL,
#    mixed with writes; afterwards pg_dump --schema-only is identical on
#    every member and every table's raft.table_checksum is equal;
#  - CREATE TABLE AS and SELECT INTO: the followers do not compute the
#    rows (random() values arrive equal);
#  - an event trigger fires on the leader only; what it writes travels as
#    rows;
#  - DDL inside DO blocks and functions travels; an aborted DDL
#    transaction and a rolled-back savepoint reach nobody; temporary
#    objects stay on the leader;
#  - forms whose result would differ on the followers are refused with a
#    hint;
#  - a role's password travels as its hash, never in clear (a join copies
#    the hashes too), and a SCRAM login works on the new leader after
#    kill -9 of the old one;
#  - the new leader takes DDL and writes, and the old one catches up.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
# password logins for role app over TCP, before the trust lines
foreach my $node (@nodes)
{
	my $hba = $node->data_dir . '/pg_hba.conf';
	my $lines = PostgreSQL::Test::Utils::slurp_file($hba);
	open(my $fh, '>', $hba) or die "could not write $hba: $!";
	print $fh "host all app 127.0.0.1/32 scram-sha-256\n" . $lines;
	close($fh);
	$node->reload;
}
# a role made before the cluster forms: the joins copy its password hash
$nodes[0]->safe_psql('postgres', q{CREATE ROLE early LOGIN PASSWORD 'made before the cluster'});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;
my $early = $nodes[0]->safe_psql('postgres', q{SELECT rolpassword FROM pg_authid WHERE rolname = 'early'});
is($_->safe_psql('postgres', q{SELECT rolpassword FROM pg_authid WHERE rolname = 'early'}), $early,
	'a join copies a role\'s password hash to ' . $_->name)
  foreach @nodes[ 1 .. 2 ];

# A migration like an application's, statement by statement, with writes
# between them.
$leader->safe_psql('postgres', q{
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 200) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int, amount numeric(10,2));
INSERT INTO orders (customer, amount) SELECT g % 200 + 1, g FROM generate_series(1, 500) g;
ALTER TABLE customers ADD COLUMN tier text DEFAULT 'basic' NOT NULL;
ALTER TABLE customers ADD COLUMN since timestamptz NOT NULL DEFAULT now();
UPDATE customers SET tier = 'gold' WHERE id % 10 = 0;
CREATE INDEX orders_customer ON orders (customer);
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer) REFERENCES customers;
ALTER TABLE customers RENAME COLUMN name TO full_name;
ALTER TABLE orders ADD COLUMN note text;
ALTER TABLE orders DROP COLUMN note;
ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12,2);
CREATE VIEW big_spenders AS
	SELECT c.full_name, sum(o.amount) AS total FROM customers c JOIN orders o ON o.customer = c.id
	GROUP BY c.full_name;
INSERT INTO orders (customer, amount) VALUES (1, 99.99);
UPDATE customers SET full_name = upper(full_name) WHERE id < 5;});
RaftCluster::same_everywhere('a migration', @nodes);
is($followers[0]->safe_psql('postgres', q{SELECT tier FROM customers WHERE id = 10}), 'gold',
	'a column added with a default and back-filled arrives with its values');
is($followers[0]->safe_psql('postgres', q{SELECT count(DISTINCT since) FROM customers}), '1',
	'a column added with DEFAULT now() holds the leader\'s time in the rows that were there');

# every other common form
$leader->safe_psql('postgres', q{
CREATE SCHEMA app
	CREATE TABLE settings (key text PRIMARY KEY, value text)
	CREATE VIEW settings_view AS SELECT key FROM settings;
INSERT INTO app.settings VALUES ('a', '1');
CREATE INDEX CONCURRENTLY customers_tier ON customers (tier);
CREATE UNIQUE INDEX customers_name ON customers (full_name);
DROP INDEX customers_name;
CREATE SEQUENCE invoice_numbers START 1000 INCREMENT 10;
ALTER SEQUENCE invoice_numbers INCREMENT 5;
CREATE SEQUENCE scratch;
DROP SEQUENCE scratch;
CREATE TYPE mood AS ENUM ('sad', 'ok');
ALTER TYPE mood ADD VALUE 'happy';
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE feelings (id int PRIMARY KEY, m mood, p pair, n positive);
CREATE FUNCTION add_feeling(i int) RETURNS void LANGUAGE sql AS $$ INSERT INTO feelings VALUES (i, 'ok', ROW(i, 'x'), i) $$;
CREATE PROCEDURE add_feelings(n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. n LOOP PERFORM add_feeling(i); END LOOP;
END $$;
CALL add_feelings(20);
INSERT INTO feelings VALUES (100, 'happy', NULL, NULL);
CREATE TABLE audit (id serial PRIMARY KEY, what text);
CREATE FUNCTION audit_feeling() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO audit (what) VALUES ('feeling ' || NEW.id);
	RETURN NEW;
END $$;
CREATE TRIGGER feelings_audit AFTER INSERT ON feelings FOR EACH ROW EXECUTE FUNCTION audit_feeling();
INSERT INTO feelings VALUES (101, 'sad', NULL, 1);
CREATE MATERIALIZED VIEW mood_counts AS SELECT m, count(*) AS n FROM feelings GROUP BY m;
INSERT INTO feelings VALUES (102, 'sad', NULL, 2);
REFRESH MATERIALIZED VIEW mood_counts;
CREATE UNIQUE INDEX mood_counts_m ON mood_counts (m);
REFRESH MATERIALIZED VIEW CONCURRENTLY mood_counts;
CREATE EXTENSION citext;
CREATE TABLE tags (name citext PRIMARY KEY);
INSERT INTO tags VALUES ('Alpha'), ('beta');
COMMENT ON TABLE tags IS 'labels';
CREATE ROLE reader;
GRANT SELECT ON tags TO reader;
REVOKE SELECT ON tags FROM reader;
GRANT SELECT ON customers TO reader;
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY gold_only ON customers FOR SELECT TO reader USING (tier = 'gold');
CREATE TABLE events (id int, part int, PRIMARY KEY (id, part)) PARTITION BY LIST (part);
CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
CREATE TABLE events_2 (id int NOT NULL, part int NOT NULL);
INSERT INTO events_2 VALUES (1, 2);
ALTER TABLE events ATTACH PARTITION events_2 FOR VALUES IN (2);
INSERT INTO events VALUES (1, 1), (2, 2);
ALTER TABLE events DETACH PARTITION events_1;
ALTER TABLE events_1 RENAME TO events_old;
DROP TABLE events_old;
CREATE TABLE randoms AS SELECT g AS id, random() AS x FROM generate_series(1, 100) g;
SELECT g AS id, random() AS x INTO randoms_too FROM generate_series(1, 50) g;
CREATE TABLE randoms_empty AS SELECT 1 AS id WITH NO DATA;
DO $$
BEGIN
	EXECUTE 'CREATE TABLE made_in_do (id int PRIMARY KEY, note text)';
	INSERT INTO made_in_do VALUES (1, 'from a DO block');
END $$;
CREATE FUNCTION make_table(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY)', name);
	EXECUTE format('INSERT INTO %I VALUES (1), (2)', name);
END $$;
SELECT make_table('made_in_function');
BEGIN;
CREATE TABLE never (id int);
INSERT INTO never VALUES (1);
ROLLBACK;
BEGIN;
CREATE TABLE kept (id int PRIMARY KEY);
SAVEPOINT s;
CREATE TABLE dropped_with_savepoint (id int);
ROLLBACK TO SAVEPOINT s;
INSERT INTO kept VALUES (1);
COMMIT;
CREATE TEMP TABLE scratchpad (id int);
ALTER TABLE scratchpad ADD COLUMN note text;
INSERT INTO scratchpad VALUES (1, 'local');
CREATE INDEX ON scratchpad (id);
DROP TABLE scratchpad;
CREATE TABLE ddl_log (id serial PRIMARY KEY, tag text);
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO ddl_log (tag) VALUES (tg_tag);
END $$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();
CREATE TABLE seen_by_event_trigger (id int);
ALTER TABLE seen_by_event_trigger ADD COLUMN note text;
DROP EVENT TRIGGER log_ddl;
SET search_path = app, public;
CREATE TABLE in_app_schema (id int PRIMARY KEY);
INSERT INTO in_app_schema VALUES (7);
RESET search_path;});
RaftCluster::same_everywhere('every form', @nodes);

foreach my $node (@followers)
{
	my $name = $node->name;
	is($node->safe_psql('postgres', q{SELECT count(*) FROM audit}), '2',
		"rows a trigger wrote on the leader arrive once on $name (triggers do not fire there)");
	is($node->safe_psql('postgres', q{SELECT string_agg(m || '=' || n, ',' ORDER BY m) FROM mood_counts}),
		'sad=2,ok=20,happy=1', "the materialized view is computed on $name");
	is($node->safe_psql('postgres', q{SELECT to_regclass('never') IS NULL AND to_regclass('dropped_with_savepoint') IS NULL}),
		't', "an aborted transaction's and a rolled-back savepoint's tables are not on $name");
	is($node->safe_psql('postgres', q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'customers_tier'::regclass}),
		't', "an index built concurrently on the leader is valid on $name");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tags WHERE name = 'ALPHA'}), '1',
		"the extension works on $name");
	is($node->safe_psql('postgres', q{SELECT string_agg(tag, ',' ORDER BY id) FROM ddl_log}),
		'CREATE TABLE,ALTER TABLE',
		"an event trigger's rows arrive once on $name (it does not fire there)");
}

# refused, because the members would compute different values
my @refused = (
	[ q{ALTER TABLE customers ADD COLUMN token float8 DEFAULT random()}, qr/volatile default/ ],
	[ q{ALTER TABLE customers ADD COLUMN serial_no serial}, qr/volatile default/ ],
	[ q{ALTER TABLE orders ALTER COLUMN amount TYPE float8 USING amount * random()}, qr/USING expression that is not immutable/ ],
	[ q{ALTER TABLE orders ALTER COLUMN amount TYPE text USING now()::text}, qr/USING expression that is not immutable/ ],
	[ q{CREATE UNLOGGED TABLE u (id int); INSERT INTO u VALUES (1); ALTER TABLE u SET LOGGED}, qr/SET LOGGED/ ],
	[ q{PREPARE q AS SELECT 1; CREATE TABLE from_prepared AS EXECUTE q}, qr/CREATE TABLE AS EXECUTE/ ],
	[ q{CREATE TABLESPACE ts LOCATION '/nonexistent'}, qr/tablespaces/ ],
	[ q{ALTER TABLE events DETACH PARTITION events_2 CONCURRENTLY}, qr/DETACH PARTITION CONCURRENTLY/ ],);
foreach my $case (@refused)
{
	my ($ret, $out, $err) = $leader->psql('postgres', $case->[0]);
	like($err, qr/ERROR:  pg_raft cannot replicate/, "refused: $case->[0]");
	like($err, $case->[1], '... saying why');
}
my ($ret, $out, $err) = $leader->psql('postgres',
	q{DO $$ DECLARE n int := 5; BEGIN CREATE TABLE from_variable AS SELECT n; END $$});
like($err, qr/cannot replicate CREATE TABLE AS with parameters/,
	'CREATE TABLE AS with a PL/pgSQL variable is refused');
like($err, qr/HINT:  Create the table with CREATE TABLE/, '... with a hint');
# an empty table takes a volatile default: no row computes anything
$leader->safe_psql('postgres', q{
CREATE TABLE fresh (id int);
ALTER TABLE fresh ADD COLUMN token float8 DEFAULT random();
ALTER TABLE fresh ADD COLUMN n serial;
INSERT INTO fresh (id) VALUES (1), (2);});
RaftCluster::same_everywhere('after the refusals', @nodes);

# roles: the password travels as its hash
$leader->safe_psql('postgres', q{
CREATE ROLE app LOGIN PASSWORD 'correct horse battery staple';
GRANT SELECT ON tags TO app;});
RaftCluster::wait_for_apply($leader, @followers);
my $hash = $leader->safe_psql('postgres', q{SELECT rolpassword FROM pg_authid WHERE rolname = 'app'});
like($hash, qr/^SCRAM-SHA-256\$/, 'the leader stores a SCRAM hash');
is($_->safe_psql('postgres', q{SELECT rolpassword FROM pg_authid WHERE rolname = 'app'}), $hash,
	'the same hash is stored on ' . $_->name)
  foreach @followers;
my $clear = 0;
foreach my $node (@nodes)
{
	my $dir = $node->data_dir . '/pg_raft';
	opendir(my $dh, $dir) or die "could not open $dir: $!";
	foreach my $file (grep { -f "$dir/$_" } readdir $dh)
	{
		$clear++ if PostgreSQL::Test::Utils::slurp_file("$dir/$file") =~ /battery staple/;
	}
	closedir $dh;
}
is($clear, 0, 'the password is in no member\'s raft log in clear');
$leader->safe_psql('postgres', q{ALTER ROLE app PASSWORD 'new secret'});

# kill -9 of the leader: the new leader holds the schema, takes DDL and
# writes, and takes a SCRAM login with the new password
$leader->kill9;
my $old = $leader;
$leader = RaftCluster::wait_for_leader(@followers);
my $login = 'host=127.0.0.1 port=' . $leader->port . ' dbname=postgres user=app password=\'new secret\'';
is($leader->safe_psql('postgres', 'SELECT current_user, count(*) FROM tags', connstr => $login),
	'app|2', 'a SCRAM login with the changed password works on the new leader');
$leader->safe_psql('postgres', q{
ALTER TABLE customers ADD COLUMN joined date DEFAULT '2026-01-01';
INSERT INTO customers (id, full_name) VALUES (1000, 'after the failover');
CREATE TABLE after_failover (id int PRIMARY KEY);
INSERT INTO after_failover VALUES (1);});
RaftCluster::same_everywhere('after the failover', grep { $_ != $old } @nodes);
RaftCluster::restart_after_kill9($old);
RaftCluster::same_everywhere('with the old leader back', $leader, grep { $_ != $leader } @nodes);

# databases other than raft.database take no writes on a member, unless
# raft.local_databases keeps them local on purpose
$leader->safe_psql('postgres', 'CREATE DATABASE elsewhere');
($ret, $out, $err) = $leader->psql('elsewhere', 'CREATE TABLE lost (id int)');
like($err, qr/ERROR:  cannot execute CREATE TABLE in a read-only transaction/,
	'a database that is not replicated takes no writes on the leader');
like($err, qr/HINT:  Database "elsewhere" is not replicated by pg_raft: write in raft.database \("postgres"\), or list this database in raft.local_databases/,
	'... with a hint naming the settings');
is($leader->safe_psql('elsewhere', 'SHOW default_transaction_read_only'), 'on',
	'... and its sessions say so to clients');
$leader->append_conf('postgresql.conf', q{raft.local_databases = 'elsewhere'});
$leader->reload;
$leader->poll_query_until('elsewhere', q{SELECT current_setting('raft.local_databases') = 'elsewhere'});
$leader->safe_psql('elsewhere', 'CREATE TABLE kept_here (id int); INSERT INTO kept_here VALUES (1)');
is($leader->safe_psql('elsewhere', 'SELECT count(*) FROM kept_here'), '1',
	'a database listed in raft.local_databases takes writes, which stay on the member');

done_testing();
