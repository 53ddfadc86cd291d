# Copyright (c) pg_raft contributors
#
# 090_apply.pl: a change stream decoded on one instance and applied on
# another leaves identical tables.
#
# Promise 4 (convergence), for the two ends of data replication that exist
# so far: the output plugin on the writer and the apply code on the
# reader.  Every built-in type family, arrays, composites, domains, enums,
# large TOASTed values left alone by updates, a table with REPLICA IDENTITY
# FULL and no key, TRUNCATE with CASCADE and RESTART IDENTITY, and a
# pgbench run: after applying, raft.table_checksum is the same on both.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my $conf = qq{
wal_level = logical
output_plugin_libraries = 'pgoutput, test_decoding, pg_raft'
};
my $writer = RaftCluster::new_node('writer', $conf);
my $reader = RaftCluster::new_node('reader', $conf);

my $schema = q{
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE kinds (
	id int PRIMARY KEY, b bool, i2 int2, i8 int8, f4 float4, f8 float8,
	n numeric, m money, t text, vc varchar(10), ch char(3), by bytea,
	d date, ti time, tz timestamptz, ts timestamp, iv interval,
	u uuid, j json, jb jsonb, x xml, ip inet, cidr cidr, mac macaddr,
	bits bit varying(8), pt point, bx box, rng int4range, arr int[],
	tarr text[], p pair, dom positive, mo mood, tsv tsvector, oidv oid);
CREATE TABLE docs (id int PRIMARY KEY, body text, n int);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
CREATE TABLE parent (id serial PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);
};
$_->safe_psql('postgres', $schema) foreach ($writer, $reader);
$_->command_ok([ 'pgbench', '-i', '-s', '1', '-q', '-h', $_->host, '-p', $_->port, 'postgres' ],
	'pgbench tables on ' . $_->name) foreach ($writer, $reader);

$writer->safe_psql('postgres',
	q{SELECT 'slot' FROM pg_create_logical_replication_slot('s', 'pg_raft')});

$writer->safe_psql('postgres', q{
INSERT INTO kinds VALUES
	(1, true, 32767, 9223372036854775807, 1.5, 'NaN', 12345678901234567890.123, 12.34,
	 'text é ✓', 'varchar', 'abc', '\x00ff10', '2026-11-27', '12:34:56.789',
	 '2026-11-27 12:00:00+01', '2000-01-01 00:00:00', '1 day 02:03:04',
	 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '{"b": [1, 2]}',
	 '<x>1</x>', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
	 B'1011', '(1,2)', '((0,0),(1,1))', '[1,10)', '{1,NULL,3}',
	 '{"a","b c"}', ROW(7, 'seven'), 5, 'happy', 'fat cat', 42),
	(2, NULL, NULL, NULL, NULL, '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL,
	 'infinity', NULL, NULL, NULL, NULL, NULL, NULL, 'null', NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, 'empty', '{}', NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE kinds SET t = 'changed', arr = arr || 4 WHERE id = 1;
UPDATE kinds SET id = 3 WHERE id = 2;
INSERT INTO docs SELECT g, repeat(md5(g::text), 1000), 0 FROM generate_series(1, 20) g;
UPDATE docs SET n = n + 1;
UPDATE docs SET body = body || 'x' WHERE id = 5;
DELETE FROM docs WHERE id > 15;
INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (2, 'b');
UPDATE nokey SET b = 'c' WHERE a = 2;
DELETE FROM nokey WHERE a = 2;
INSERT INTO parent SELECT FROM generate_series(1, 5);
INSERT INTO child VALUES (1, 1), (2, 2);
TRUNCATE parent RESTART IDENTITY CASCADE;
INSERT INTO parent DEFAULT VALUES;
});
$writer->command_ok(
	[ 'pgbench', '-n', '-t', '300', '-c', '2', '-h', $writer->host, '-p', $writer->port, 'postgres' ],
	'a pgbench run on the writer');

# Ship everything the slot decoded, in one stream, and apply it.
my $dir = PostgreSQL::Test::Utils::tempdir();
my $shipped = 0;
sub ship
{
	my $hex = $writer->safe_psql('postgres', q{
SELECT encode(string_agg(data, '' ORDER BY n), 'hex')
  FROM pg_logical_slot_get_binary_changes('s', NULL, NULL)
       WITH ORDINALITY AS c(lsn, xid, data, n)});
	my $file = "$dir/stream" . ++$shipped;
	open(my $fh, '>', $file) or die $!;
	binmode $fh;
	print $fh pack('H*', $hex);
	close($fh);
	return ($file, length($hex) / 2);
}
$reader->safe_psql('postgres', q{SELECT setval('parent_id_seq', 50)});
my ($file, $bytes) = ship();
ok($bytes > 1000, "the writer decoded $bytes bytes of changes");
$reader->safe_psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
pass('the reader applied them');

foreach my $table (qw(kinds docs nokey parent child pgbench_accounts pgbench_branches pgbench_tellers pgbench_history))
{
	my $sum = "SELECT raft.table_checksum('$table')";
	is($reader->safe_psql('postgres', $sum), $writer->safe_psql('postgres', $sum),
		"$table has the same checksum on both");
}
is($reader->safe_psql('postgres', q{SELECT nextval('parent_id_seq')}), '1',
	'TRUNCATE ... RESTART IDENTITY reset the sequence on the reader too');

# A stream for a table the reader lacks is refused, and nothing is applied.
$writer->safe_psql('postgres', q{CREATE TABLE only_here (id int PRIMARY KEY);
BEGIN; INSERT INTO docs VALUES (100, 'late', 0); INSERT INTO only_here VALUES (1); COMMIT;});
($file, $bytes) = ship();
my ($ret, $out, $err) = $reader->psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
like($err, qr/replicated table public\.only_here does not exist here/,
	'a missing table is a clear error');
is($reader->safe_psql('postgres', 'SELECT count(*) FROM docs WHERE id = 100'), '0',
	'and the failed stream changed nothing');

$writer->safe_psql('postgres', q{SELECT pg_drop_replication_slot('s')});
done_testing();
