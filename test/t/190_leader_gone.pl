# Copyright (c) pg_raft contributors
#
# 190_leader_gone.pl: a follower that sees its leader's server gone
# replaces it without waiting for the election timeout, and loses nothing.
#
# A follower counts its leader gone only when its connection to the leader
# broke and a new connection to the leader's port is refused.  So:
#   - one member-to-member connection that is ended while the leader lives
#     starts no election;
#   - kill -9 of the leader's postmaster under a stream of acknowledged
#     inserts: a follower says the leader is gone, a new leader takes
#     writes, and every acknowledged insert is there, on every member once
#     the old leader is back.
# The election timeout is raised to 10 s, so that a new leader within it
# can only have come from the fast path; the test asserts no timing.

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
foreach my $node (@nodes)
{
	$node->append_conf('postgresql.conf', 'raft.election_timeout = 10s');
	$node->reload;
}
$nodes[0]->safe_psql('postgres', q{CREATE TABLE t (id integer PRIMARY KEY)});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;
my $term = RaftCluster::status($leader)->{term};

# One connection between members ends while the leader lives.
my $follower_id = $followers[0]->safe_psql('postgres', 'SELECT node_id FROM raft.status');
my $offset = -s $followers[0]->logfile;
is($leader->safe_psql('postgres',
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		  WHERE application_name = 'pg_raft node $follower_id'"),
	'1', "the leader ends the connection of node $follower_id");
$leader->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'pg_raft node $follower_id'")
  or die 'the follower did not connect again';
ok(RaftCluster::barrier($leader) > 0, 'the cluster commits through the new connection');
is(RaftCluster::status($leader)->{term}, $term, 'no election followed');
ok(!$followers[0]->log_contains('is gone', $offset),
	'the follower did not take its leader for gone');

# Acknowledged inserts, one per psql call, each printing its id once
# COMMIT returned; then the leader's postmaster is killed.
my $writer_script = PostgreSQL::Test::Utils::tempdir() . '/writer.sh';
open(my $fh, '>', $writer_script) or die $!;
printf $fh <<'EOS', $leader->connstr('postgres');
for i in $(seq 1 100000); do
	psql -X -q -A -t -d '%s' -c "INSERT INTO t VALUES ($i)" >/dev/null 2>&1 && echo $i
done
EOS
close($fh);
my $acked_file = PostgreSQL::Test::Utils::tempdir() . '/acked';
my $writer = IPC::Run::start([ 'bash', $writer_script ], '>', $acked_file);
$leader->poll_query_until('postgres', 'SELECT count(*) >= 50 FROM t')
  or die 'the writer does not write';
my @offsets = map { -s $_->logfile } @followers;
$leader->kill9;
my $new_leader = RaftCluster::wait_for_leader(@followers);
$writer->kill_kill;
ok(1, 'a new leader takes writes: ' . $new_leader->name);
ok((grep { $followers[$_]->log_contains('raft leader node \d+ is gone', $offsets[$_]) } 0 .. 1) > 0,
	'a follower said its leader is gone');
cmp_ok(RaftCluster::status($new_leader)->{term}, '>', $term, 'in a later term');

my @ids = grep { /^\d+$/ } split /\n/, slurp_file($acked_file);
cmp_ok(scalar(@ids), '>=', 50, scalar(@ids) . ' inserts were acknowledged');
my $max = $ids[-1];
is($new_leader->safe_psql('postgres',
		"SELECT count(*) FROM t WHERE id IN (" . join(',', @ids) . ")"),
	scalar(@ids), 'every acknowledged insert is on the new leader');

# The old leader comes back as a follower and holds the same rows.
RaftCluster::restart_after_kill9($leader);
$new_leader->safe_psql('postgres', "INSERT INTO t VALUES ($max + 1000000)");
$new_leader = RaftCluster::wait_for_leader(@nodes);
RaftCluster::wait_for_apply($new_leader, @nodes);
my $sum = RaftCluster::checksums($new_leader, 't');
is(RaftCluster::checksums($_, 't'), $sum, $_->name . ' holds the same rows')
  foreach @nodes;

done_testing();
