# Copyright (c) pg_raft contributors
#
# Large transactions stream through the log while they run (changes.h,
# capture.c), and the followers keep them aside in files until they commit
# (apply.c, "Streamed transactions").  logical_decoding_work_mem is at its
# least (64 kB), so that every transaction here beyond a few hundred rows
# streams.
#
# Checked: a million-row transaction committed, and one rolled back, with
# nothing of either visible on a follower before the COMMIT, and the
# memory of every server process measured meanwhile (bounded, and smaller
# than the transaction's stream); savepoints rolled
# back in the middle; two large transactions that commit in the opposite
# order to the one they began in; a follower killed in the middle of a
# stream; the leader killed while a stream runs, and just after a COMMIT
# is acknowledged; a member joining while a stream runs.  Every member
# ends with the same rows.

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

# restart_after_crash: a follower's crash is made by killing a process
my $conf = "logical_decoding_work_mem = '64kB'\nrestart_after_crash = on\n";
my @nodes = map { RaftCluster::new_node($_, $conf) } qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres',
	'CREATE TABLE big (id int PRIMARY KEY, pad text); CREATE TABLE small (id int PRIMARY KEY)');
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;

# the files a node keeps streamed transactions in
sub stream_files
{
	my ($node) = @_;
	opendir(my $dir, $node->data_dir . '/pg_raft') or return ();
	my @files = grep { /^stream_\d+$/ } readdir($dir);
	closedir($dir);
	return @files;
}

# the largest of a node's stream files, in bytes
sub largest_stream_file
{
	my ($node) = @_;
	my $largest = 0;
	foreach (stream_files($node))
	{
		my $size = -s $node->data_dir . "/pg_raft/$_";
		$largest = $size if defined $size && $size > $largest;
	}
	return $largest;
}

# the anonymous resident memory (kB) of each of a node's server processes
sub process_memory
{
	my ($node) = @_;
	my %kb;
	foreach my $pid (split ' ', `pgrep -P $node->{_pid}`)
	{
		my $status = eval { slurp_file("/proc/$pid/status") } // next;
		my $title = eval { slurp_file("/proc/$pid/cmdline") } // next;
		$title =~ s/\0/ /g;
		$title =~ s/\s+$//;
		$kb{"$pid $title"} = $1 if $status =~ /^RssAnon:\s+(\d+) kB/m;
	}
	return %kb;
}

sub psql_start
{
	my ($node, $sql, $out, $err) = @_;
	return IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', $out, '2>', $err);
}

# ---------------------------------------------------------------------
# A million rows committed: streamed while the INSERT runs, invisible on
# the followers until the COMMIT, in bounded memory everywhere.
# ---------------------------------------------------------------------
my ($out, $err) = ('', '');
my %peak;
my $peak_stream = 0;

# the peak anonymous memory of every server process of every member, and
# the largest stream file a follower kept
sub sample_memory
{
	foreach my $node (@nodes)
	{
		my $stream = largest_stream_file($node);
		$peak_stream = $stream if $stream > $peak_stream;
		my %kb = process_memory($node);
		foreach (keys %kb)
		{
			my $key = $node->name . ' ' . ($_ =~ s/^\d+ //r);
			$peak{$key} = $kb{$_} if !defined $peak{$key} || $kb{$_} > $peak{$key};
		}
	}
}

# runs SQL in a session, sampling memory until it printed MARK
sub run_sampling
{
	my ($session, $in, $sessout, $sql, $mark) = @_;
	$$in .= "$sql\nSELECT '$mark';\n";
	while ($$sessout !~ /$mark/)
	{
		sample_memory();
		usleep(100_000);
		$session->pump_nb;
	}
}

my ($bin, $bout) = ('', '');
my $big = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
	'<', \$bin, '>', \$bout, '2>', \$err);
run_sampling($big, \$bin, \$bout,
	q{BEGIN; INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 1000000) g;},
	'inserted');
# the transaction ran, and is not committed: it streamed
foreach my $node (@followers)
{
	ok(RaftCluster::wait_until(sub { largest_stream_file($node) > 16 * 1024 * 1024 }),
		'a million rows not committed yet: ' . $node->name . ' keeps megabytes of them aside');
	ok(RaftCluster::wait_until(sub {
				$node->safe_psql('postgres',
					q{SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE backend_type = 'pg_raft apply worker'}
				) eq 't' }),
		'... and its apply worker applies them as they come, in a transaction of its own');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM big'), '0',
		'... none of which is visible there');
}
run_sampling($big, \$bin, \$bout, 'COMMIT;', 'committed');
$bin .= "\\q\n";
$big->finish;
is($big->result(0), 0, 'a million rows committed in one transaction through pg_raft');
RaftCluster::wait_for_apply($leader, @followers);
foreach my $node (@followers)
{
	is($node->safe_psql('postgres', 'SELECT count(*) FROM big'), '1000000',
		'a million rows on ' . $node->name);
	is(RaftCluster::checksums($node, 'big'), RaftCluster::checksums($leader, 'big'),
		'the same rows as the leader on ' . $node->name);
	is(scalar(stream_files($node)), 0, '... and no stream file is left there');
}
# The raft worker's in-memory log is an arena of 64 MB (LOG_CAPACITY_BYTES
# in worker.c), allocated once and resident once that much went through
# it: the raft workers may take that and 32 MB more, every other process
# 64 MB.  The stream is larger than either, so a process that held the
# transaction would fail the check.
note "peak anonymous memory of each server process, kB:";
note "  $_: $peak{$_}" foreach sort keys %peak;
note "largest stream file a follower kept: $peak_stream bytes";
cmp_ok($peak_stream, '>', 96 * 1024 * 1024,
	'the transaction streamed more than 96 MB into a follower\'s file');
my @raft_workers = grep { /pg_raft worker/ } keys %peak;
my @others = grep { !/pg_raft worker/ } keys %peak;
my ($largest_worker) = sort { $peak{$b} <=> $peak{$a} } @raft_workers;
my ($largest_other) = sort { $peak{$b} <=> $peak{$a} } @others;
cmp_ok($peak{$largest_worker}, '<', 96 * 1024,
	"no raft worker grew past its 64 MB log and 32 MB meanwhile (largest: $largest_worker, $peak{$largest_worker} kB)");
cmp_ok($peak{$largest_other}, '<', 64 * 1024,
	"no other server process grew past 64 MB meanwhile (largest: $largest_other, $peak{$largest_other} kB)");

# ---------------------------------------------------------------------
# A million rows rolled back: kept aside, then dropped.
# ---------------------------------------------------------------------
my $rollback = psql_start($leader,
	q{BEGIN; INSERT INTO big SELECT g, 'r' FROM generate_series(1000001, 2000000) g; SELECT pg_sleep(1); ROLLBACK},
	\$out, \$err);
my $kept = 0;
while ($rollback->pumpable)
{
	$kept ||= largest_stream_file($followers[0]) > 1024 * 1024;
	usleep(100_000);
	$rollback->pump_nb;
}
$rollback->finish;
ok($kept, 'a million rows rolled back: a follower kept them while they streamed');
$leader->safe_psql('postgres', 'INSERT INTO small VALUES (1)');
RaftCluster::wait_for_apply($leader, @followers);
foreach my $node (@followers)
{
	is($node->safe_psql('postgres', 'SELECT count(*) FROM big'), '1000000',
		'... none of them on ' . $node->name);
	ok(RaftCluster::wait_until(sub { scalar(stream_files($node)) == 0 }),
		'... and its stream file is gone there');
}

# ---------------------------------------------------------------------
# Savepoints rolled back in the middle, nested, released.
# ---------------------------------------------------------------------
$leader->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO small SELECT g FROM generate_series(100, 5099) g;
	SAVEPOINT a;
	INSERT INTO small SELECT g FROM generate_series(10000, 14999) g;
	SAVEPOINT b;
	INSERT INTO small SELECT g FROM generate_series(20000, 24999) g;
	ROLLBACK TO a;
	INSERT INTO small SELECT g FROM generate_series(30000, 34999) g;
	SAVEPOINT c;
	UPDATE small SET id = id + 100000 WHERE id BETWEEN 30000 AND 30999;
	RELEASE c;
	SAVEPOINT d;
	DELETE FROM small WHERE id BETWEEN 100 AND 1099;
	SAVEPOINT e;
	INSERT INTO small SELECT g FROM generate_series(40000, 44999) g;
	ROLLBACK TO d;
	INSERT INTO small SELECT g FROM generate_series(50000, 50999) g;
	COMMIT;
});
RaftCluster::wait_for_apply($leader, @followers);
my $expected = 1 + 5000 + 5000 + 1000;
is($leader->safe_psql('postgres', 'SELECT count(*) FROM small'), $expected,
	'savepoints: the leader holds what the transaction committed');
foreach my $node (@followers)
{
	is(RaftCluster::checksums($node, 'small'), RaftCluster::checksums($leader, 'small'),
		'savepoints rolled back in the middle: the same rows on ' . $node->name);
}

# ---------------------------------------------------------------------
# Two large transactions commit in the opposite order to the one they
# began in, and a small one commits between their blocks.
# ---------------------------------------------------------------------
my ($in1, $out1, $in2, $out2) = ('', '', '', '');
my @session = map {
	IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
		'<', \($_ == 1 ? $in1 : $in2), '>', \($_ == 1 ? $out1 : $out2), '2>', \$err)
} (1, 2);
sub run_in
{
	my ($s, $in, $out, $sql) = @_;
	$$out = '';
	$$in .= "$sql\nSELECT 'done';\n";
	$s->pump until $$out =~ /done/;
}
run_in($session[0], \$in1, \$out1, 'BEGIN; INSERT INTO big SELECT g, \'one\' FROM generate_series(3000001, 3100000) g;');
run_in($session[1], \$in2, \$out2, 'BEGIN; INSERT INTO big SELECT g, \'two\' FROM generate_series(4000001, 4100000) g;');
$leader->safe_psql('postgres', 'INSERT INTO small VALUES (4)');
run_in($session[0], \$in1, \$out1, 'INSERT INTO big SELECT g, \'one\' FROM generate_series(3100001, 3200000) g;');
run_in($session[1], \$in2, \$out2, 'UPDATE big SET pad = \'two, updated\' WHERE id BETWEEN 4000001 AND 4050000; COMMIT;');
run_in($session[0], \$in1, \$out1, 'COMMIT;');
$in1 .= "\\q\n";
$in2 .= "\\q\n";
$_->finish foreach @session;
RaftCluster::wait_for_apply($leader, @followers);
foreach my $node (@followers)
{
	is($node->safe_psql('postgres', q{SELECT count(*) FILTER (WHERE pad = 'one') || ' ' || count(*) FILTER (WHERE pad LIKE 'two%') FROM big}),
		'200000 100000', 'interleaved transactions committed in reverse order, both whole on ' . $node->name);
	is(RaftCluster::checksums($node, 'big'), RaftCluster::checksums($leader, 'big'),
		'... the same rows as the leader');
}

# ---------------------------------------------------------------------
# A follower that crashes in the middle of a stream takes it up again
# from its file.  kill -9 of its apply worker makes the postmaster restart
# every process of the instance, as after a crash; the instance is back
# at once, so the leader keeps the entries it needs meanwhile.  The
# transaction stays open until then, so that it cannot have committed
# (and its file gone) first, and the leader decodes in its walsender
# throughout: a hand-over to its decoding worker would stream the
# transaction again from its start (147 kills members across those).
# ---------------------------------------------------------------------
foreach my $node (@nodes)
{
	$node->safe_psql('postgres', q{ALTER SYSTEM SET raft.decoding = walsender});
	$node->reload;
}
$leader->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_raft decoding worker'})
  or die 'the leader\'s decoding worker runs on';
my $victim = $followers[0];
my ($vin, $vout) = ('', '');
my $insert = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
	'<', \$vin, '>', \$vout, '2>', \$err);
$vin .= "BEGIN; INSERT INTO big SELECT g, md5(g::text) FROM generate_series(5000001, 5300000) g;\n";
# once its state is on disk, the stream's entries count as applied there
ok(RaftCluster::wait_until(sub {
			$insert->pump_nb;
			largest_stream_file($victim) > 1024 * 1024 &&
			  grep { /^stream_\d+\.state$/ } (slurp_dir($victim->data_dir . '/pg_raft')) }),
	'a follower keeps a streamed transaction, durably');
my $apply_pid = $victim->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_raft apply worker'});
kill 'KILL', $apply_pid;
$vin .= "COMMIT;\n\\q\n";
$insert->finish;
is($insert->result(0), 0, '... the transaction commits while that follower restarts');
RaftCluster::wait_for_apply($leader, @followers);
ok($victim->log_contains('terminating any other active server processes'),
	'the follower restarted every process');
foreach my $node (@followers)
{
	is(RaftCluster::checksums($node, 'big'), RaftCluster::checksums($leader, 'big'),
		'after a follower restarted in the middle of a stream: the same rows on ' . $node->name);
}
is(scalar(stream_files($victim)), 0, '... and no stream file is left on the restarted follower');
ok($victim->log_contains('takes up streamed transaction \d+ from its file'),
	'... which took the stream up from its file');
ok(!$victim->log_contains('did not keep its first changes|re-synchronises this node'),
	'... without copying the data again');
foreach my $node (@nodes)
{
	$node->safe_psql('postgres', q{ALTER SYSTEM RESET raft.decoding});
	$node->reload;
}

# ---------------------------------------------------------------------
# kill -9 of the leader while a large transaction streams: the followers
# drop what they kept, and nothing of it is anywhere.
# ---------------------------------------------------------------------
my $rows_before = $leader->safe_psql('postgres', 'SELECT count(*) FROM big');
$insert = psql_start($leader,
	q{INSERT INTO big SELECT g, 'lost' FROM generate_series(6000001, 7000000) g},
	\$out, \$err);
ok(RaftCluster::wait_until(sub { largest_stream_file($followers[0]) > 2 * 1024 * 1024 }),
	'the leader streams a large transaction');
my $old_leader = $leader;
$old_leader->kill9;
$insert->finish;
isnt($insert->result(0), 0, '... and its INSERT fails when the leader is killed');
$leader = RaftCluster::wait_for_leader(@followers);
foreach my $node (@followers)
{
	ok(RaftCluster::wait_until(sub { scalar(stream_files($node)) == 0 }),
		'the new term drops the lost transaction on ' . $node->name);
	ok($node->log_contains('drops streamed transaction \d+ of term \d+: its leader lost the leadership'),
		'... and says so in its log');
}
RaftCluster::restart_after_kill9($old_leader);
$leader->safe_psql('postgres', 'INSERT INTO small VALUES (2)');
RaftCluster::wait_for_apply($leader, @nodes);
foreach my $node (@nodes)
{
	is($node->safe_psql('postgres', q{SELECT count(*) FROM big WHERE pad = 'lost'}), '0',
		'none of the lost transaction\'s rows on ' . $node->name);
	is($node->safe_psql('postgres', 'SELECT count(*) FROM big'), $rows_before,
		'... and every row before it, on ' . $node->name);
}

# ---------------------------------------------------------------------
# kill -9 of the leader just after a streamed transaction's COMMIT is
# acknowledged: the new leader and every member hold it.
# ---------------------------------------------------------------------
@followers = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres',
	q{INSERT INTO big SELECT g, 'acknowledged' FROM generate_series(8000001, 8300000) g});
$old_leader = $leader;
$old_leader->kill9;
$leader = RaftCluster::wait_for_leader(@followers);
is($leader->safe_psql('postgres', q{SELECT count(*) FROM big WHERE pad = 'acknowledged'}), '300000',
	'the leader killed just after the COMMIT returned: the new leader holds every row');
RaftCluster::restart_after_kill9($old_leader);
$leader->safe_psql('postgres', 'INSERT INTO small VALUES (3)');
RaftCluster::wait_for_apply($leader, @nodes);
foreach my $node (grep { $_ != $leader } @nodes)
{
	is(RaftCluster::checksums($node, 'big', 'small'), RaftCluster::checksums($leader, 'big', 'small'),
		'... and after it restarted, the same rows on ' . $node->name);
	is(scalar(stream_files($node)), 0, '... with no stream file left');
}

# ---------------------------------------------------------------------
# A member joins while a large transaction streams.  Its copy's snapshot
# (a logical slot's, join.c) waits for the transaction to end, so the copy
# either holds all of it or none: the member ends with every row, without
# copying again.
# ---------------------------------------------------------------------
my $n4 = RaftCluster::new_node('n4', $conf);
my ($open_in, $open_out) = ('', '');
my $open = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
	'<', \$open_in, '>', \$open_out, '2>', \$err);
run_in($open, \$open_in, \$open_out,
	q{BEGIN; INSERT INTO big SELECT g, 'joined' FROM generate_series(9000001, 9200000) g;});
@followers = grep { $_ != $leader } @nodes;
ok(RaftCluster::wait_until(sub { largest_stream_file($followers[0]) > 1024 * 1024 }),
	'a large transaction streams, still open');
my ($join_out, $join_err) = ('', '');
my $join = psql_start($n4,
	"SELECT raft.join_cluster('n4', '" . RaftCluster::member_conninfo($n4) . "', '"
	  . RaftCluster::member_conninfo($leader) . "')",
	\$join_out, \$join_err);
ok(RaftCluster::wait_until(sub {
			$leader->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
  WHERE query LIKE 'CREATE_REPLICATION_SLOT pg_raft_copy%' AND wait_event = 'transactionid'}) eq '1' }),
	'a member joining meanwhile: its copy waits for the open transaction');
# A new decoding process sends the open transaction again from its first
# block, now after the log index the copy starts from (a hand-over between
# walsender and decoding worker does the same): the new member must not
# apply it while it runs, since its copy will hold it.
my $decoding_restarts = () = slurp_file($leader->logfile) =~ /starting logical decoding for slot "pg_raft"/g;
$leader->safe_psql('postgres', q{SELECT pg_terminate_backend(active_pid)
  FROM pg_replication_slots WHERE slot_name = 'pg_raft'});
ok(RaftCluster::wait_until(sub {
			my $n = () = slurp_file($leader->logfile) =~ /starting logical decoding for slot "pg_raft"/g;
			$n > $decoding_restarts }),
	'... while the leader decodes the transaction again from its start');
run_in($open, \$open_in, \$open_out,
	q{INSERT INTO big SELECT g, 'joined' FROM generate_series(9200001, 9300000) g; COMMIT;});
$open_in .= "\\q\n";
$open->finish;
$join->finish;
is($join->result(0), 0, '... and the join completes once it commits')
  or diag($join_err);
push @nodes, $n4;
$leader->safe_psql('postgres', 'INSERT INTO small VALUES (5)');
RaftCluster::wait_for_apply($leader, @nodes);
is($n4->safe_psql('postgres', q{SELECT count(*) FROM big WHERE pad = 'joined'}), '300000',
	'the new member holds every row of the transaction');
foreach my $node (grep { $_ != $leader } @nodes)
{
	is(RaftCluster::checksums($node, 'big', 'small'), RaftCluster::checksums($leader, 'big', 'small'),
		'... and the same rows as the leader on ' . $node->name);
}
ok(!$n4->log_contains('did not keep its first changes|re-synchronises this node'),
	'... without copying the data again');

done_testing();
