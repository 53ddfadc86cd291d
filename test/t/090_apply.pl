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
# Inserts are written a batch at a time: the reader's generated columns,
# CHECK constraints, unique keys and BEFORE triggers still act on each row.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my $writer = RaftCluster::new_node('writer');
my $reader = RaftCluster::new_node('reader');

my $schema = RaftCluster::type_coverage_schema();
$_->safe_psql('postgres', $schema) foreach ($writer, $reader);
$_->command_ok([ 'pgbench', '-i', '-s', '1', '-q', '-h', $_->host, '-p', $_->port, 'postgres' ],
	'pgbench tables on ' . $_->name) foreach ($writer, $reader);

$writer->safe_psql('postgres',
	q{SELECT 'slot' FROM pg_create_logical_replication_slot('s', 'pg_raft')});

$writer->safe_psql('postgres', RaftCluster::type_coverage_writes());
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
# the reader's sequence was at 50: TRUNCATE ... RESTART IDENTITY reset it,
# and the row inserted after it (id 1) moved it on, as on the writer
is($reader->safe_psql('postgres', q{SELECT nextval('parent_id_seq')}),
	$writer->safe_psql('postgres', q{SELECT nextval('parent_id_seq')}),
	'the sequence on the reader is where the writer\'s is: restarted, then moved on by the row applied');

# Consecutive changes to one table share one executor state (apply.c's
# target), closed every 10,000 changes: rows inserted, then updated and
# deleted in the same transaction, all find their rows, and the reader's
# own AFTER ROW trigger fires once per change, running its query.
$_->safe_psql('postgres', 'CREATE TABLE bulk (id int PRIMARY KEY, v int)')
  foreach ($writer, $reader);
$reader->safe_psql('postgres', q{
CREATE TABLE bulk_audit (op text, id int);
CREATE FUNCTION bulk_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bulk_audit VALUES (TG_OP, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
	RETURN NULL;
END $$;
CREATE TRIGGER bulk_audit AFTER INSERT OR UPDATE OR DELETE ON bulk
	FOR EACH ROW EXECUTE FUNCTION bulk_audit();});
$writer->safe_psql('postgres', q{BEGIN;
INSERT INTO bulk SELECT g, g FROM generate_series(1, 25000) g;
UPDATE bulk SET v = v + 1;
DELETE FROM bulk WHERE id % 10 = 0;
INSERT INTO docs VALUES (101, 'between', 0);
UPDATE bulk SET v = -v WHERE id <= 3;
COMMIT;});
($file, $bytes) = ship();
$reader->safe_psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
is($reader->safe_psql('postgres', q{SELECT raft.table_checksum('bulk')}),
	$writer->safe_psql('postgres', q{SELECT raft.table_checksum('bulk')}),
	'25,000 rows inserted, updated and partly deleted in one transaction apply whole');
is($reader->safe_psql('postgres', q{SELECT string_agg(op || ' ' || n, ', ' ORDER BY op)
  FROM (SELECT op, count(*) AS n FROM bulk_audit GROUP BY op) c}),
	'DELETE 2500, INSERT 25000, UPDATE 25003',
	'the reader\'s AFTER ROW trigger fired once for each applied change');

# A stream for a table the reader lacks is refused, and nothing is applied.
$writer->safe_psql('postgres', q{CREATE TABLE only_here (id int PRIMARY KEY);
BEGIN; INSERT INTO docs VALUES (100, 'late', 0); INSERT INTO only_here VALUES (1); COMMIT;});
($file, $bytes) = ship();
my ($ret, $out, $err) = $reader->psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
like($err, qr/replicated table public\.only_here does not exist here/,
	'a missing table is a clear error');
is($reader->safe_psql('postgres', 'SELECT count(*) FROM docs WHERE id = 100'), '0',
	'and the failed stream changed nothing');

# Batched inserts (apply.c's flush_inserts) act as row-by-row ones: the
# reader's stored generated column is computed for each row, and a row its
# CHECK constraint refuses, or a key it holds already, fails the stream
# with the table named, leaving nothing applied.
$writer->safe_psql('postgres', 'CREATE TABLE batch (id int PRIMARY KEY, v int)');
$reader->safe_psql('postgres', q{CREATE TABLE batch (id int PRIMARY KEY, v int,
	twice int GENERATED ALWAYS AS (v * 2) STORED)});
$writer->safe_psql('postgres', 'INSERT INTO batch SELECT g, g FROM generate_series(1, 3000) g');
($file, $bytes) = ship();
$reader->safe_psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
is($reader->safe_psql('postgres', 'SELECT count(*), sum(v), sum(twice) FROM batch'),
	'3000|4501500|9003000', '3,000 inserts in batches, each row with its generated column');

$reader->safe_psql('postgres', 'ALTER TABLE batch ADD CONSTRAINT small CHECK (v < 3500)');
$writer->safe_psql('postgres', 'INSERT INTO batch SELECT g, g FROM generate_series(3001, 4000) g');
($file, $bytes) = ship();
($ret, $out, $err) = $reader->psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
like($err, qr/violates check constraint "small".*a change to table public\.batch/s,
	'a row the reader\'s CHECK constraint refuses fails the batch, naming the table');
is($reader->safe_psql('postgres', 'SELECT count(*) FROM batch'), '3000',
	'... and nothing of it is applied');

$reader->safe_psql('postgres', 'ALTER TABLE batch DROP CONSTRAINT small; INSERT INTO batch VALUES (3999, 0)');
($ret, $out, $err) = $reader->psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
like($err, qr/duplicate key value violates unique constraint "batch_pkey".*inserting \d+ rows into table public\.batch/s,
	'a key the reader holds already fails the batch it is in, naming the table');
is($reader->safe_psql('postgres', 'SELECT count(*) FROM batch'), '3001',
	'... and nothing of it is applied');

# Rows still waiting in a batch are found by an update or a delete that
# follows them in the same transaction (1,500 rows: 500 wait).
$writer->safe_psql('postgres', q{BEGIN;
INSERT INTO batch SELECT g, 1 FROM generate_series(5001, 6500) g;
UPDATE batch SET v = 2 WHERE id IN (5001, 6500);
DELETE FROM batch WHERE id = 6499;
INSERT INTO batch VALUES (7000, 3);
UPDATE batch SET v = 4 WHERE id = 7000;
DELETE FROM batch WHERE id = 5002;
COMMIT;});
my $stream_5001;
($stream_5001, $bytes) = ship();
$reader->safe_psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$stream_5001'))");
my $above_5000 = 'SELECT count(*), sum(v), sum(id) FROM batch WHERE id > 5000';
is($reader->safe_psql('postgres', $above_5000), $writer->safe_psql('postgres', $above_5000),
	'rows inserted, then updated and deleted in the same transaction while in a batch: the same rows');

# A BEFORE ROW trigger may change or drop each row: rows then go one by one.
$reader->safe_psql('postgres', q{DELETE FROM batch WHERE id = 3999;
CREATE FUNCTION batch_odd_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id % 2 = 0 THEN RETURN NULL; END IF;
	NEW.v := -NEW.v;
	RETURN NEW;
END $$;
CREATE TRIGGER batch_odd_only BEFORE INSERT ON batch
	FOR EACH ROW EXECUTE FUNCTION batch_odd_only();});
$reader->safe_psql('postgres', "SELECT raft.apply_changes(pg_read_binary_file('$file'))");
is($reader->safe_psql('postgres', 'SELECT count(*), sum(v) FROM batch WHERE id BETWEEN 3001 AND 4000'),
	'500|-1750000', 'with the reader\'s BEFORE ROW trigger, each row is what the trigger made of it');

$writer->safe_psql('postgres', q{SELECT pg_drop_replication_slot('s')});
done_testing();
