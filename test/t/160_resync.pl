# Copyright (c) pg_raft contributors
#
# 160_resync.pl: a member whose data no longer follows from the log copies
# it again by itself.
#
# A follower that was stopped longer than the leader's compaction grace
# (10 s) while the log was compacted past it gets the log's base instead
# of the entries its data needs: its apply worker empties the database and
# copies the leader's, then goes on from the copy's index.  The same
# happens to an instance that stopped in the middle of a copy (the file
# pg_raft/copy_pending is left behind).  Writes go on meanwhile, and in the
# end every member holds the same data.

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

# Away longer than the grace ...
$away->stop;
$leader->poll_query_until('postgres',
	"SELECT last_contact < now() - interval '11 s' FROM raft.nodes WHERE node_name = '"
	  . $away->name . "'")
  or die 'the leader still counts on ' . $away->name;

# ... while 24 MB of transactions go through the log, which compacts.
foreach my $i (1 .. 24)
{
	$leader->safe_psql('postgres',
		"INSERT INTO big SELECT $i, string_agg(md5(random()::text), '') FROM generate_series(1, 32768)");
}
$leader->safe_psql('postgres', q{UPDATE small SET note = 'while away' WHERE id <= 10});
$leader->poll_query_until('postgres', "SELECT first_index > $applied + 1 FROM raft.status")
  or die 'the leader never compacted past ' . $away->name;
pass('the leader compacted the log past the stopped member');

$away->start;
ok($away->wait_for_log(qr/pg_raft re-synchronises this node's data from the leader: the log here begins after raft index \d+/),
	$away->name . ' finds that the entries it needs are gone');
ok($away->wait_for_log(qr/pg_raft re-synchronised this node's data/), 'and copies the data again');
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
$other->start;
ok($other->wait_for_log(qr/pg_raft re-synchronises this node's data from the leader: a copy of the leader's data did not finish here/),
	'an unfinished copy is taken up again');
ok($other->wait_for_log(qr/pg_raft re-synchronised this node's data/), 'and completed');
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

done_testing();
