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
#   WAL (held still with SIGSTOP from before the transaction, as a
#   walsender on a quiet machine may keep up): capture hands decoding to
#   the decoding worker while the transaction runs; once the worker has
#   kept up, a walsender takes over again.
# - Rows written across both hand-overs reach every member once.
# - The leader killed (kill -9) just after it handed decoding to its
#   decoding worker, while a large transaction streams: a new
#   leader takes writes, the old one comes back, and every member holds
#   the same rows, with nothing of the transaction, which never committed.
# - A new decoding process after a streamed transaction's commit was
#   proposed, before the slot confirmed it (the followers' raft workers
#   held still): the transaction decoded again is not proposed again,
#   and every member holds its rows once.

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
my ($large, $large_err) = RaftCluster::large_transaction($leader,
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

# ---- auto: the leader killed just after a hand-over, while a transaction streams

# the transaction stays open (pg_sleep) until the leader is killed
my ($lost) = RaftCluster::large_transaction($leader,
	q{BEGIN; INSERT INTO t SELECT g, 'unacknowledged' FROM generate_series(900001, 1400000) g; SELECT pg_sleep(600)},
	'auto: a large transaction makes capture hand decoding to the decoding worker');
$leader->kill9;
$lost->finish;
isnt($lost->result(0), 0, '... the leader is killed: its session fails, its transaction open');
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
is($leader_counts, '0 200 590700',
	"the killed leader's open transaction left no row, every later row is there");
foreach my $node (grep { $_ != $leader } @nodes)
{
	is($node->safe_psql('postgres', $counts), $leader_counts,
		$node->name . ' holds the same rows');
	is(RaftCluster::checksums($node, 't'), RaftCluster::checksums($leader, 't'),
		'... with the same checksum');
}

# ---- a new decoding process after a streamed commit was proposed
#
# The followers' raft workers are held still, so the commit entry of a
# streamed transaction cannot commit in Raft, nor the slot confirm it (a
# long election timeout keeps the leader leading meanwhile).  A new
# decoding process then decodes the transaction again: whole at its
# commit, if the slot confirmed everything before the commit, or
# streamed again from its first block, if it confirmed a point further
# inside it.  Neither may reach the log again: a member that applied the
# commit would take the blocks for a new stream of the same transaction
# and apply its rows twice.  The test does not choose the case: the
# walsender may catch up, and capture confirm, before the COMMIT.
foreach my $node (@nodes)
{
	$node->safe_psql('postgres', q{ALTER SYSTEM SET raft.election_timeout = '20s'});
	$node->safe_psql('postgres', q{ALTER SYSTEM SET raft.decoding = walsender});
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}
$leader->poll_query_until('postgres',
	q{SELECT backend_type = 'walsender' FROM pg_stat_activity
  WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pg_raft')})
  or die 'no walsender decodes';
my @others = grep { $_ != $leader } @nodes;
($in, $out, $err) = ('', '', '');
$timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
$big = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err, $timer);
# the followers hold every block decoded so far: nothing waits for them
my $caught_up = q{SELECT sent_lsn >= pg_current_wal_flush_lsn() FROM pg_stat_replication
  WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'pg_raft')};
in_big_transaction(
	q{BEGIN; INSERT INTO t SELECT g, 'sent twice' FROM generate_series(3000001, 3050000) g;},
	'first');
my $middle = $leader->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
$leader->poll_query_until('postgres', $caught_up)
  or die 'the walsender did not decode the open transaction';
RaftCluster::wait_for_apply($leader, @others);
# A new decoding process streams a transaction again only if the slot
# confirmed a point inside it (before that point PostgreSQL sends it whole
# at its commit, which capture skips by its LSN): capture confirms what
# it decoded while nothing waits for Raft, as now, between two blocks.
ok($leader->poll_query_until('postgres',
		qq{SELECT confirmed_flush_lsn >= '$middle' FROM pg_replication_slots WHERE slot_name = 'pg_raft'}),
	'the slot confirms a point inside an open streamed transaction');
in_big_transaction(
	q{INSERT INTO t SELECT g, 'sent twice' FROM generate_series(3050001, 3100000) g;},
	'second');
$leader->poll_query_until('postgres', $caught_up)
  or die 'the walsender did not decode the open transaction';
RaftCluster::wait_for_apply($leader, @others);
my @raft_workers = map {
	$_->safe_psql('postgres', 'SELECT worker_pid FROM raft.status')
} @others;
RaftCluster::stop_while_asleep($_) foreach @raft_workers;
$in .= "COMMIT;\n";
$big->pump_nb;
my $walsender = decoder_pid();
ok(RaftCluster::wait_until(sub {
			$leader->safe_psql('postgres',
				q{SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'}) eq '1'
			  && $leader->safe_psql('postgres', $caught_up) eq 't'
			  && $leader->safe_psql('postgres',
				'SELECT last_index > commit_index FROM raft.status') eq 't'
		}),
	'a streamed transaction commits, its COMMIT waits: the followers hold still');
my $restarts = () = slurp_file($leader->logfile) =~ /starting logical decoding for slot "pg_raft"/g;
$leader->safe_psql('postgres', "SELECT pg_terminate_backend($walsender)");
ok(RaftCluster::wait_until(sub {
			my $n = () = slurp_file($leader->logfile) =~ /starting logical decoding for slot "pg_raft"/g;
			return $n > $restarts && $leader->safe_psql('postgres', $caught_up) eq 't';
		}),
	'... and a new walsender decoded it again, before the slot confirmed it');
kill 'CONT', $_ foreach @raft_workers;
$in .= "\\echo committed\n";
$big->pump until $out =~ /\bcommitted\b/ || $timer->is_expired;
$in .= "\\q\n";
$big->finish;
is($big->result(0), 0, '... and the COMMIT returns once the followers go on')
  or diag($err);
$leader->safe_psql('postgres', q{INSERT INTO t SELECT g, 'after' FROM generate_series(3100001, 3100010) g});
RaftCluster::wait_for_apply($leader, @others);
foreach my $node (@others)
{
	is($node->safe_psql('postgres', q{SELECT count(*) FROM t WHERE pad = 'sent twice'}), '100000',
		$node->name . ' holds the transaction decoded twice once');
	ok(!$node->log_contains('duplicate key'), '... and applied no row of it twice');
	is(RaftCluster::checksums($node, 't'), RaftCluster::checksums($leader, 't'),
		'... and holds the leader\'s rows');
}

done_testing();
