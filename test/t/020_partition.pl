# Copyright (c) pg_raft contributors
#
# 020_partition.pl: the leader is cut off by a network partition.
#
# Promise 2 (one writer): a leader that no longer hears from a majority
# stops acting as leader within the check-quorum time, the majority elects
# a new one that commits, and when the network heals every node agrees on
# the leader and holds the same log.  Each node is reached through a proxy
# of the test's own (RaftProxy.pm); cutting a node's proxy means nothing
# reaches it any more.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use RaftProxy;
use Test::More;
use Time::HiRes qw(time usleep);

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
my %proxy;
foreach my $node (@nodes)
{
	my $p = RaftProxy->new(target_port => $node->port, name => $node->name);
	$proxy{ $node->name } = $p;
	$node->{raft_conninfo} = $p->conninfo . ' dbname=postgres';
}
RaftCluster::form_cluster(@nodes);
my $old = RaftCluster::wait_for_leader(@nodes);
my $first_barrier = RaftCluster::barrier($old);
my $term_before = RaftCluster::status($old)->{term};

# Cut the leader off.  It must stop calling itself leader, and the two
# others must elect one of themselves.
my $cut_at = time();
$proxy{ $old->name }->cut;
$old->poll_query_until('postgres',
	q{SELECT role <> 'leader' FROM raft.status})
  or die 'the cut-off leader never stepped down';
my $stepped_down = time() - $cut_at;
pass(sprintf('the cut-off leader stepped down after %.1f s', $stepped_down));

my @majority = grep { $_->name ne $old->name } @nodes;
my $new = RaftCluster::wait_for_leader(@majority);
isnt($new->name, $old->name, 'the majority elected a new leader');
cmp_ok(RaftCluster::status($new)->{term}, '>', $term_before,
	'in a later term');
my $during = RaftCluster::barrier($new);
cmp_ok($during, '>', $first_barrier, 'the majority commits');

my ($ret, $out, $err) = $old->psql('postgres', "SELECT raft.barrier('1s')");
isnt($ret, 0, 'the cut-off node cannot commit');

# Heal: one leader, everybody agrees, and the logs are the same.
$proxy{ $old->name }->restore;
my $leader = RaftCluster::wait_for_leader(@nodes);
my $after = RaftCluster::barrier($leader);
cmp_ok($after, '>', $during, 'a barrier commits after healing');
foreach my $node (@nodes)
{
	$node->poll_query_until('postgres',
		"SELECT commit_index >= $after AND last_index = commit_index FROM raft.status")
	  or die $node->name . ' never caught up';
}
my @logs = map {
	$_->safe_psql('postgres', 'SELECT last_index, term FROM raft.status')
} @nodes;
is($logs[1], $logs[0], 'n2 has the same log end and term as n1');
is($logs[2], $logs[0], 'n3 has the same log end and term as n1');

# A node that only hears nothing (stalled link) must not disrupt the
# others when it returns: pre-vote keeps the term.
my $follower = (grep { $_->name ne $leader->name } @nodes)[0];
my $term = RaftCluster::status($leader)->{term};
$proxy{ $follower->name }->stall;
$leader->poll_query_until('postgres',
	"SELECT NOT reachable FROM raft.nodes WHERE node_name = '" . $follower->name . "'")
  or die 'the leader never noticed the stalled follower';
$proxy{ $follower->name }->restore;
my $back = RaftCluster::wait_for_leader(@nodes);
is($back->name, $leader->name, 'the leader keeps leading after the follower returns');
is(RaftCluster::status($back)->{term}, $term, 'in the same term (pre-vote)');

$_->stop foreach values %proxy;
done_testing();
