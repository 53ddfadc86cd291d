# Copyright (c) pg_raft contributors
#
# 050_stall.pl: the leader's raft worker is frozen (SIGSTOP) for longer than
# the election timeout, then thawed (SIGCONT).
#
# Promise 2 (one writer): a leader that stalls, like a process paused by the
# scheduler, a debugger or a long page fault, must not come back believing
# it still leads.  While it is frozen the others elect a new leader; once
# thawed it learns the new term and follows, and the cluster keeps one
# leader.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;
use Time::HiRes qw(usleep);

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my $term = RaftCluster::status($leader)->{term};

my $pid = $leader->safe_psql('postgres',
	'SELECT worker_pid FROM raft.status');
like($pid, qr/^\d+$/, "the leader's raft worker runs as pid $pid");

kill 'STOP', $pid;
my @others = grep { $_ != $leader } @nodes;
my $new = RaftCluster::wait_for_leader(@others);
isnt($new->name, $leader->name, 'the others elect a leader while it is frozen');
cmp_ok(RaftCluster::status($new)->{term}, '>', $term, 'in a later term');
ok(RaftCluster::barrier($new) > 0, 'and commit without it');
kill 'CONT', $pid;

my $after = RaftCluster::wait_for_leader(@nodes);
is($after->name, $new->name, 'the thawed node follows the new leader');
is(RaftCluster::status($leader)->{role}, 'follower', 'and no longer calls itself leader');
is( $leader->safe_psql('postgres',
		'SELECT worker_pid FROM raft.status'),
	$pid, 'the same worker process carried on');

done_testing();
