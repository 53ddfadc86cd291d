# Copyright (c) pg_raft contributors
#
# A member that cannot apply says why, and the cluster goes on.
#
#  - a follower whose table was dropped by hand (the fence lifted by
#    starting it without pg_raft) fails to apply: raft.status shows the
#    error with the raft entry and the table, since when, how many times;
#  - the leader goes on committing, also while 40 MB go through the log:
#    the stuck member's log is compacted rather than filled;
#  - kill -9 of the leader: the stuck member does not lead, the healthy one
#    does, and takes writes once the old leader is back (the healthy one
#    alone is no majority that holds the log's data);
#  - raft.recopy() on the stuck member copies the leader's schema and data
#    again, and the member applies the log again; on the leader it is
#    refused.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my ($stuck, $healthy) = grep { $_ != $leader } @nodes;

$leader->safe_psql('postgres', q{
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE big (id int PRIMARY KEY, pad text);
INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g;});
RaftCluster::wait_for_apply($leader, $stuck, $healthy);

# drop the table on one follower, behind pg_raft's back
$stuck->stop;
$stuck->append_conf('postgresql.conf', q{shared_preload_libraries = ''});
$stuck->start;
# (members' commits wait for pg_raft, which is not loaded)
$stuck->safe_psql('postgres', 'SET synchronous_commit = local; DROP TABLE t');
$stuck->append_conf('postgresql.conf', q{shared_preload_libraries = 'pg_raft'});
$stuck->restart;

$leader->safe_psql('postgres', q{INSERT INTO t VALUES (101, 'after')});
ok($stuck->poll_query_until('postgres', 'SELECT apply_failures >= 3 FROM raft.status'),
	'the follower fails to apply, again and again');
my $row = $stuck->safe_psql('postgres',
	q{SELECT apply_error, apply_error_since <= now() FROM raft.status});
like($row, qr/replicated table public\.t does not exist here/, 'raft.status says why');
like($row, qr/applying raft entry \d+ of term \d+/, '... and which raft entry');
like($row, qr/\|t$/, '... and since when');

# the leader goes on, and the stuck member's log stays bounded
for my $i (1 .. 40)
{
	$leader->safe_psql('postgres',
		"INSERT INTO big SELECT -$i, string_agg(md5(random()::text), '') FROM generate_series(1, 32768)");
}
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (102, 'later')});
RaftCluster::wait_for_apply($leader, $healthy);
is($healthy->safe_psql('postgres', 'SELECT count(*) FROM t'), '102',
	'the leader commits while a member cannot apply');
ok($stuck->poll_query_until('postgres',
		q{SELECT first_index > 1 AND log_bytes < 48 * 1024 * 1024 FROM raft.status}),
	'the stuck member compacts its log rather than fill it');

# the stuck member does not lead: after kill -9 of the leader, and while
# it is down (the healthy member alone is no majority that holds the
# log's data, so it takes no writes then), and once it is back
$leader->kill9;
my $old = $leader;
ok($healthy->poll_query_until('postgres', q{SELECT role = 'leader' FROM raft.status}),
	'after kill -9 of the leader, the member that applies leads');
is($stuck->safe_psql('postgres', q{SELECT role FROM raft.status}), 'follower',
	'... and the stuck member follows');
RaftCluster::restart_after_kill9($old);
$leader = RaftCluster::wait_for_leader(@nodes);
isnt($leader->name, $stuck->name, 'with every member up, the stuck member does not lead');
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (103, 'new leader')});

# the operator's remedy
my ($ret, $out, $err) = $leader->psql('postgres', 'SELECT raft.recopy()');
like($err, qr/ERROR:  the raft leader cannot copy the leader's data/, 'raft.recopy() is refused on the leader');
($ret, $out, $err) = $stuck->psql('postgres', 'SELECT raft.recopy()');
like($err, qr/NOTICE:  the apply worker empties database "postgres" and copies the leader's schema and data/,
	'raft.recopy() starts a new copy');
ok($stuck->poll_query_until('postgres',
		q{SELECT apply_failures = 0 AND NOT resyncing AND to_regclass('t') IS NOT NULL FROM raft.status}),
	'the member copied the leader\'s data');
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (104, 'after the copy')});
RaftCluster::wait_for_apply($leader, @nodes);
my $sums = RaftCluster::checksums($leader, 't', 'big');
is(RaftCluster::checksums($_, 't', 'big'), $sums, 'the tables are equal on ' . $_->name)
  foreach grep { $_ != $leader } @nodes;

done_testing();
