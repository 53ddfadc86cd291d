# Copyright (c) pg_raft contributors
#
# 157_transfer.pl: a leadership transfer loses nothing.
#
# raft.transfer_leadership() under a write load, three times in a row.
# The leader stops taking writes first, and hands over only once every
# commit in flight has reached the log: none of them is left outside it,
# so no former leader finds diverged transactions to repair.  (It used to
# hand over at once: the commits waiting for the log were cut off, and
# became diverged transactions on the former leader.)

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres', q{CREATE TABLE t (id bigserial PRIMARY KEY, note text)});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);

my $script = PostgreSQL::Test::Utils::tempdir() . '/insert.sql';
open(my $fh, '>', $script) or die $!;
print $fh "INSERT INTO t (note) VALUES ('under load');\n";
close($fh);

foreach my $round (1 .. 3)
{
	my ($target) = grep { $_ != $leader } @nodes;
	my $before = $leader->safe_psql('postgres', 'SELECT count(*) FROM t');
	my ($out, $err) = ('', '');
	my $load = IPC::Run::start(
		[
			'pgbench', '-n', '-c', '4', '-T', '20', '-f', $script,
			'-h', $leader->host, '-p', $leader->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	$leader->poll_query_until('postgres', "SELECT count(*) > $before + 200 FROM t")
	  or die 'the load does not write';
	is($leader->safe_psql('postgres',
			"SELECT raft.transfer_leadership('" . $target->name . "')"),
		$target->name, "round $round: leadership moves to " . $target->name . ' under load');
	$leader = RaftCluster::wait_for_leader(@nodes);
	# the old leader's sessions are ended: the load stops by itself
	$load->finish;
}

RaftCluster::wait_for_apply($leader, @nodes);
foreach my $node (@nodes)
{
	is($node->safe_psql('postgres', 'SELECT diverged_transactions FROM raft.status'), '0',
		$node->name . ' left no transaction outside the log');
	ok(!$node->log_contains('that committed on this node while it led but never reached the raft log'),
		$node->name . ' found none to repair');
}
my $sum = RaftCluster::checksums($leader, 't');
is(RaftCluster::checksums($_, 't'), $sum, $_->name . ' holds the same rows as the leader')
  foreach grep { $_ != $leader } @nodes;

done_testing();
