# Copyright (c) pg_raft contributors
#
# raft.join_cluster copies the leader's roles, schema and data onto an empty
# instance under one snapshot taken at a known point of the Raft log, while
# writes go on; then the joiner catches up from the log and becomes a
# voter.  Once writes stop, every table's checksum is equal everywhere.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
my ($n1, $n2, $n3) = @nodes;

# n1 holds data of many kinds, a role, and a sequence, before the cluster
$n1->command_ok([ 'pgbench', '-i', '-q', '-s', '2', $n1->connstr('postgres') ],
	'pgbench tables on n1');
$n1->safe_psql('postgres', q{
CREATE ROLE app_owner;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, m mood,
                    tags text[], doc jsonb, big text);
ALTER TABLE items OWNER TO app_owner;
INSERT INTO items (name, m, tags, doc, big)
  SELECT 'item ' || g, (ARRAY['sad','ok','happy'])[1 + g % 3]::mood,
         ARRAY['t' || g, 'x'], jsonb_build_object('n', g),
         CASE WHEN g % 100 = 0 THEN repeat(md5(g::text), 2000) END
    FROM generate_series(1, 5000) g;});
$n1->safe_psql('postgres',
	"SELECT raft.create_cluster('n1', '" . RaftCluster::member_conninfo($n1) . "')");
RaftCluster::wait_for_leader($n1);

# an instance that holds tables is refused, before anything happens
my $full = RaftCluster::new_node('full');
$full->safe_psql('postgres', 'CREATE TABLE mine (id int)');
my ($ret, $out, $err) = $full->psql('postgres',
	"SELECT raft.join_cluster('full', '" . RaftCluster::member_conninfo($full) . "', '"
	  . RaftCluster::member_conninfo($n1) . "')");
like($err, qr/ERROR:  this database already holds 1 tables, views or sequences/,
	'joining from a database that holds tables is refused');
like($err, qr/HINT:  Join from an empty database, or pass copy_data => false/, '... with a hint');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM raft.nodes'), '1',
	'and the cluster did not change');
$full->stop;

# n2 joins while pgbench writes on n1
my ($bench_out, $bench_err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '8', $n1->connstr('postgres') ],
	'>', \$bench_out, '2>', \$bench_err);
RaftCluster::join_cluster($n2, $n1);
pass('n2 joined while pgbench ran');
is($n2->safe_psql('postgres', q{SELECT role FROM raft.status}), 'follower',
	'n2 is a voting follower');
$bench->finish;
like($bench_out, qr/number of failed transactions: 0/, 'pgbench had no failures during the join');

# n3 joins too, after more writes
$n1->safe_psql('postgres', q{INSERT INTO items (name) SELECT 'later ' || g FROM generate_series(1, 100) g});
RaftCluster::join_cluster($n3, $n2);
pass('n3 joined through a follower');

my $leader = RaftCluster::wait_for_leader(@nodes);
RaftCluster::wait_for_apply($leader, grep { $_ != $leader } @nodes);
my @tables = qw(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history items);
my $sums = RaftCluster::checksums($leader, @tables);
is(RaftCluster::checksums($_, @tables), $sums, 'every table is equal on ' . $_->name)
  foreach grep { $_ != $leader } @nodes;
is($n3->safe_psql('postgres', q{SELECT tableowner FROM pg_tables WHERE tablename = 'items'}),
	'app_owner', 'the copy keeps owners (roles are copied)');
is($n3->safe_psql('postgres', q{SELECT last_value >= 5100 FROM items_id_seq}), 't',
	'and sequences as they were at the copy');

# the joiners' writes go through the log like any other member's
$leader->safe_psql('postgres', q{UPDATE items SET m = 'happy' WHERE id <= 10});
RaftCluster::wait_for_apply($leader, @nodes);
is($_->safe_psql('postgres', q{SELECT count(*) FROM items WHERE m = 'happy' AND id <= 10}), '10',
	'a later update reaches ' . $_->name)
  foreach @nodes;

done_testing();
