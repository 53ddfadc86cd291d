# Copyright (c) pg_raft contributors
#
# 030_membership.pl: five nodes survive two failures; members are added and
# removed while the cluster runs; leadership moves to a named node.
#
# Promises 2 and 3 with a larger cluster, and membership that operators
# change without downtime.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;
use File::Path ();

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3 n4 n5);
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
is($leader->safe_psql('postgres', 'SELECT count(*) FROM raft.nodes WHERE voting'),
	'5', 'five voters');

# Two failures, the leader among them: three survivors still commit.
my @down = ($leader, (grep { $_ != $leader } @nodes)[0]);
$_->kill9 foreach @down;
my @alive = grep { my $n = $_; !grep { $_ == $n } @down } @nodes;
my $survivor = RaftCluster::wait_for_leader(@alive);
ok(RaftCluster::barrier($survivor) > 0, 'three of five commit after two failures');
RaftCluster::restart_after_kill9($_) foreach @down;
$leader = RaftCluster::wait_for_leader(@nodes);
pass('the two restarted nodes rejoin');

# Add a sixth node while the cluster runs, through a follower.
my $n6 = RaftCluster::new_node('n6');
my $follower = (grep { $_ != $leader } @nodes)[0];
RaftCluster::join_cluster($n6, $follower);
push @nodes, $n6;
$leader = RaftCluster::wait_for_leader(@nodes);
is($leader->safe_psql('postgres', 'SELECT count(*) FROM raft.nodes WHERE voting'),
	'6', 'n6 joined as a voter');
is(RaftCluster::status($n6)->{role}, 'follower', 'n6 follows');

# A duplicate name is refused, and changes nothing.
my $n7 = RaftCluster::new_node('n7');
my ($ret, $out, $err) = $n7->psql('postgres',
	"SELECT raft.join_cluster('n2', '" . RaftCluster::conninfo($n7) . "', '"
	  . RaftCluster::conninfo($leader) . "')");
like($err, qr/a member named "n2" already exists/, 'a duplicate node name is refused');
is($n7->safe_psql('postgres', 'SELECT count(*) FROM raft.status'), '0',
	'the refused node did not join');
($ret, $out, $err) = $n7->psql('postgres',
	"SELECT raft.join_cluster('n7', '" . RaftCluster::conninfo($n7) . "', 'host=127.0.0.1 port=1 connect_timeout=2')");
like($err, qr/could not connect to the peer/, 'an unreachable peer is reported');

# Remove a follower, then the leader itself, while a barrier runs between.
my $gone = (grep { $_ != $leader } @nodes)[1];
$leader->safe_psql('postgres', "SELECT raft.remove_node('" . $gone->name . "')");
@nodes = grep { $_ != $gone } @nodes;
$leader = RaftCluster::wait_for_leader(@nodes);
is($leader->safe_psql('postgres', 'SELECT count(*) FROM raft.nodes'),
	'5', 'the removed follower is gone from raft.nodes');
ok(RaftCluster::barrier($leader) > 0, 'the cluster commits after the removal');

# The removed instance, once its pg_raft/ directory is gone, is a plain
# server again: synchronous_standby_names no longer names pg_raft, so its
# commits do not wait for a standby that will never come.
$gone->stop;
File::Path::rmtree($gone->data_dir . '/pg_raft');
$gone->start;
ok($gone->poll_query_until('postgres', 'SHOW synchronous_standby_names', ''),
	'the removed instance resets synchronous_standby_names');
my ($created) = $gone->psql('postgres', 'CREATE TABLE after_removal (id int)', timeout => 60);
is($created, 0, 'and commits without waiting');
($ret, $out, $err) = $follower->psql('postgres', "SELECT raft.remove_node('n1')");
like($err, qr/this node is not the raft leader/, 'a follower refuses remove_node');
like($err, qr/HINT:  Run it on the leader/, 'and names the leader');

my $old_leader = $leader;
$leader->safe_psql('postgres', "SELECT raft.remove_node('" . $leader->name . "')");
@nodes = grep { $_ != $old_leader } @nodes;
$leader = RaftCluster::wait_for_leader(@nodes);
isnt($leader->name, $old_leader->name, 'a removed leader hands over to another node');
is($leader->safe_psql('postgres', 'SELECT count(*) FROM raft.nodes WHERE voting'),
	'4', 'four voters remain');

# Leadership transfer to a named node.
my $target = (grep { $_ != $leader } @nodes)[0];
is( $leader->safe_psql(
		'postgres', "SELECT raft.transfer_leadership('" . $target->name . "')"),
	$target->name,
	'transfer_leadership returns the new leader');
is(RaftCluster::wait_for_leader(@nodes)->name, $target->name,
	'everyone follows the named node');
ok(RaftCluster::barrier($target) > 0, 'the new leader commits');

# Transfer to the most up-to-date voter.
my $picked = $target->safe_psql('postgres', 'SELECT raft.transfer_leadership()');
isnt($picked, $target->name, "transfer without a target picks $picked");
is(RaftCluster::wait_for_leader(@nodes)->name, $picked, 'and it leads');

done_testing();
