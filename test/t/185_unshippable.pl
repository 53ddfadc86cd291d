# Copyright (c) pg_raft contributors
#
# 185_unshippable.pl: nothing the leader cannot ship is skipped, and a
# leader that cannot ship hands its leadership over.
#
# - The output plugin stops capture with an error at a delete that does
#   not say which row it removes (a table without a replica identity).  It
#   used to skip such a delete with a WARNING in the walsender's log, and
#   the other members kept the row.  Members refuse such deletes before
#   they run, so this part uses an instance outside any cluster.
# - A leader whose capture fails again and again (here its own server
#   refuses the replication connection) hands leadership to a member that
#   can capture.  It used to keep leading, and every commit waited for
#   ever.  The write that waited on it is not acknowledged, and the former
#   leader repairs it away once it follows.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

# ---- the output plugin refuses what it cannot encode

my $solo = RaftCluster::new_node('solo');
$solo->safe_psql('postgres', q{
	CREATE TABLE nokey (a int, b text);
	SELECT pg_create_logical_replication_slot('unshippable', 'pg_raft');
	INSERT INTO nokey VALUES (1, 'one');
	DELETE FROM nokey;
});
my ($out, $err) = ('', '');
my $recv = IPC::Run::run(
	[
		'pg_recvlogical', '-d', $solo->connstr('postgres'), '-S', 'unshippable',
		'--start', '--no-loop', '-f', '-'
	],
	'>', \$out, '2>', \$err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
ok(!$recv, 'streaming the delete through a walsender fails');
like($err, qr/pg_raft cannot replicate a delete from table "nokey" without a replica identity/,
	'the walsender names the table and the reason');
like($solo->safe_psql('postgres', q{
	SELECT raft.decode_changes(string_agg(data, '' ORDER BY n))
	  FROM pg_logical_slot_peek_binary_changes('unshippable', NULL, NULL)
		   WITH ORDINALITY AS c(lsn, xid, data, n)}),
	qr/DELETE public\.nokey \(row not known\)/,
	'read with SQL, the delete says that its row is not known');
$solo->stop;

# ---- a leader whose capture keeps failing hands over

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
$nodes[0]->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY)');
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
$leader->safe_psql('postgres', 'INSERT INTO t VALUES (1)');

# the leader's server refuses its own capture's replication connection,
# which goes through its Unix socket; the test reaches it over TCP
my $tcp = RaftCluster::conninfo($leader);
my $hba = $leader->data_dir . '/pg_hba.conf';
my $hba_before = PostgreSQL::Test::Utils::slurp_file($hba);
PostgreSQL::Test::Utils::append_to_file("$hba.new", "local all all reject\n$hba_before");
rename("$hba.new", $hba) or die "rename: $!";
$leader->reload;
$leader->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE backend_type = 'walsender' AND application_name = 'pg_raft'},
	connstr => $tcp);

# a write now waits for the log, which it never reaches on this leader
my ($wout, $werr) = ('', '');
my $writer = IPC::Run::start(
	[ 'psql', '-X', '-d', $tcp, '-c', 'INSERT INTO t VALUES (2)' ],
	'>', \$wout, '2>', \$werr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));

my $new_leader = RaftCluster::wait_for_leader(grep { $_ != $leader } @nodes);
ok($leader->log_contains('pg_raft hands its leadership over: this node cannot capture its changes'),
	'the leader whose capture keeps failing hands its leadership over, and says why');
$writer->finish;
unlike($wout, qr/INSERT 0 1/, 'the write that waited on the former leader is not acknowledged');

# healed, the former leader repairs the write that never reached the log
open(my $fh, '>', $hba) or die $!;
print $fh $hba_before;
close($fh);
$leader->reload;
$new_leader->safe_psql('postgres', 'INSERT INTO t VALUES (3)');
RaftCluster::wait_for_apply($new_leader, @nodes);
$leader->poll_query_until('postgres',
	q{SELECT diverged_transactions = 1 AND NOT resyncing FROM raft.status})
  or die 'the former leader did not settle its slot';
RaftCluster::wait_for_apply($new_leader, @nodes);
foreach my $node (@nodes)
{
	is($node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM t'),
		'1,3', $node->name . ' holds the acknowledged rows, and only those');
}

done_testing();
