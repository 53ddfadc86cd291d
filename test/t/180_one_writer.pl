# Copyright (c) pg_raft contributors
#
# 180_one_writer.pl: only one member writes, whatever happens.
#
# Promise 2 (one writer).  The fence is a lease: a leader takes writes
# only while a majority answered it within the election timeout, checked
# against the clock when the write begins and when it commits.  A leader
# cut off from the others, or whose raft worker stalls, refuses writes by
# itself, before any other member can be elected; with
# synchronous_commit = local, that is what keeps a write acknowledged on
# the old leader from being lost.  And nothing gets around the fence:
# two-phase commit, replication connections that run SQL, the
# large-object functions (through the fast-path protocol too), setval(),
# and partitioned tables with ON CONFLICT.  Rows that another tool
# replicates into the leader travel like any others.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use RaftProxy;
use Test::More;
use POSIX ();
use Time::HiRes qw(time usleep);

my @nodes = map { RaftCluster::new_node($_, "max_prepared_transactions = 5\n") } qw(n1 n2 n3);
my %proxy;
foreach my $node (@nodes)
{
	$proxy{ $node->name } = RaftProxy->new(target_port => $node->port, name => $node->name);
	$node->{raft_conninfo} = $proxy{ $node->name }->conninfo . ' dbname=postgres';
}
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
$leader->safe_psql('postgres', q{
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE SEQUENCE s;
CREATE TABLE parts (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (0) TO (100);
CREATE TABLE parts_high (id int NOT NULL, v text);
ALTER TABLE parts_high REPLICA IDENTITY NOTHING;
});

my $next_id = 1;

# Writes one row at a time on NODE, each acknowledged without waiting for
# the other members (synchronous_commit = local), until NODE refuses one.
# Returns the refusal and when the last write was acknowledged.
sub write_until_refused
{
	my ($node) = @_;
	my $deadline = time() + 30;
	my $last_ack = 0;
	while (time() < $deadline)
	{
		my $id = $next_id++;
		my ($ret, $out, $err) = $node->psql('postgres',
			"SET synchronous_commit = local; INSERT INTO t VALUES ($id, 'lease')");
		return ($err, $last_ack) if $ret != 0;
		$last_ack = time();
	}
	return ('never refused', $last_ack);
}

# Watches, in a process of its own, for one of NODES to lead a term later
# than TERM.  Returns a function that waits for the watcher and returns
# when it saw one (after it happened), or undef.
sub watch_for_new_leader
{
	my ($term, @nodes) = @_;
	my $file = "$PostgreSQL::Test::Utils::tmp_check/new_leader_seen.$$";
	unlink $file;
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		my $deadline = time() + 60;
		while (time() < $deadline)
		{
			foreach my $node (@nodes)
			{
				my $st = RaftCluster::status($node);
				next unless ($st->{role} // '') eq 'leader' && $st->{term} > $term;
				my $seen = time();
				open(my $fh, '>', $file) or POSIX::_exit(1);
				print $fh "$seen\n";
				close $fh;
				POSIX::_exit(0);
			}
			usleep(10_000);
		}
		POSIX::_exit(0);
	}
	return sub {
		waitpid($pid, 0);
		open(my $fh, '<', $file) or return undef;
		my $seen = <$fh>;
		close $fh;
		chomp $seen;
		return $seen;
	};
}

# The lease's check: NODE, a leader of TERM, stops by itself (the fault
# was caused by the caller); no write is acknowledged on it once another
# member leads.
sub check_lease
{
	my ($what, $node, $term, @others) = @_;
	my $seen = watch_for_new_leader($term, @others);
	my ($refusal, $last_ack) = write_until_refused($node);
	like($refusal,
		qr/cannot execute INSERT in a read-only transaction|cannot commit a transaction that wrote, on a node that takes no writes/,
		"$what: it refuses writes by itself");
	# a cut-off leader's lease and its word from the others (which hold
	# the log's data) run out about together: either may be the reason
	like($refusal,
		qr/lease ran out|not the raft leader|no leader is known|a majority of the voters must hold the log's data/,
		"$what: ... and says why")
	  or diag($refusal);
	my $new = RaftCluster::wait_for_leader(@others);
	isnt($new->name, $node->name, "$what: the others elect a leader");
	my $elected = $seen->() // 0;
	cmp_ok($last_ack, '<', $elected,
		"$what: no write was acknowledged on it once another member led");
	return;
}

# ---- the lease: a leader cut off from the others

my $term = RaftCluster::status($leader)->{term};
my @others = grep { $_ != $leader } @nodes;
$proxy{ $leader->name }->stall;
check_lease('a leader cut off from the others', $leader, $term, @others);
$proxy{ $leader->name }->restore;
$leader = RaftCluster::wait_for_leader(@nodes);

# ---- the lease: a leader whose raft worker stalls

$term = RaftCluster::status($leader)->{term};
@others = grep { $_ != $leader } @nodes;
my $pid = $leader->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
kill 'STOP', $pid;
check_lease('a leader whose raft worker is frozen', $leader, $term, @others);
kill 'CONT', $pid;
$leader = RaftCluster::wait_for_leader(@nodes);
RaftCluster::same_everywhere('after the stall', @nodes);

# ---- nothing gets around the fence

my $follower = (grep { $_ != $leader } @nodes)[0];

# two-phase commit: a transaction prepared while a member led cannot
# commit once it no longer does
$leader->safe_psql('postgres',
	"BEGIN; INSERT INTO t VALUES (100000, 'prepared'); PREPARE TRANSACTION 'p1'");
my $old_leader = $leader;
$leader->safe_psql('postgres',
	"SELECT raft.transfer_leadership('" . $follower->name . "')");
$leader = RaftCluster::wait_for_leader(@nodes);
is($leader->name, $follower->name, 'the leadership moved');
$follower = $old_leader;
my ($ret, $out, $err) = $follower->psql('postgres', "COMMIT PREPARED 'p1'");
like($err, qr/cannot execute COMMIT PREPARED in a read-only transaction/,
	'a follower refuses COMMIT PREPARED of a transaction prepared while it led');
like($err, qr/write on the leader, node "\Q@{[ $leader->name ]}\E"/,
	'... with a hint naming the leader');
($ret, $out, $err) = $follower->psql('postgres',
	"BEGIN; SELECT 1; PREPARE TRANSACTION 'p2'");
like($err, qr/cannot execute PREPARE TRANSACTION in a read-only transaction/,
	'a follower refuses PREPARE TRANSACTION');
($ret, $out, $err) = $follower->psql('postgres', "ROLLBACK PREPARED 'p1'");
is($ret, 0, 'a follower may roll a prepared transaction back: nothing it wrote becomes visible')
  or diag($err);
is($follower->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '0',
	'... and its locks are released');

# a replication connection that runs SQL is fenced like any session
my $repl = $follower->connstr('postgres') . ' replication=database';
IPC::Run::run([ 'psql', '-XAtq', '-d', $repl, '-c',
	"SET default_transaction_read_only = off; INSERT INTO t VALUES (200000, 'replication')" ],
	'>', \$out, '2>', \$err);
like($err, qr/cannot execute INSERT in a read-only transaction/,
	'a follower refuses a write on a replication connection');

# setval() on a follower
($ret, $out, $err) = $follower->psql('postgres', "SELECT setval('s', 1000)");
like($err, qr/read-only transaction/, 'a follower refuses setval()');

# large objects are not carried by the log: refused everywhere, through
# SQL and through libpq's fast-path functions alike
foreach my $node ($leader, $follower)
{
	($ret, $out, $err) = $node->psql('postgres', 'SELECT lo_creat(-1)');
	like($err, qr/pg_raft cannot replicate large objects/,
		'lo_creat() is refused on the ' . ($node == $leader ? 'leader' : 'follower'));
	IPC::Run::run([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
		"\\lo_import $0" ], '>', \$out, '2>', \$err);
	like($err, qr/pg_raft cannot replicate large objects/,
		'\lo_import (the fast-path protocol) is refused on the '
		  . ($node == $leader ? 'leader' : 'follower'));
}

# ON CONFLICT DO UPDATE on a partitioned table may update any partition:
# one without a replica identity could not be found on the other members
$leader->safe_psql('postgres',
	'ALTER TABLE parts ATTACH PARTITION parts_high FOR VALUES FROM (100) TO (200)');
($ret, $out, $err) = $leader->psql('postgres',
	"INSERT INTO parts VALUES (150, 'x') ON CONFLICT (id) DO UPDATE SET v = 'y'");
like($err, qr/cannot update table "parts_high" because it has no replica identity/,
	'INSERT ... ON CONFLICT DO UPDATE on a partitioned table checks every partition');

# rows that arrive on the leader under a replication origin of another
# tool are the leader's data: they travel (only the apply worker's own
# origin is left out)
$leader->safe_psql('postgres', q{
SELECT pg_replication_origin_create('other_tool');
SELECT pg_replication_origin_session_setup('other_tool');
INSERT INTO t VALUES (400000, 'from another origin');
});
RaftCluster::wait_for_apply($leader, @nodes);
foreach my $node (@nodes)
{
	is($node->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 400000'), '1',
		'a row written under another replication origin reaches ' . $node->name);
}

# a write whose statement began while the node led, and that commits
# after it no longer does, is refused at the commit
my ($in, $sout, $serr) = ('', '', '');
my $session = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $leader->connstr('postgres') ],
	'<', \$in, '>', \$sout, '2>', \$serr);
$in .= "SET synchronous_commit = local;\nBEGIN;\nINSERT INTO t VALUES (300000, 'late');\nSELECT 'inserted';\n";
$session->pump until $sout =~ /inserted/;
$pid = $leader->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
$term = RaftCluster::status($leader)->{term};
@others = grep { $_ != $leader } @nodes;
kill 'STOP', $pid;
my $new = RaftCluster::wait_for_leader(@others);
$in .= "COMMIT;\nSELECT 'committed';\n";
$session->pump until $serr =~ /ERROR/ || $sout =~ /committed/;
like($serr, qr/cannot commit a transaction that wrote, on a node that takes no writes/,
	'a transaction begun while the node led is refused at COMMIT once its lease ran out');
$in .= "\\q\n";
$session->finish;
kill 'CONT', $pid;
$leader = RaftCluster::wait_for_leader(@nodes);
is($leader->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 300000'), '0',
	'... and its row is nowhere');
RaftCluster::same_everywhere('at the end', @nodes);

$_->stop foreach values %proxy;
done_testing();
