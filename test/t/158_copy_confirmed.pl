# Copyright (c) pg_raft contributors
#
# 158_copy_confirmed.pl: a copy never keeps a transaction that is not in
# the log.
#
# A leader's data can hold a transaction that is not in the log yet (it
# committed with synchronous_commit = local, and capture has not shipped
# it), and that the log may never get (the leader dies).  A member that
# copies rows from that leader must not take it: the copy's snapshot is
# used only once the leader's own slot has confirmed the snapshot's
# position in the same term.  Here capture is held up (the process that
# decodes its slot is stopped), so the leader cannot confirm: the repair
# waits and fails, and
# the member keeps its rows.  The leader then dies with the transaction,
# and the member repairs from the next leader: it never holds that
# transaction.  (Without the check, the member copied the transaction and
# kept it after the leader died: its rows parted from everyone's.)

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, note text);
	INSERT INTO t VALUES (1, 'in the log');
});
RaftCluster::form_cluster(@nodes);
my $first = RaftCluster::wait_for_leader(@nodes);

# The first leader diverges on row 1 and dies.
my $worker = $first->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
kill 'STOP', $worker;
$first->safe_psql('postgres',
	q{SET synchronous_commit = local; UPDATE t SET note = 'diverged' WHERE id = 1});
$first->kill9;
kill 'KILL', $worker;
my @rest = grep { $_ != $first } @nodes;
my $second = RaftCluster::wait_for_leader(@rest);

# The second leader's capture is held up, and it commits, locally only, a
# change to the row the first one will repair.
$second->poll_query_until('postgres',
	q{SELECT active_pid IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'pg_raft'})
  or die 'the second leader never decoded its slot';
my $decoder = $second->safe_psql('postgres',
	q{SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pg_raft'});
like($decoder, qr/^\d+$/, 'the second leader decodes its slot');
kill 'STOP', $decoder;
$second->safe_psql('postgres',
	q{SET synchronous_commit = local; UPDATE t SET note = 'not in the log' WHERE id = 1});

RaftCluster::restart_after_kill9($first);
ok($first->wait_for_log(qr/found 1 transactions that committed on this node while it led/),
	'the first leader finds its diverged transaction');
ok($first->wait_for_log(qr/the leader did not confirm its log up to LSN/),
	'its repair waits for the leader to confirm the snapshot, which it cannot');
isnt($first->safe_psql('postgres', q{SELECT note FROM t WHERE id = 1}), 'not in the log',
	'so it does not copy the transaction that is not in the log');

# The second leader dies with that transaction.
$second->kill9;
kill 'KILL', $decoder;
my ($third) = grep { $_ != $first && $_ != $second } @nodes;
my $leader = RaftCluster::wait_for_leader($first, $third);
is($leader->name, $third->name, 'the third member leads');
RaftCluster::wait_for_apply($third, $first);
is($first->safe_psql('postgres', q{SELECT note FROM t WHERE id = 1}), 'in the log',
	'the first leader repairs its row from the third: the log\'s version');
is(RaftCluster::checksums($first, 't'), RaftCluster::checksums($third, 't'),
	'and holds the same rows');

done_testing();
