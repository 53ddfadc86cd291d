# Copyright (c) pg_raft contributors
#
# 181_background_worker.pl: other background workers write only on the
# leader.
#
# - pg_cron (Debian's postgresql-15-cron) runs its launcher and its jobs
#   in background workers of its own (cron.use_background_workers).  Once
#   leadership moves away from the member where a job was scheduled, the
#   fence refuses the launcher's first write there (it marks unfinished
#   runs failed when it starts), with the usual hint: the launcher exits,
#   and the job writes nothing on that member.
# - A native subscription that n1 had before it formed the cluster: while
#   n1 leads, the rows its apply worker writes (under a replication origin
#   of their own) travel through the log to every member; once n1 no
#   longer leads, that apply worker's writes are refused at commit.  A new
#   subscription in raft.database is refused on the leader.
# Only pg_raft's own workers write past the fence.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my $publisher = PostgreSQL::Test::Cluster->new('publisher');
$publisher->init(allows_streaming => 'logical');
$publisher->start;
$publisher->safe_psql('postgres', q{
	CREATE TABLE src (id int PRIMARY KEY, note text);
	CREATE PUBLICATION p FOR TABLE src});

my $conf = q{
shared_preload_libraries = 'pg_raft, pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
cron.log_run = off
max_worker_processes = 24
};
my @nodes = map { RaftCluster::new_node($_, $conf) } qw(n1 n2 n3);
my $n1 = $nodes[0];
$n1->safe_psql('postgres', q{
	CREATE TABLE hits (id bigserial PRIMARY KEY, port int NOT NULL);
	CREATE TABLE src (id int PRIMARY KEY, note text)});
$n1->safe_psql('postgres',
	"CREATE SUBSCRIPTION s CONNECTION '" . $publisher->connstr . ' dbname=postgres'
	  . "' PUBLICATION p");
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
if ($leader != $n1)
{
	$leader->safe_psql('postgres', "SELECT raft.transfer_leadership('n1')");
	$leader = RaftCluster::wait_for_leader(@nodes);
}
is($leader->name, 'n1', 'n1 leads');

# ---- rows a subscription applies on the leader travel

$publisher->safe_psql('postgres', q{INSERT INTO src VALUES (1, 'while n1 leads')});
foreach my $node (@nodes)
{
	$node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM src')
	  or die $node->name . ' never got the subscribed row';
}
pass('a row the leader\'s subscription applied is on every member');

# ---- a pg_cron job scheduled on the leader; the extension travels

$n1->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
$n1->safe_psql('postgres', q{
	SELECT cron.schedule('hit', '* * * * *',
		$$INSERT INTO hits (port) VALUES (current_setting('port')::int)$$)});
RaftCluster::wait_for_apply($n1, @nodes);
is($_->safe_psql('postgres', q{SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'}),
	'1', $_->name . ' has pg_cron')
  foreach @nodes;

# ---- leadership moves away from n1

my $offset = -s $n1->logfile;
$n1->safe_psql('postgres', "SELECT raft.transfer_leadership('n2')");
my $new_leader = RaftCluster::wait_for_leader(@nodes);
is($new_leader->name, 'n2', 'n2 leads');
RaftCluster::wait_for_apply($new_leader, @nodes);
# a run of the job that ended before the move wrote while n1 led
my $written_before = $new_leader->safe_psql('postgres',
	'SELECT count(*) FROM hits WHERE port = ' . $n1->port);

my ($ret, $out, $err) = $new_leader->psql('postgres',
	"CREATE SUBSCRIPTION s2 CONNECTION '" . $publisher->connstr . ' dbname=postgres'
	  . "' PUBLICATION p WITH (create_slot = false, enabled = false)");
like($err, qr/pg_raft cannot replicate a subscription/,
	'a new subscription is refused on the leader');

$publisher->safe_psql('postgres', q{INSERT INTO src VALUES (2, 'after n1 led')});
$n1->wait_for_log(
	qr/ERROR:  cannot commit a transaction that wrote, on a node that takes no writes/,
	$offset);
pass('n1\'s subscription apply worker is refused at commit once n1 no longer leads');

# the fence ended n1's sessions and workers when its role changed;
# pg_cron's launcher starts again, and its first write is refused
$n1->wait_for_log(
	qr/ERROR:  cannot execute UPDATE in a read-only transaction\n.*HINT:  This node is not the raft leader.*\n.*update cron\.job_run_details.*\n.*background worker "pg_cron launcher" \(PID \d+\) exited with exit code 1/,
	$offset);
pass('pg_cron\'s launcher, a background worker, is refused its write on a follower');

$new_leader->safe_psql('postgres', 'INSERT INTO hits (port) VALUES (0)');
RaftCluster::wait_for_apply($new_leader, @nodes);
foreach my $node (@nodes)
{
	is($node->safe_psql('postgres',
			'SELECT count(*) FROM hits WHERE port = ' . $n1->port
			  . ' UNION ALL SELECT count(*) FROM src WHERE id = 2'),
		"$written_before\n0",
		$node->name . ' holds nothing that n1\'s other workers wrote after it led');
}

done_testing();
