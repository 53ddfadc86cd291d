# Copyright (c) pg_raft contributors
#
# 080_compaction.pl: the log stays bounded, and a node that needs compacted
# entries still joins.
#
# Storage keeps the log bounded by compacting applied entries.  A node that
# restarts after compaction rebuilds its state from the log base and the
# rest of the log; a new member that needs entries the leader no longer
# has gets the "snapshot needed" message instead, installs the base, and
# catches up from there.

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

# Enough barriers to pass the compaction threshold (16,384 applied
# entries beyond the base, keeping 1,024).
my $script = PostgreSQL::Test::Utils::tempdir() . '/barrier.sql';
open(my $fh, '>', $script) or die $!;
print $fh "SELECT raft.barrier('10s');\n";
close($fh);
my ($out, $err) = run_command(
	[
		'pgbench', '-n', '-f', $script, '-c', '4', '-t', '4500',
		'-h', $leader->host, '-p', $leader->port, 'postgres'
	]);
like($out, qr/number of transactions actually processed: 18000/,
	'18,000 barriers committed');

foreach my $node (@nodes)
{
	$node->poll_query_until('postgres', 'SELECT first_index > 1 FROM raft.status')
	  or die $node->name . ' never compacted its log';
	pass($node->name . ' compacted its log');
}
my $status = $leader->safe_psql('postgres',
	'SELECT last_index - first_index + 1, log_bytes FROM raft.status');
my ($kept, $bytes) = split /\|/, $status;
cmp_ok($kept, '<', 16384 + 1024 + 4500, "the leader keeps $kept entries in memory");
cmp_ok($bytes, '<', 16 * 1024 * 1024, "and $bytes bytes of log on disk");

# A restart after compaction starts from the base.
my $follower = (grep { $_ != $leader } @nodes)[0];
$follower->restart;
$leader = RaftCluster::wait_for_leader(@nodes);
my $index = RaftCluster::barrier($leader);
$follower->poll_query_until('postgres', "SELECT commit_index >= $index FROM raft.status")
  or die 'the restarted follower never caught up';
pass('a follower restarted after compaction catches up');

# A new member needs entries the leader compacted: it gets the base.
my $n4 = RaftCluster::new_node('n4');
RaftCluster::join_cluster($n4, $leader);
push @nodes, $n4;
$leader = RaftCluster::wait_for_leader(@nodes);
$index = RaftCluster::barrier($leader);
$n4->poll_query_until('postgres',
	"SELECT commit_index >= $index AND voting FROM raft.status")
  or die 'n4 never caught up';
cmp_ok($n4->safe_psql('postgres', 'SELECT first_index FROM raft.status'), '>', 1,
	'n4 started from the compacted base, not from index 1');
is($leader->safe_psql('postgres', 'SELECT count(*) FROM raft.nodes WHERE voting'),
	'4', 'n4 is a voter');

done_testing();
