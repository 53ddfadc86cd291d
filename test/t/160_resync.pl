# Copyright (c) pg_raft contributors
#
# 160_resync.pl: a member whose data no longer follows from the log copies
# it again by itself.
#
# A follower stopped for longer than an election timeout while less than
# the leader keeps in memory for a lagging member (32 MB of log) is written
# catches up from the log, without copying anything.  So does one stopped
# while more is written, from the log's archive on disk
# (raft.log_keep_size), and through a restart of the leader; a damaged
# archive is reported, and the member copies its data instead.  With no
# archive kept, one stopped while more is written gets the log's base
# instead of the entries its data needs: its apply worker replaces every
# table's rows with the leader's in one transaction, without emptying
# anything first, then goes on from the copy's index.  A copy that fails (here: the
# leader has a table this member lacks) leaves the data as it was, and is
# tried again.  An instance that stopped in the middle of the copy of
# raft.join_cluster (the file pg_raft/copy_pending is left behind) holds
# nothing but part of that copy: it is emptied and copied again.  Writes go
# on meanwhile, and in the end every member holds the same data.  A member
# given leadership while it copies hands it over.  A former leader whose
# repair of rows needs entries compacted while it was away repairs every
# table instead.

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
$nodes[0]->safe_psql('postgres', q{
	CREATE TABLE small (id int PRIMARY KEY, note text);
	CREATE TABLE big (id int PRIMARY KEY, payload text);
	CREATE SCHEMA other;
	CREATE TABLE other.u (id int PRIMARY KEY);
	INSERT INTO other.u SELECT generate_series(1, 100);
	CREATE TABLE other.ids (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n bigserial);
	INSERT INTO other.ids DEFAULT VALUES;
});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my ($away, $other) = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres', q{INSERT INTO small SELECT g, 'before' FROM generate_series(1, 50) g});
my $applied = RaftCluster::wait_for_apply($leader, @nodes);

# away_while_compacted(MEMBER): stops MEMBER, waits until the leader lets
# it lag, then writes 40 MB through the leader, until the log in memory
# no longer holds what MEMBER lacks
sub away_while_compacted
{
	my ($member) = @_;

	$member->stop;
	$leader->poll_query_until('postgres',
		"SELECT last_contact < now() - interval '11 s' FROM raft.nodes WHERE node_name = '"
		  . $member->name . "'")
	  or die 'the leader still counts on ' . $member->name;
	foreach my $i (1 .. 40)
	{
		$leader->safe_psql('postgres',
			"INSERT INTO big SELECT $i, string_agg(md5(random()::text), '') FROM generate_series(1, 32768)");
	}
	$leader->poll_query_until('postgres', "SELECT first_index > $applied + 1 FROM raft.status")
	  or die 'the leader never compacted past ' . $member->name;
	return;
}

# Away for 12 s while 20 MB go through the log: the leader, which would
# compact past 16 MB, keeps the entries for the member.
$other->stop;
foreach my $i (1 .. 20)
{
	$leader->safe_psql('postgres',
		"INSERT INTO big SELECT -$i, string_agg(md5(random()::text), '') FROM generate_series(1, 32768)");
}
$leader->poll_query_until('postgres',
	"SELECT last_contact < now() - interval '12 s' FROM raft.nodes WHERE node_name = '"
	  . $other->name . "'")
  or die 'the leader still hears from ' . $other->name;
$other->start;
RaftCluster::wait_for_apply($leader, $other);
ok(!$other->log_contains('re-synchronises'),
	$other->name . ', away while 20 MB were written, catches up from the log');
is(RaftCluster::checksums($other, 'big'), RaftCluster::checksums($leader, 'big'),
	'and holds what the leader holds');
$leader->safe_psql('postgres', q{DELETE FROM big});
$applied = RaftCluster::wait_for_apply($leader, @nodes);

# Away while 40 MB go through the log: the leader compacts past the
# member, and sends it what it lacks from the log's archive, after a
# restart too.
away_while_compacted($other);
pass('the leader compacted its log in memory past the stopped member');
$leader->restart;
$leader = RaftCluster::wait_for_leader(grep { $_ != $other } @nodes);
my $log_offset = -s $leader->logfile;
$other->start;
RaftCluster::wait_for_apply($leader, @nodes);
ok($leader->log_contains(qr/pg_raft reads raft log entries from index \d+ on from the log's archive, for member \d+, which lags/,
		$log_offset),
	'the leader sends ' . $other->name . ' the entries it lacks from the log\'s archive');
ok(!$other->log_contains('re-synchronises'), '... which catches up from them, copying nothing');
is(RaftCluster::checksums($other, 'big', 'small'), RaftCluster::checksums($leader, 'big', 'small'),
	'and holds what the leader holds');
$leader->safe_psql('postgres', q{DELETE FROM big});
$applied = RaftCluster::wait_for_apply($leader, @nodes);

# A damaged archive: the leader reports it, and the member copies every
# table instead.  The second half of every archived segment of the
# leader's is overwritten with zeros while the member is away.
away_while_compacted($other);
my $first_index = $leader->safe_psql('postgres', 'SELECT first_index FROM raft.status');
my $log_dir = $leader->data_dir . '/pg_raft/log';
opendir(my $dh, $log_dir) or die "could not open $log_dir: $!";
my @segments = sort grep { /^[0-9A-F]{16}$/ } readdir($dh);
closedir($dh);
my $damaged = 0;
foreach my $k (0 .. $#segments - 1)
{
	# archived: the next segment starts at or before the log's first entry
	next unless hex($segments[ $k + 1 ]) <= $first_index;
	my $path = "$log_dir/$segments[$k]";
	my $size = -s $path;
	open(my $seg, '+<', $path) or die "could not open $path: $!";
	binmode $seg;
	seek($seg, int($size / 2), 0);
	print $seg "\0" x ($size - int($size / 2));
	close($seg);
	$damaged++;
}
ok($damaged > 0, "$damaged archived segments of the leader's damaged");
$log_offset = -s $leader->logfile;
my $other_offset = -s $other->logfile;
$other->start;
ok($leader->wait_for_log(qr/WARNING:  raft log file "pg_raft\/log\/[0-9A-F]+" holds no sound record of index \d+/,
		$log_offset),
	'the leader reports the damaged record it cannot send');
ok($other->wait_for_log(qr/pg_raft re-synchronised this node's data/, $other_offset),
	'... and ' . $other->name . ' copies every table instead');
RaftCluster::wait_for_apply($leader, @nodes);
is(RaftCluster::checksums($other, 'big', 'small'), RaftCluster::checksums($leader, 'big', 'small'),
	'... and holds what the leader holds');
is($leader->safe_psql('postgres', q{SELECT role FROM raft.status}), 'leader',
	'the leader leads on');
$leader->safe_psql('postgres', q{DELETE FROM big});
$applied = RaftCluster::wait_for_apply($leader, @nodes);
if ($leader == $away)
{
	# the rest stops $away: leadership goes back to the first leader
	my ($first) = grep { $_ != $away && $_ != $other } @nodes;
	$leader->safe_psql('postgres', "SELECT raft.transfer_leadership('" . $first->name . "')");
	$leader = RaftCluster::wait_for_leader(@nodes);
}

# With no archive kept, away while more than the leader keeps in memory
# goes through the log ...
foreach my $node (@nodes)
{
	$node->append_conf('postgresql.conf', 'raft.log_keep_size = 0');
	$node->reload;
}
my $files_before = $away->safe_psql('postgres',
	q{SELECT pg_relation_filenode('small') || ' ' || pg_relation_filenode('big')});
$away->stop;
$leader->poll_query_until('postgres',
	"SELECT last_contact < now() - interval '11 s' FROM raft.nodes WHERE node_name = '"
	  . $away->name . "'")
  or die 'the leader still counts on ' . $away->name;

# ... 40 MB of transactions, so that the log compacts past the member.
foreach my $i (1 .. 40)
{
	$leader->safe_psql('postgres',
		"INSERT INTO big SELECT $i, string_agg(md5(random()::text), '') FROM generate_series(1, 32768)");
}
$leader->safe_psql('postgres', q{UPDATE small SET note = 'while away' WHERE id <= 10});
$leader->poll_query_until('postgres', "SELECT first_index > $applied + 1 FROM raft.status")
  or die 'the leader never compacted past ' . $away->name;
pass('the leader compacted the log past the stopped member');

# A table on the leader alone (schema changes do not travel yet) makes
# the copy fail: the member keeps its data.
$leader->safe_psql('postgres', q{CREATE TABLE leader_only (id int PRIMARY KEY)});
$away->start;
ok($away->wait_for_log(qr/pg_raft re-synchronises this node's data from the leader: the log here begins after raft index \d+/),
	$away->name . ' finds that the entries it needs are gone');
ok($away->wait_for_log(qr/the leader has 1 tables that this member lacks: public.leader_only/),
	'a copy that cannot be whole fails');
is($away->safe_psql('postgres', q{SELECT count(*) FROM small WHERE note = 'before'}), '50',
	'and the member keeps its data meanwhile');
$leader->safe_psql('postgres', q{DROP TABLE leader_only});
ok($away->wait_for_log(qr/pg_raft re-synchronised this node's data/), 'the next try copies the data again');
ok($away->log_contains('Every table was replaced in one transaction'), 'every table in one transaction');
is($away->safe_psql('postgres',
		q{SELECT pg_relation_filenode('small') || ' ' || pg_relation_filenode('big')}),
	$files_before, 'its tables keep their files: nothing was emptied or dropped');
$leader->safe_psql('postgres', q{INSERT INTO small VALUES (100, 'after'); INSERT INTO other.ids DEFAULT VALUES});
RaftCluster::wait_for_apply($leader, @nodes);
my @tables = qw(small big other.u other.ids);
my $sums = RaftCluster::checksums($leader, @tables);
is(RaftCluster::checksums($_, @tables), $sums, $_->name . ' holds the same data as the leader')
  foreach ($away, $other);
is($away->safe_psql('postgres', 'SELECT resyncing FROM raft.status'), 'f', 'raft.status no longer says resyncing');

# An instance stopped in the middle of a copy starts over.  To show that
# the copy replaces what was there, the instance first gets a row and a
# table of its own while pg_raft is not loaded.
$other->stop;
my @pg_ctl = ('pg_ctl', '-D', $other->data_dir, '-l', $other->logfile, '-w');
system_or_bail(@pg_ctl, '-o', "-c shared_preload_libraries='' -c synchronous_standby_names=''", 'start');
$other->safe_psql('postgres', q{
	INSERT INTO small VALUES (999, 'local only');
	CREATE TABLE public.local_only (id int);
});
system_or_bail(@pg_ctl, 'stop');
my $pending = $other->data_dir . '/pg_raft/copy_pending';
open(my $fh, '>', $pending) or die "could not create $pending: $!";
close($fh);
$other_offset = -s $other->logfile;
$other->start;
ok($other->wait_for_log(qr/pg_raft copies the leader's data again: a copy of the leader's data did not finish here/,
		$other_offset),
	'an unfinished copy is taken up again');
ok($other->wait_for_log(qr/pg_raft re-synchronised this node's data/, $other_offset), 'and completed');
ok(!-e $pending, 'pg_raft/copy_pending is gone');
$leader->safe_psql('postgres', q{INSERT INTO small VALUES (101, 'at the end')});
RaftCluster::wait_for_apply($leader, @nodes);
$sums = RaftCluster::checksums($leader, @tables);
is(RaftCluster::checksums($_, @tables), $sums, $_->name . ' holds the same data at the end')
  foreach ($away, $other);
is($other->safe_psql('postgres', q{SELECT count(*) FROM small WHERE id = 999}), '0',
	'the row written only there is gone');
is($other->safe_psql('postgres', q{SELECT to_regclass('public.local_only') IS NULL}), 't',
	'and so is the table that only it had');

# A member whose copy is held up must not keep leadership: it could never
# take writes.  A prepared transaction (which survives restarts, and which
# the idle-session rule cannot end) holds a lock on a table the copy must
# drop, so the copy waits while leadership is moved to that member.
$leader = RaftCluster::wait_for_leader(@nodes);
my ($held) = grep { $_ != $leader } @nodes;
$held->stop;
$held->append_conf('postgresql.conf', 'max_prepared_transactions = 2');
@pg_ctl = ('pg_ctl', '-D', $held->data_dir, '-l', $held->logfile, '-w');
system_or_bail(@pg_ctl, '-o', "-c shared_preload_libraries='' -c synchronous_standby_names=''", 'start');
$held->safe_psql('postgres', q{
	BEGIN;
	LOCK TABLE small IN ACCESS SHARE MODE;
	PREPARE TRANSACTION 'hold_small';
});
system_or_bail(@pg_ctl, 'stop');
$pending = $held->data_dir . '/pg_raft/copy_pending';
open($fh, '>', $pending) or die "could not create $pending: $!";
close($fh);
$log_offset = -s $held->logfile;
$held->start;
$held->poll_query_until('postgres', q{SELECT resyncing FROM raft.status})
  or die $held->name . ' does not re-synchronise';
# the transfer returns the leader it sees, which may already be the one
# the held member handed over to
my $seen = $leader->safe_psql('postgres',
	"SELECT raft.transfer_leadership('" . $held->name . "')");
ok($held->wait_for_log(qr/pg_raft hands its leadership over: this node's data is being copied again/,
		$log_offset),
	"leadership moves to a member whose copy waits for a lock, which hands it over at once (then $seen led)");
my $new_leader = RaftCluster::wait_for_leader(@nodes);
isnt($new_leader->name, $held->name, 'another member leads and takes writes');
ok($held->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_locks WHERE relation = 'small'::regclass AND NOT granted}),
	'the copy waits for the prepared transaction\'s lock');
is($held->safe_psql('postgres', 'SELECT resyncing FROM raft.status'), 't',
	'and raft.status says it still re-synchronises');
$new_leader->safe_psql('postgres', q{INSERT INTO small VALUES (102, 'while held')});
# a member replicates nothing of its own: its ROLLBACK PREPARED must not
# wait for synchronous replication
$held->safe_psql('postgres', q{SET synchronous_commit = local; ROLLBACK PREPARED 'hold_small'});
ok($held->wait_for_log(qr/pg_raft re-synchronised this node's data/, $log_offset),
	'the copy completes once the lock is released');
RaftCluster::wait_for_apply($new_leader, @nodes);
$sums = RaftCluster::checksums($new_leader, @tables);
is(RaftCluster::checksums($_, @tables), $sums, $_->name . ' holds the same data as the new leader')
  foreach grep { $_ != $new_leader } @nodes;

# A leader that committed a transaction the log never got dies and comes
# back: it copies the rows that transaction touched from the new leader and
# applies the log from where it stopped, in one transaction (a repair of
# rows).  Here the repair waits for a transaction that holds a lock on
# the leader (its snapshot waits for running transactions), the member stops
# meanwhile, and while it is away the log compacts past it.  Back, it gets
# the leader's snapshot instead of those entries: a repair of rows cannot
# apply them, so it repairs every table instead (before, it failed the same
# way at every attempt, for ever).
$leader = $new_leader;
$applied = RaftCluster::wait_for_apply($leader, @nodes);
RaftCluster::commit_then_die($leader, q{INSERT INTO small VALUES (103, 'never in the log')});
my $former = $leader;
$leader = RaftCluster::wait_for_leader(grep { $_ != $former } @nodes);
my ($lock_in, $lock_out) = ('', '');
my $lock = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
	'<', \$lock_in, '>', \$lock_out, '2>', \$lock_out);
$lock_in .= "BEGIN; LOCK TABLE small IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n";
$lock->pump until $lock_out =~ /locked/;
$log_offset = -s $former->logfile;
RaftCluster::restart_after_kill9($former);
ok($former->wait_for_log(qr/pg_raft found 1 transactions that committed on this node while it led/,
		$log_offset),
	'a former leader back finds the transaction the log never got');
ok($leader->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'}),
	'... and its repair of rows waits for the transaction holding the lock on the leader');
$former->stop;
$lock_in .= "ROLLBACK;\n\\q\n";
$lock->finish;
$leader->poll_query_until('postgres',
	"SELECT last_contact < now() - interval '11 s' FROM raft.nodes WHERE node_name = '"
	  . $former->name . "'")
  or die 'the leader still counts on ' . $former->name;
foreach my $i (41 .. 80)
{
	$leader->safe_psql('postgres',
		"INSERT INTO big SELECT $i, string_agg(md5(random()::text), '') FROM generate_series(1, 32768)");
}
$leader->poll_query_until('postgres', "SELECT first_index > $applied + 1 FROM raft.status")
  or die 'the leader never compacted past ' . $former->name;
$log_offset = -s $former->logfile;
$former->start;
ok($former->wait_for_log(qr/pg_raft takes up the repair of \d+ tables/, $log_offset),
	'back once the log compacted past it, it takes its repair of rows up');
ok($former->wait_for_log(qr/pg_raft repairs every table instead of the rows it set out to: the raft log here begins after index \d+/,
		$log_offset),
	'... cannot apply the log it needs, and repairs every table instead');
ok($former->wait_for_log(qr/Every table was replaced in one transaction/, $log_offset),
	'... in one transaction');
$leader->safe_psql('postgres', q{INSERT INTO small VALUES (104, 'after the repair')});
RaftCluster::wait_for_apply($leader, @nodes);
$sums = RaftCluster::checksums($leader, @tables);
is(RaftCluster::checksums($_, @tables), $sums, $_->name . ' holds the same data as the leader after that repair')
  foreach grep { $_ != $leader } @nodes;
is($former->safe_psql('postgres', q{SELECT count(*) FROM small WHERE id = 103}), '0',
	'the row the log never got is gone from the former leader');

done_testing();
