# Copyright (c) pg_raft contributors
#
# Through the cluster, not through raft.apply_changes():
#
#  - every built-in type family, arrays, composites, domains, enums, large
#    TOASTed values, a keyless FULL table, TRUNCATE with CASCADE and
#    RESTART IDENTITY: the members end with the same checksums;
#  - a bank: transfers between accounts in one transaction each, from two
#    clients, across two failovers (kill -9 of the leader).  A reader
#    samples every live member all along; the total never changes on any
#    of them, and the members that were never killed end identical to the
#    last leader.

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
$nodes[0]->safe_psql('postgres', RaftCluster::type_coverage_schema() . q{
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g;});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);

# every type family, through the log
$leader->safe_psql('postgres', RaftCluster::type_coverage_writes());
RaftCluster::wait_for_apply($leader, grep { $_ != $leader } @nodes);
my @typed = qw(kinds docs nokey parent child);
my $sums = RaftCluster::checksums($leader, @typed);
is(RaftCluster::checksums($_, @typed), $sums,
	'every type family, TOAST, FULL and TRUNCATE arrive whole on ' . $_->name)
  foreach grep { $_ != $leader } @nodes;
is($nodes[2]->safe_psql('postgres', q{SELECT t, arr, p, mo FROM kinds WHERE id = 1}),
	'changed|{1,NULL,3,4}|(7,seven)|happy', 'values read back as written');

# the bank
my $script = PostgreSQL::Test::Utils::tempdir() . '/transfer.sql';
open(my $fh, '>', $script) or die $!;
print $fh q{\set a random(1, 100)
\set b random(1, 100)
\set amount random(1, 50)
BEGIN;
UPDATE accounts SET balance = balance - :amount WHERE id = :a;
UPDATE accounts SET balance = balance + :amount WHERE id = :b;
END;
};
close($fh);

my @samples;
my %down;

# total balance on every live member, now
sub sample
{
	foreach my $node (@nodes)
	{
		next if $down{ $node->name };
		my ($ret, $out) = $node->psql('postgres', 'SELECT sum(balance) FROM accounts');
		push @samples, $node->name . "=$out" if $ret == 0;
	}
}

# transfers on the current leader until it is killed
sub start_transfers
{
	my ($node) = @_;
	my ($out, $err) = ('', '');
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '60', '--max-tries', '10',
		  '-f', $script, $node->connstr('postgres') ],
		'>', \$out, '2>', \$err);
}

sub sample_for
{
	my ($seconds) = @_;
	my $until = time() + $seconds;
	sample() while time() < $until;
}

my $killed = 0;
my @ever_killed;
foreach my $round (1, 2)
{
	my $bench = start_transfers($leader);
	sample_for(3);
	$leader->kill9;
	$down{ $leader->name } = 1;
	push @ever_killed, $leader;
	eval { $bench->finish; };
	my @alive = grep { !$down{ $_->name } } @nodes;
	sample();
	$leader = RaftCluster::wait_for_leader(@alive);
	pass("round $round: " . $leader->name . ' leads after the kill');
	# the killed node comes back before the next round: a majority remains
	my ($back) = grep { $down{ $_->name } } @nodes;
	RaftCluster::restart_after_kill9($back);
	delete $down{ $back->name };
}
my $bench = start_transfers($leader);
sample_for(3);
$bench->kill_kill;
RaftCluster::wait_for_leader(@nodes);
$leader = RaftCluster::wait_for_leader(@nodes);
RaftCluster::wait_for_apply($leader, grep { $_ != $leader } @nodes);
sample();

my @wrong = grep { !/=100000$/ } @samples;
cmp_ok(scalar @samples, '>', 30, scalar(@samples) . ' samples of the total on live members');
is(scalar @wrong, 0, 'the total never changed on any member')
  or diag explain \@wrong;
# one assertion whichever node leads at the end (it may be the steady one)
my ($steady) = grep { my $n = $_; !grep { $_ == $n } @ever_killed } @nodes;
is(RaftCluster::checksums($steady, 'accounts'), RaftCluster::checksums($leader, 'accounts'),
	$steady->name . ', never killed, ends identical to the leader');
cmp_ok($leader->safe_psql('postgres', 'SELECT count(*) FROM accounts WHERE balance <> 1000'),
	'>', 0, 'transfers happened');

done_testing();
