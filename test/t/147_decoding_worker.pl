# Copyright (c) pg_raft contributors
#
# 147_decoding_worker.pl: where the leader decodes its transactions
# (raft.decoding): in a decoding worker of pg_raft's own, or in a
# walsender, and the hand-overs between them.
#
# With raft.decoding = worker:
# - Only the leader runs a decoding worker, and it is the one holding the
#   slot pg_raft; the leader's raft worker holds the stream, under
#   application_name pg_raft, that synchronous replication waits for.
# - The decoding worker is ended (pg_terminate_backend) between commits,
#   and twice in the middle of a transaction that streams while it runs:
#   capture says so, starts a new one, and every acknowledged row reaches
#   every member once, the streamed transaction whole.
# With raft.decoding = auto:
# - A walsender decodes while it keeps up.
# - A large transaction, which streams while it runs, puts it behind the
#   WAL (held still with SIGSTOP once it has read into the transaction, as
#   a walsender on a quiet machine may keep up): capture hands decoding to
#   the decoding worker, in the middle of the stream; once the worker has
#   kept up, a walsender takes over again.
# - Rows written across both hand-overs reach every member once.
# - The leader killed (kill -9) just after it handed decoding to its
#   decoding worker, in the middle of a large transaction's stream: a new
#   leader takes writes, the old one comes back, and every member holds
#   the same rows, with all or nothing of the transaction that was never
#   acknowledged.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes =
  map { RaftCluster::new_node($_, "logical_decoding_work_mem = '64kB'\nraft.decoding = worker\n") }
  qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY, pad text)');
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;

# the decoding worker of the current capture, once it holds the slot
sub decoder_pid
{
	$leader->poll_query_until('postgres',
		q{SELECT active_pid IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'pg_raft'})
	  or die 'no process holds the slot pg_raft';
	return $leader->safe_psql('postgres',
		q{SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pg_raft'});
}

# large_transaction(STATEMENT, NAME): runs STATEMENT, a large INSERT, in a
# session of its own on the leader.  Once the walsender that decodes has
# read into it, that walsender is held still (SIGSTOP) until capture hands
# decoding to the decoding worker, as for a walsender that falls behind
# (on a quiet machine one may keep up), and the hand-over is checked as
# NAME.  Returns the session and a reference to its stderr.
sub large_transaction
{
	my ($statement, $name) = @_;
	my $offset = -s $leader->logfile;
	my $walsender = decoder_pid();
	my $from = $leader->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	my ($out, $err) = ('', '');
	my $session = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres'),
			'-c', $statement ],
		'>', \$out, '2>', \$err);
	RaftCluster::wait_until(sub {
			$leader->safe_psql('postgres',
				"SELECT sent_lsn > '$from'::pg_lsn + 262144 FROM pg_stat_replication WHERE pid = $walsender"
			) eq 't' })
	  or die 'the walsender did not read into the large transaction';
	kill 'STOP', $walsender;
	my $handed = eval {
		$leader->wait_for_log(
			qr/pg_raft hands this leader's decoding to its decoding worker/, $offset);
		1;
	};
	kill 'CONT', $walsender;
	ok($handed, $name);
	return ($session, \$err);
}

# ---- who does what

my $decoder = decoder_pid();
is($leader->safe_psql('postgres',
		"SELECT backend_type FROM pg_stat_activity WHERE pid = $decoder"),
	'pg_raft decoding worker', 'the leader\'s decoding worker holds the slot');
is($_->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_raft decoding worker'}),
	'0', $_->name . ', a follower, runs no decoding worker')
  foreach @followers;
is($leader->safe_psql('postgres',
		q{SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pg_raft'}),
	'sync', 'the leader\'s own stream is its synchronous standby');

# ---- ended between commits

$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g});
my $offset = -s $leader->logfile;
$leader->safe_psql('postgres', "SELECT pg_terminate_backend($decoder)");
$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'after' FROM generate_series(101, 200) g});
pass('a commit after the decoding worker was ended is acknowledged');
ok($leader->wait_for_log(
		qr/pg_raft could not capture this leader's changes: the decoding worker stopped/,
		$offset),
	'capture says that its decoding worker stopped');
ok($leader->wait_for_log(qr/pg_raft captures this leader's changes again/, $offset),
	'and that it captures again');
my $second = decoder_pid();
isnt($second, $decoder, 'a new decoding worker holds the slot');

# ---- ended twice while a transaction streams

my ($in, $out, $err) = ('', '', '');
my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my $big = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err, $timer);

# runs SQL in the large transaction's session, and waits for it
sub in_big_transaction
{
	my ($sql, $step) = @_;
	$in .= "$sql\n\\echo $step\n";
	$big->pump until $out =~ /\b$step\b/ || $timer->is_expired;
	die "the large transaction's session did not get through $step: $err"
	  unless $out =~ /\b$step\b/;
	return;
}

in_big_transaction('BEGIN;', 'begun');
my $first_id = 1001;
foreach my $round (1 .. 2)
{
	my $pid = decoder_pid();
	in_big_transaction(
		"INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series($first_id, "
		  . ($first_id + 29_999) . ') g;', "inserted$round");
	$first_id += 30_000;
	# blocks of it are queued by now (logical_decoding_work_mem = 64kB)
	$leader->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$leader->poll_query_until('postgres',
		qq{SELECT active_pid IS DISTINCT FROM $pid FROM pg_replication_slots WHERE slot_name = 'pg_raft'})
	  or die 'the ended decoding worker still holds the slot';
}
in_big_transaction(
	"INSERT INTO t SELECT g, repeat('z', 100) FROM generate_series($first_id, "
	  . ($first_id + 29_999) . ') g;', 'inserted3');
in_big_transaction('COMMIT;', 'committed');
$in .= "\\q\n";
$big->finish;
pass('the streamed transaction commits');

RaftCluster::wait_for_apply($leader, @followers);
foreach my $node (@nodes)
{
	is($node->safe_psql('postgres', 'SELECT count(*) FROM t'), '90200',
		$node->name . ' holds every row once');
}
is(RaftCluster::checksums($_, 't'), RaftCluster::checksums($leader, 't'),
	$_->name . ' holds the leader\'s rows')
  foreach @followers;

# ---- raft.decoding = auto: a walsender, the worker for a large transaction

# the backend type of the process that holds the slot
sub slot_holder
{
	my $pid = decoder_pid();
	return $leader->safe_psql('postgres',
		"SELECT backend_type FROM pg_stat_activity WHERE pid = $pid");
}

$offset = -s $leader->logfile;
foreach my $node (@nodes)
{
	$node->safe_psql('postgres', q{ALTER SYSTEM SET raft.decoding = auto});
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}
ok($leader->wait_for_log(qr/pg_raft hands this leader's decoding back to a walsender/, $offset),
	'auto: once the decoding worker keeps up, capture hands decoding to a walsender');
$leader->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_raft decoding worker'})
  or die 'the decoding worker did not exit';
is(slot_holder(), 'walsender', 'auto: a walsender holds the slot');
$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'walsender' FROM generate_series(200001, 200100) g});
pass('auto: a commit decoded by the walsender is acknowledged');

$offset = -s $leader->logfile;
my ($large, $large_err) = large_transaction(
	q{INSERT INTO t SELECT g, repeat('y', 100) FROM generate_series(300001, 800000) g},
	'auto: the walsender fell behind, and capture handed decoding to the decoding worker');
$large->finish;
is($large->result(0), 0, 'auto: a transaction of 500,000 rows commits')
  or diag($$large_err);
$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'worker' FROM generate_series(200101, 200200) g});
ok($leader->wait_for_log(qr/pg_raft hands this leader's decoding back to a walsender/, $offset),
	'auto: once the worker kept up, a walsender took over again');
$leader->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_raft decoding worker'})
  or die 'the decoding worker did not exit';
$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'walsender again' FROM generate_series(200201, 200300) g});
is(slot_holder(), 'walsender', 'auto: the walsender decodes again');

RaftCluster::wait_for_apply($leader, @followers);
foreach my $node (@nodes)
{
	is($node->safe_psql('postgres', 'SELECT count(*) FROM t'), '590500',
		$node->name . ' holds every row once, across both hand-overs');
}
is(RaftCluster::checksums($_, 't'), RaftCluster::checksums($leader, 't'),
	$_->name . ' holds the leader\'s rows after the hand-overs')
  foreach @followers;

# ---- auto: the leader killed just after a hand-over, mid-stream

my ($lost) = large_transaction(
	q{INSERT INTO t SELECT g, 'unacknowledged' FROM generate_series(900001, 1400000) g},
	'auto: a large transaction makes capture hand decoding to the decoding worker');
$leader->kill9;
$lost->finish;
isnt($lost->result(0), 0, '... the leader is killed: its INSERT is not acknowledged');
my $old_leader = $leader;
$leader = RaftCluster::wait_for_leader(@followers);
$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'new leader' FROM generate_series(2000001, 2000100) g});
pass('a new leader, ' . $leader->name . ', takes writes');
RaftCluster::restart_after_kill9($old_leader);
$leader = RaftCluster::wait_for_leader(@nodes);
$leader->safe_psql('postgres',
	q{INSERT INTO t SELECT g, 'all back' FROM generate_series(2000101, 2000200) g});
RaftCluster::wait_for_apply($leader, grep { $_ != $leader } @nodes);
my $counts = q{SELECT count(*) FILTER (WHERE pad = 'unacknowledged') || ' '
  || count(*) FILTER (WHERE pad IN ('new leader', 'all back')) || ' ' || count(*) FROM t};
my $leader_counts = $leader->safe_psql('postgres', $counts);
like($leader_counts, qr/^(0|500000) 200 (590700|1090700)$/,
	"the killed leader's transaction is there whole or not at all, every later row is ($leader_counts)");
foreach my $node (grep { $_ != $leader } @nodes)
{
	is($node->safe_psql('postgres', $counts), $leader_counts,
		$node->name . ' holds the same rows');
	is(RaftCluster::checksums($node, 't'), RaftCluster::checksums($leader, 't'),
		'... with the same checksum');
}

done_testing();
