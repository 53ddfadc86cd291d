# Copyright (c) pg_raft contributors
#
# 040_crash_loop.pl: kill -9 the leader again and again under a heavy
# barrier load.
#
# Promise 5 and the Raft safety properties seen from SQL: after every crash
# the log recovers, no node's commit index ever goes backwards (across its
# own restarts too), and no two nodes ever report leading the same term.
# The views are read throughout, while the load runs and the leader dies.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;
use Time::HiRes qw(time usleep);

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
RaftCluster::form_cluster(@nodes);

my %last_commit;	# node name => highest commit index seen
my %leader_of;		# term => node name that reported leading it
my $violations = 0;
my $observations = 0;

# observe(): reads raft.status of every node that answers and checks it
# against everything seen before.
sub observe
{
	foreach my $node (@nodes)
	{
		my $st = RaftCluster::status($node);
		next unless %$st;
		$observations++;
		my $name = $node->name;
		if (defined $last_commit{$name} && $st->{commit} < $last_commit{$name})
		{
			diag("$name: commit index went back from $last_commit{$name} to $st->{commit}");
			$violations++;
		}
		$last_commit{$name} = $st->{commit}
		  if !defined $last_commit{$name} || $st->{commit} > $last_commit{$name};
		if ($st->{role} eq 'leader')
		{
			my $prev = $leader_of{ $st->{term} };
			if (defined $prev && $prev ne $name)
			{
				diag("term $st->{term} has two leaders: $prev and $name");
				$violations++;
			}
			$leader_of{ $st->{term} } = $name;
		}
	}
	return;
}

my $script = PostgreSQL::Test::Utils::tempdir() . '/barrier.sql';
open(my $fh, '>', $script) or die $!;
print $fh "SELECT raft.barrier('2s');\n";
close($fh);

my $rounds = 5;
my $last_barrier = 0;
for my $round (1 .. $rounds)
{
	my $leader = RaftCluster::wait_for_leader(@nodes);
	my ($out, $err) = ('', '');
	my $load = IPC::Run::start(
		[
			'pgbench', '-n', '-f', $script, '-c', '4', '-T', '60',
			'-h', $leader->host, '-p', $leader->port, 'postgres'
		],
		'>', \$out, '2>', \$err);

	# let the load run, then kill the leader in the middle of it
	my $until = time() + 1.0;
	observe() while time() < $until;
	$leader->kill9;
	my @alive = grep { $_ != $leader } @nodes;
	my $new = RaftCluster::wait_for_leader(@alive);
	observe();
	$load->kill_kill;
	isnt($new->name, $leader->name, "round $round: a new leader after kill -9 of " . $leader->name);

	RaftCluster::restart_after_kill9($leader);
	RaftCluster::wait_for_leader(@nodes);
	observe();
	my $index = RaftCluster::barrier(RaftCluster::wait_for_leader(@nodes));
	cmp_ok($index, '>', $last_barrier, "round $round: the cluster commits again");
	$last_barrier = $index;
}

# every node recovers its log and catches up
my $leader = RaftCluster::wait_for_leader(@nodes);
my $final = RaftCluster::barrier($leader);
foreach my $node (@nodes)
{
	$node->poll_query_until('postgres',
		"SELECT commit_index >= $final FROM raft.status")
	  or die $node->name . ' never caught up';
}
observe();
pass("every node commits $final after $rounds crashes");
is($violations, 0, "no commit index went backwards and no term had two leaders ($observations observations)");
cmp_ok(scalar(keys %leader_of), '>=', $rounds, 'there was a leader in at least one term per round');

done_testing();
