# Copyright (c) pg_raft contributors
#
# 010_cluster.pl: three instances form a Raft cluster, agree on one leader,
# survive the leader's death, and keep their membership across restarts.
#
# Promises 2 (one writer) and 3 (fast failover), at the level of the Raft
# log: exactly one leader per term, a new leader after kill -9 that can
# commit (raft.barrier), and the old leader back as a follower.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);

# Before any cluster exists the views are empty and barrier refuses.
is($nodes[0]->safe_psql('postgres', 'SELECT count(*) FROM raft.status'),
	'0', 'raft.status has no row before the node joins a cluster');
my ($ret, $out, $err) =
  $nodes[0]->psql('postgres', "SELECT raft.barrier('1s')");
like($err, qr/this node is not a member of a raft cluster/,
	'barrier outside a cluster is refused');

RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
is($leader->name, 'n1', 'the node that created the cluster leads it');

is( $leader->safe_psql(
		'postgres',
		q{SELECT string_agg(node_name || ':' || voting, ',' ORDER BY node_name) FROM raft.nodes}
	),
	'n1:true,n2:true,n3:true',
	'the three nodes are voting members');
foreach my $node (@nodes)
{
	is( $node->safe_psql(
			'postgres', 'SELECT count(*) FROM raft.nodes WHERE voting'),
		'3', $node->name . ' sees three voters');
}

my $index = RaftCluster::barrier($leader);
ok($index > 0, "a barrier commits at index $index");
($ret, $out, $err) = $nodes[1]->psql('postgres', "SELECT raft.barrier('1s')");
like($err, qr/this node is not the raft leader/,
	'a follower refuses barrier');
like($err, qr/HINT:  Run it on the leader, node "n1": host=127\.0\.0\.1 port=\d+/,
	'and its hint names the leader and its conninfo');

# The leader's view shows every member caught up and reachable.
$leader->poll_query_until('postgres',
	"SELECT bool_and(reachable) AND max(lag_entries) = 0 FROM raft.nodes")
  or die 'followers never caught up';
pass('every member is reachable and caught up');

# kill -9 the leader: the survivors elect a new one that can commit.
my $term_before = RaftCluster::status($leader)->{term};
$leader->kill9;
my @survivors = grep { $_->name ne $leader->name } @nodes;
my $new_leader = RaftCluster::wait_for_leader(@survivors);
isnt($new_leader->name, $leader->name, 'a survivor leads after kill -9');
cmp_ok(RaftCluster::status($new_leader)->{term}, '>', $term_before,
	'in a later term');
my $after = RaftCluster::barrier($new_leader);
cmp_ok($after, '>', $index, 'the new leader commits a barrier');

# The old leader restarts and follows.
RaftCluster::restart_after_kill9($leader);
my $again = RaftCluster::wait_for_leader(@nodes);
is($again->name, $new_leader->name, 'the restarted node follows the new leader');
$again->poll_query_until('postgres',
	"SELECT max(lag_entries) = 0 AND bool_and(reachable) FROM raft.nodes")
  or die 'the restarted node never caught up';
is(RaftCluster::status($leader)->{role}, 'follower',
	'the old leader is a follower');

# Everything survives a restart of every node.
$_->stop for @nodes;
$_->start for @nodes;
my $after_restart = RaftCluster::wait_for_leader(@nodes);
ok($after_restart, 'a leader is elected after a full restart');
is( $after_restart->safe_psql(
		'postgres', 'SELECT count(*) FROM raft.nodes WHERE voting'),
	'3', 'membership survives the restart');
cmp_ok(RaftCluster::barrier($after_restart), '>', $after,
	'the log survives the restart');

done_testing();
