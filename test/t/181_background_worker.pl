# Copyright (c) pg_raft contributors
#
# 181_background_worker.pl: other background workers write only on the
# leader.
#
# - pg_cron (Debian's postgresql-15-cron) runs its launcher and its jobs
#   in background workers of its own (cron.use_background_workers).  Once
#   leadership moves away from the member where a job was scheduled, the
#   fence refuses the launcher's next write there (at the turn of a minute,
#   or marking unfinished runs failed when it starts again), with the
#   usual hint: the launcher exits, and the job writes nothing on that
#   member.
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
# PostgreSQL's table sync drops its slot on the publisher before it
# commits its last state: were that commit refused (the cluster's first
# leader takes writes a few milliseconds after it is created), the sync
# could never finish.  docs/operations.md tells operators the same.
$n1->poll_query_until('postgres',
	q{SELECT bool_and(srsubstate = 'r') FROM pg_subscription_rel})
  or die 'the subscription never finished its initial sync';
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

# pg_cron's launcher, started before n1 stopped leading, is refused at
# commit once it writes at the turn of a minute; restarted, it is refused
# its first write (marking unfinished runs failed) at once.  Either way it
# exits.  The log is read per process: other processes' lines, such as the
# subscription's apply worker failing every half second, may come between
# a worker's error and the postmaster's note of its exit.
ok(wait_for_refused_launcher($n1, $offset),
	'pg_cron\'s launcher, a background worker, is refused its write on a follower');

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

# Wait until the postmaster of $node logs that a pg_cron launcher exited
# after that same process was refused a write as a follower (the fence's
# hint is logged only with a refusal).
sub wait_for_refused_launcher
{
	my ($node, $from) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my $log = slurp_file($node->logfile, $from);
		my %refused;
		$refused{$1} = 1
		  while $log =~ /\[(\d+)\] HINT:  This node is not the raft leader/g;
		while ($log =~ /background worker "pg_cron launcher" \(PID (\d+)\) exited with exit code 1/g)
		{
			return 1 if $refused{$1};
		}
		sleep 1;
	}
	return 0;
}
