# Copyright (c) pg_raft contributors
#
# Sequences never go back: after kill -9 of the leader, nextval() on the
# new leader exceeds every value the old one handed out, for sequences
# that no table uses, as the application calls them (SELECT nextval('s'),
# one transaction each).  Also for a cached sequence used by two sessions,
# a descending one, a sequence moved back by setval(), one created in the
# transaction that used it, and values drawn in a rolled-back transaction.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use List::Util qw(max min);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);

$leader->safe_psql('postgres', q{
CREATE SEQUENCE plain;
CREATE SEQUENCE cached CACHE 20;
CREATE SEQUENCE falling INCREMENT -3 MAXVALUE -1 START -1;
CREATE SEQUENCE moved;
CREATE SEQUENCE rolled_back;});

# values(NODE, SQL, N): runs SQL N times, one transaction each, in one
# session; returns the values
sub draw
{
	my ($node, $sql, $n) = @_;
	return split /\n/, $node->safe_psql('postgres', join("\n", ($sql) x $n));
}

my @plain = draw($leader, q{SELECT nextval('plain');}, 300);
my @cached = (draw($leader, q{SELECT nextval('cached');}, 50),
	draw($leader, q{SELECT nextval('cached');}, 50));
my @falling = draw($leader, q{SELECT nextval('falling');}, 100);
is(scalar(@plain) + scalar(@cached) + scalar(@falling), 500,
	'500 values drawn on the leader');

# setval() moves a sequence back, exactly
draw($leader, q{SELECT nextval('moved');}, 2000);
$leader->safe_psql('postgres', q{SELECT setval('moved', 10)});
my @moved = draw($leader, q{SELECT nextval('moved');}, 5);
is(join(',', @moved), '11,12,13,14,15', 'setval() moved the sequence back on the leader');
RaftCluster::wait_for_apply($leader, grep { $_ != $leader } @nodes);
my ($follower) = grep { $_ != $leader } @nodes;
is($follower->safe_psql('postgres', q{SELECT last_value <= 1015 AND last_value >= 15 FROM moved}), 't',
	'a follower\'s copy of the sequence moved back too');

# created in the transaction that draws from it; drawn in a rolled-back one
my @created = split /\n/, $leader->safe_psql('postgres', q{
BEGIN;
CREATE SEQUENCE born_here;
SELECT nextval('born_here') FROM generate_series(1, 3);
COMMIT;});
$leader->safe_psql('postgres', q{BEGIN; SELECT nextval('rolled_back') FROM generate_series(1, 5); ROLLBACK;});
my @rolled = draw($leader, q{SELECT nextval('rolled_back');}, 3);

$leader->kill9;
my $old = $leader;
$leader = RaftCluster::wait_for_leader(grep { $_ != $old } @nodes);

my $next = $leader->safe_psql('postgres', q{SELECT nextval('plain')});
cmp_ok($next, '>', max(@plain), 'the new leader\'s nextval() exceeds every value the old one handed out');
$next = $leader->safe_psql('postgres', q{SELECT nextval('cached')});
cmp_ok($next, '>', max(@cached), '... for a cached sequence drawn by two sessions');
$next = $leader->safe_psql('postgres', q{SELECT nextval('falling')});
cmp_ok($next, '<', min(@falling), '... for a descending sequence');
$next = $leader->safe_psql('postgres', q{SELECT nextval('moved')});
cmp_ok($next, '>', max(@moved), '... for a sequence setval() moved back');
cmp_ok($next, '<', 2000, '... which stays moved back');
$next = $leader->safe_psql('postgres', q{SELECT nextval('born_here')});
cmp_ok($next, '>', max(@created), '... for a sequence created in the transaction that drew from it');
$next = $leader->safe_psql('postgres', q{SELECT nextval('rolled_back')});
cmp_ok($next, '>', max(@rolled), '... and after values drawn in a rolled-back transaction');

RaftCluster::restart_after_kill9($old);
RaftCluster::wait_for_leader(@nodes);

done_testing();
