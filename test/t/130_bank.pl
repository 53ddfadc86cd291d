# Copyright (c) pg_raft contributors
#
# Through the cluster, not through raft.apply_changes():
#
#  - every built-in type family, arrays, composites, domains, enums, large
#    TOASTed values, a keyless FULL table, TRUNCATE with CASCADE and
#    RESTART IDENTITY: the members end with the same checksums;
#  - a bank: transfers between accounts in one transaction each, from two
#    clients, across two failovers (kill -9 of the leader).  A reader
#    samples every live member all along; the total never changes on any
#    of them, and the members that were never killed end identical to the
#    last leader.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;
use Time::HiRes qw(usleep);

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres', q{
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
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g;});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);

# every type family, through the log
$leader->safe_psql('postgres', q{
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
INSERT INTO parent DEFAULT VALUES;});
RaftCluster::wait_for_apply($leader, grep { $_ != $leader } @nodes);
my @typed = qw(kinds docs nokey parent child);
my $sums = RaftCluster::checksums($leader, @typed);
is(RaftCluster::checksums($_, @typed), $sums,
	'every type family, TOAST, FULL and TRUNCATE arrive whole on ' . $_->name)
  foreach grep { $_ != $leader } @nodes;
is($nodes[2]->safe_psql('postgres', q{SELECT t, arr, p, mo FROM kinds WHERE id = 1}),
	'changed|{1,NULL,3,4}|(7,seven)|happy', 'values read back as written');

# the bank
my $script = PostgreSQL::Test::Utils::tempdir() . '/transfer.sql';
open(my $fh, '>', $script) or die $!;
print $fh q{\set a random(1, 100)
\set b random(1, 100)
\set amount random(1, 50)
BEGIN;
UPDATE accounts SET balance = balance - :amount WHERE id = :a;
UPDATE accounts SET balance = balance + :amount WHERE id = :b;
END;
};
close($fh);

my @samples;
my %down;

# total balance on every live member, now
sub sample
{
	foreach my $node (@nodes)
	{
		next if $down{ $node->name };
		my ($ret, $out) = $node->psql('postgres', 'SELECT sum(balance) FROM accounts');
		push @samples, $node->name . "=$out" if $ret == 0;
	}
}

# transfers on the current leader until it is killed
sub start_transfers
{
	my ($node) = @_;
	my ($out, $err) = ('', '');
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '60', '--max-tries', '10',
		  '-f', $script, $node->connstr('postgres') ],
		'>', \$out, '2>', \$err);
}

sub sample_for
{
	my ($seconds) = @_;
	my $until = time() + $seconds;
	sample() while time() < $until;
}

my $killed = 0;
my @ever_killed;
foreach my $round (1, 2)
{
	my $bench = start_transfers($leader);
	sample_for(3);
	$leader->kill9;
	$down{ $leader->name } = 1;
	push @ever_killed, $leader;
	eval { $bench->finish; };
	my @alive = grep { !$down{ $_->name } } @nodes;
	sample();
	$leader = RaftCluster::wait_for_leader(@alive);
	pass("round $round: " . $leader->name . ' leads after the kill');
	# the killed node comes back before the next round: a majority remains
	my ($back) = grep { $down{ $_->name } } @nodes;
	RaftCluster::restart_after_kill9($back);
	delete $down{ $back->name };
}
my $bench = start_transfers($leader);
sample_for(3);
$bench->kill_kill;
RaftCluster::wait_for_leader(@nodes);
$leader = RaftCluster::wait_for_leader(@nodes);
RaftCluster::wait_for_apply($leader, grep { $_ != $leader } @nodes);
sample();

my @wrong = grep { !/=100000$/ } @samples;
cmp_ok(scalar @samples, '>', 30, scalar(@samples) . ' samples of the total on live members');
is(scalar @wrong, 0, 'the total never changed on any member')
  or diag explain \@wrong;
my @steady = grep { my $n = $_; $n != $leader && !grep { $_ == $n } @ever_killed } @nodes;
is(RaftCluster::checksums($_, 'accounts'), RaftCluster::checksums($leader, 'accounts'),
	$_->name . ', never killed, ends identical to the leader')
  foreach @steady;
cmp_ok($leader->safe_psql('postgres', 'SELECT count(*) FROM accounts WHERE balance <> 1000'),
	'>', 0, 'transfers happened');

done_testing();
