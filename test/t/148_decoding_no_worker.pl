# Copyright (c) pg_raft contributors
#
# 148_decoding_no_worker.pl: with raft.decoding = auto, a leader that
# cannot start its decoding worker (no background worker slot is free)
# goes on decoding in a walsender: it says so, its large transaction
# commits, and its rows reach the other member.  With raft.decoding =
# worker the same leader cannot capture at all, and says why.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

# max_worker_processes = 3: the logical replication launcher, the raft
# worker and the apply worker, and nothing for a decoding worker
my @nodes = map {
	RaftCluster::new_node($_,
		"max_worker_processes = 3\nlogical_decoding_work_mem = '64kB'\nraft.decoding = auto\n")
} qw(n1 n2);
$nodes[0]->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY, pad text)');
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my ($follower) = grep { $_ != $leader } @nodes;

my $offset = -s $leader->logfile;
my ($large, $large_err) = RaftCluster::large_transaction($leader,
	q{INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 500000) g},
	'auto: the walsender fell behind, and capture tried to hand decoding over');
$large->finish;
is($large->result(0), 0, 'auto: a transaction of 500,000 rows commits')
  or diag($$large_err);
ok($leader->wait_for_log(
		qr/WARNING:  pg_raft could not start its decoding worker, and decodes in a walsender/,
		$offset),
	'auto: no worker could start, and capture says it decodes in a walsender');
is($leader->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_raft decoding worker'}),
	'0', 'auto: no decoding worker runs');
is($leader->safe_psql('postgres',
		q{SELECT backend_type FROM pg_stat_activity WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pg_raft')}),
	'walsender', 'auto: a walsender holds the slot');
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (0, 'after')});
pass('auto: a commit after it is acknowledged');
RaftCluster::wait_for_apply($leader, $follower);
is($follower->safe_psql('postgres', 'SELECT count(*) FROM t'), '500001',
	'the follower holds every row');
is(RaftCluster::checksums($follower, 't'), RaftCluster::checksums($leader, 't'),
	'the follower holds the leader\'s rows');

# worker: no fallback; capture reports why, and commits wait
$offset = -s $leader->logfile;
$_->safe_psql('postgres', q{ALTER SYSTEM SET raft.decoding = worker; SELECT pg_reload_conf()})
  foreach @nodes;
ok($leader->wait_for_log(
		qr/pg_raft could not capture this leader's changes: could not start the decoding worker: no background worker slot is free/,
		$offset),
	'worker: capture says it cannot start the decoding worker');
$_->safe_psql('postgres', q{ALTER SYSTEM SET raft.decoding = auto; SELECT pg_reload_conf()})
  foreach @nodes;
$leader = RaftCluster::wait_for_leader(@nodes);
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (-1, 'auto again')});
pass('auto again: a commit is acknowledged');
RaftCluster::wait_for_apply($leader, @nodes);
is(RaftCluster::checksums($_, 't'), RaftCluster::checksums($leader, 't'),
	$_->name . ' holds the same rows at the end')
  foreach @nodes;

done_testing();
