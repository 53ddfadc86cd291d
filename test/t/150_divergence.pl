# Copyright (c) pg_raft contributors
#
# A former leader that committed a transaction which never reached the
# Raft log (synchronous_commit = local, then it died before shipping it)
# finds it when it comes back as a follower: a LOG line and
# raft.status name a file that holds it, readable with raft.decode_changes.
# The other members never see it, and the former leader repairs exactly
# the rows that transaction touched from the new leader: nothing is
# emptied, no other table is copied, and readers never miss a table.

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
	CREATE SCHEMA other;
	CREATE TABLE other.u (id int PRIMARY KEY);
	INSERT INTO other.u SELECT generate_series(1, 100);
});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (1, 'everywhere')});
RaftCluster::wait_for_apply($leader, @followers);
my $files_before = $leader->safe_psql('postgres',
	q{SELECT pg_relation_filenode('t') || ' ' || pg_relation_filenode('other.u')});

# The leader's raft worker stops: the next transaction can commit on the
# leader (synchronous_commit = local) but never becomes an entry; then
# the leader dies.
is(RaftCluster::commit_then_die($leader,
		q{INSERT INTO t VALUES (2, 'only on the old leader'); SELECT 'committed'}),
	'committed', 'the leader commits locally without waiting for the log');
my $new = RaftCluster::wait_for_leader(@followers);
# the client retries the transaction it got no answer for: the same key
# as the diverged row, which the old leader must not meet while it holds it
$new->safe_psql('postgres', q{INSERT INTO t VALUES (2, 'retried on the new leader'), (3, 'after the failover')});

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
is($_->safe_psql('postgres', q{SELECT count(*) FROM t WHERE note = 'only on the old leader'}), '0',
	$_->name . ' never saw it')
  foreach @followers;

# Then it repairs the one row from the new leader, while writes go on.
ok($leader->wait_for_log(qr/repaired 1 tables from node \d+'s data as of raft index \d+: 1 rows replaced by 1, \d+ bytes copied/),
	'the old leader repairs the one row its transaction touched: one deleted, the leader\'s copied');
ok(!$leader->log_contains('re-synchronises this node'), 'and copies nothing else');
$new->safe_psql('postgres', q{INSERT INTO t VALUES (4, 'after the repair')});
RaftCluster::wait_for_apply($new, @nodes);
is($leader->safe_psql('postgres', q{SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM t}),
	'1 everywhere, 2 retried on the new leader, 3 after the failover, 4 after the repair',
	'the old leader holds what the log holds, and no more');
is($leader->safe_psql('postgres',
		q{SELECT pg_relation_filenode('t') || ' ' || pg_relation_filenode('other.u')}),
	$files_before, 'its tables keep their files: nothing was emptied or created again');
ok(!-e $leader->data_dir . '/pg_raft/repair', 'the repair is over: pg_raft/repair is gone');
is($leader->safe_psql('postgres', 'SELECT resyncing FROM raft.status'), 'f',
	'raft.status no longer says resyncing');
my %sums = map { $_->name => RaftCluster::checksums($_, 't', 'other.u') } @nodes;
is($sums{ $leader->name }, $sums{ $new->name }, 'every table has the same checksum on the old and the new leader');
is($leader->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pg_raft'}),
	'0', 'and dropped the slot of its old leadership');
like($leader->safe_psql('postgres',
	"SELECT string_agg(line, E'\\n') FROM raft.decode_changes(pg_read_binary_file('$file')) AS line"),
	qr/only on the old leader/, 'the discarded transaction is still in its file');

done_testing();
