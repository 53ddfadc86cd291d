# Copyright (c) pg_raft contributors
#
# A former leader that committed a transaction which never reached the
# Raft log (synchronous_commit = local, then it died before shipping it)
# finds it when it comes back as a follower: a LOG line and
# raft.status name a file that holds it, readable with raft.decode_changes.
# The other members never see it.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY, note text)');
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (1, 'everywhere')});
RaftCluster::wait_for_apply($leader, @followers);

# The leader's raft worker stops: the next transaction can commit on the
# leader (synchronous_commit = local) but never becomes an entry.
my $worker = $leader->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
kill 'STOP', $worker;
is($leader->safe_psql('postgres',
		q{SET synchronous_commit = local; INSERT INTO t VALUES (2, 'only on the old leader'); SELECT 'committed'}),
	'committed', 'the leader commits locally without waiting for the log');
$leader->kill9;
# and it dies stopped: resumed, it would still ship what it had
kill 'KILL', $worker;
my $new = RaftCluster::wait_for_leader(@followers);
$new->safe_psql('postgres', q{INSERT INTO t VALUES (3, 'after the failover')});

RaftCluster::restart_after_kill9($leader);
RaftCluster::wait_for_apply($new, $leader);
ok($leader->poll_query_until('postgres', 'SELECT diverged_transactions = 1 FROM raft.status'),
	'the old leader counts one transaction that never reached the log');
my $file = $leader->safe_psql('postgres', 'SELECT diverged_file FROM raft.status');
like($file, qr{^pg_raft/diverged-\d+\.changes$}, 'raft.status names the file that keeps it');
ok($leader->log_contains('found 1 transactions that committed on this node while it led but never reached the raft log'),
	'and a LOG line says so');
my $text = $leader->safe_psql('postgres',
	"SELECT string_agg(line, E'\\n') FROM raft.decode_changes(pg_read_binary_file('$file')) AS line");
like($text, qr/only on the old leader/, 'the file holds the transaction, readable with raft.decode_changes');
is($_->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM t'), '1,3',
	$_->name . ' never saw it')
  foreach @followers;
is($leader->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 3'), '1',
	'the old leader applies what the new one wrote');
is($leader->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pg_raft'}),
	'0', 'and dropped the slot of its old leadership');

done_testing();
