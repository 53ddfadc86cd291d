# Copyright (c) pg_raft contributors
#
# A transaction of a million rows, larger than the Raft log holds in
# memory (64 MB), replicates: the followers apply it piece by piece in one
# local transaction and keep the pieces in a spool, so the log can be
# compacted under it.  A follower killed in the middle resumes from its
# spool.  Every member ends with the same rows.  This is the path of a
# transaction sent whole after it commits, with
# raft.stream_large_transactions off (145_streamed_transactions.pl tests
# the streamed path).

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

my @nodes =
  map { RaftCluster::new_node($_, "raft.stream_large_transactions = off\n") } qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres', 'CREATE TABLE wide (id int PRIMARY KEY, pad text)');
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;
my $victim = $followers[0];
my $spool = $victim->data_dir . '/pg_raft/apply_spool_state';

my ($out, $err) = ('', '');
my $insert = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres'), '-c',
	  q{INSERT INTO wide SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 1000000) g} ],
	'>', \$out, '2>', \$err);

# kill a follower while it is in the middle of the transaction (the
# followers apply its entries as they are committed, before the COMMIT
# on the leader returns)
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
usleep(20_000) until -e $spool || time() > $deadline;
ok(-e $spool, 'the follower spools the transaction while it applies it');
$victim->kill9;
RaftCluster::restart_after_kill9($victim);
$insert->finish;
is($insert->result(0), 0,
	'the leader committed a million rows in one transaction (about 120 MB of changes)');

RaftCluster::wait_for_apply($leader, @followers);
ok($victim->log_contains('resumes the transaction that began at raft index \d+ from its spool'),
	'the killed follower resumed from its spool');
foreach my $node (@followers)
{
	is($node->safe_psql('postgres', 'SELECT count(*) FROM wide'), '1000000',
		'a million rows on ' . $node->name);
	is(RaftCluster::checksums($node, 'wide'), RaftCluster::checksums($leader, 'wide'),
		'the same rows as the leader on ' . $node->name);
}
ok(!-e $spool, 'the spool is gone once the transaction committed');
cmp_ok($leader->safe_psql('postgres', 'SELECT first_index FROM raft.status'), '>', 1,
	'the leader compacted its log meanwhile');

done_testing();
