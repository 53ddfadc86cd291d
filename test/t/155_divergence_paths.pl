# Copyright (c) pg_raft contributors
#
# 155_divergence_paths.pl: a former leader looks for transactions that
# never reached the log on every way back, and repairs only their rows.
#
#  1. Every member restarts at once.  The former leader starts no
#     election while the slot of its old leadership is unsettled (it may
#     hold transactions outside the log, and could then serve no one):
#     another member leads, and the former leader finds its diverged
#     transactions and repairs as a follower.  (Elected again, it used to
#     drop its old slot without looking: the rows stayed on it alone.)
#  2. A former leader comes back after two leader changes, while the
#     others wrote the very keys its diverged transaction touched: it
#     repairs when it meets the first entry past its leadership.  (It
#     used to wait for an entry of the current term, and crash-looped on
#     the key conflict before.)
#  3. A diverged transaction that touched every kind of value, TOASTed
#     rows and a table without a key, and an update of a repaired key in
#     the window: the repair copies the rows (the keyless table whole)
#     and repeats at a newer snapshot for the moved key.  The repairing
#     member is killed around that second try and takes the repair up.

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
	CREATE TABLE seq_rows (id bigserial PRIMARY KEY, note text);
	CREATE SCHEMA other;
	CREATE TABLE other.u (id int PRIMARY KEY);
	INSERT INTO other.u SELECT generate_series(1, 100);
} . RaftCluster::type_coverage_schema());
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'everywhere' FROM generate_series(1, 10) g});
RaftCluster::wait_for_apply($leader, @nodes);

# commit_diverged(NODE, SQL): commits SQL on NODE, the leader, after
# stopping its raft worker, so that it never reaches the log; returns the
# stopped worker's pid.
sub commit_diverged
{
	my ($node, $sql) = @_;
	my $worker = $node->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
	kill 'STOP', $worker;
	$node->safe_psql('postgres', "SET synchronous_commit = local; BEGIN; $sql COMMIT;");
	return $worker;
}

# ---- 1. every member restarts; the former leader is elected again

my $worker = commit_diverged($leader, q{
	INSERT INTO t VALUES (11, 'diverged insert');
	UPDATE t SET note = 'diverged update' WHERE id = 1;
	DELETE FROM t WHERE id = 2;
	INSERT INTO seq_rows (note) SELECT 'diverged' FROM generate_series(1, 5);
});
$_->kill9 foreach @nodes;
kill 'KILL', $worker;
RaftCluster::restart_after_kill9($_) foreach @nodes;
my $new = RaftCluster::wait_for_leader(@nodes);
isnt($new->name, $leader->name, 'after a restart of every member, another member leads');
ok($leader->wait_for_log(qr/found 1 transactions that committed on this node while it led but never reached the raft log/),
	'the former leader finds its diverged transaction');
ok($leader->wait_for_log(qr/repaired 2 tables from node/), 'the former leader repairs the rows of two tables');
$new->safe_psql('postgres', q{INSERT INTO t VALUES (12, 'after the repair')});
$new->safe_psql('postgres', q{INSERT INTO seq_rows (note) VALUES ('after the repair')});
RaftCluster::wait_for_apply($new, @nodes);
is($leader->safe_psql('postgres', q{SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM t WHERE id IN (1, 2, 11, 12)}),
	'1 everywhere, 2 everywhere, 12 after the repair',
	'its rows are the log\'s: the diverged insert, update and delete are gone');
is($leader->safe_psql('postgres', q{SELECT string_agg(id::text, ',' ORDER BY id) FROM seq_rows}),
	'1', 'the log\'s one row of seq_rows, numbered by the new leader');
my @tables = qw(t seq_rows other.u);
my %sums = map { $_->name => RaftCluster::checksums($_, @tables) } @nodes;
is($sums{ $leader->name }, $sums{ $new->name }, 'its tables have the leader\'s checksums');

# ---- 2. back after two leader changes, the keys written meanwhile

my $old = $new;
$worker = commit_diverged($old, q{
	INSERT INTO t VALUES (13, 'diverged');
	UPDATE t SET note = 'diverged' WHERE id = 3;
});
$old->kill9;
kill 'KILL', $worker;
my @rest = grep { $_ != $old } @nodes;
my $first = RaftCluster::wait_for_leader(@rest);
$first->safe_psql('postgres', q{INSERT INTO t VALUES (13, 'first new leader')});
my ($second) = grep { $_ != $first } @rest;
$first->safe_psql('postgres', "SELECT raft.transfer_leadership('" . $second->name . "')");
is(RaftCluster::wait_for_leader(@rest)->name, $second->name, 'leadership changes a second time');
# The first new leader settles the slot of its short leadership before it
# says it holds the log's data.  Until then the second counts the killed
# member towards its data majority only while its last word is recent, and
# may stop taking writes for a moment when that ages out: wait for it.
$second->poll_query_until('postgres',
	"SELECT applied_index > 0 FROM raft.nodes WHERE node_name = '" . $first->name . "'")
  or die 'the first new leader never said it holds the log\'s data';
$second->poll_query_until('postgres', 'SELECT writable FROM raft.status')
  or die 'the second new leader does not take writes';
$second->safe_psql('postgres', q{UPDATE t SET note = 'second new leader' WHERE id IN (3, 13)});
RaftCluster::restart_after_kill9($old);
ok($old->wait_for_log(qr/found 1 transactions that committed on this node while it led/),
	'the member back after two leader changes finds its diverged transaction');
ok($old->wait_for_log(qr/repaired 1 tables from node/), 'and repairs one table\'s rows');
RaftCluster::wait_for_apply($second, @nodes);
is($old->safe_psql('postgres', q{SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM t WHERE id IN (3, 13)}),
	'3 second new leader, 13 second new leader', 'it holds the second leader\'s rows');
%sums = map { $_->name => RaftCluster::checksums($_, @tables) } @nodes;
is($sums{ $old->name }, $sums{ $second->name }, 'and the leader\'s checksums');

# ---- 3. every kind of value, a keyless table, a moved key, a kill

$leader = $second;
$leader->safe_psql('postgres', RaftCluster::type_coverage_writes());
RaftCluster::wait_for_apply($leader, @nodes);
$worker = commit_diverged($leader, q{
	UPDATE kinds SET t = 'diverged', arr = '{9}' WHERE id = 1;
	UPDATE docs SET body = repeat('d', 30000) WHERE id = 3;
	INSERT INTO nokey VALUES (7, 'diverged');
	INSERT INTO t VALUES (20, 'diverged');
});
$leader->kill9;
kill 'KILL', $worker;
@rest = grep { $_ != $leader } @nodes;
$new = RaftCluster::wait_for_leader(@rest);
# in the window: key 20 moves to 21 (a row the repair did not copy), and
# kinds' row 1 changes again
$new->safe_psql('postgres', q{
	INSERT INTO t VALUES (20, 'new leader');
	UPDATE t SET id = 21 WHERE id = 20;
	UPDATE kinds SET t = 'new leader' WHERE id = 1;
	UPDATE docs SET n = 7 WHERE id = 3;
});
RaftCluster::restart_after_kill9($leader);
ok($leader->wait_for_log(qr/moves a row into or out of the rows of public.t that this node is repairing/),
	'the key moved in the window has it repair again');
# killed around that second try: pg_raft/repair says where it stands
$leader->kill9;
RaftCluster::restart_after_kill9($leader);
ok($leader->wait_for_log(qr/repaired 4 tables from node/),
	'the former leader repairs the rows of three tables, and one whole, at a newer snapshot');
RaftCluster::wait_for_apply($new, @nodes);
@tables = qw(t kinds docs nokey other.u);
%sums = map { $_->name => RaftCluster::checksums($_, @tables) } @nodes;
is($sums{ $leader->name }, $sums{ $new->name }, 'every type, TOASTed values and the keyless table match the leader');
is($leader->safe_psql('postgres', q{SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM t WHERE id >= 20}),
	'21 new leader', 'the moved key is the log\'s');

done_testing();
