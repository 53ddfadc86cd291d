# Copyright (c) pg_raft contributors
#
# 100_fence.pl: only the leader accepts writes, and clients find it.
#
# Promise 2 (one writer): a follower refuses every kind of write, with a
# hint naming the leader; sessions on followers are read-only by default,
# so libpq's target_session_attrs=read-write reaches the leader, before
# and after a failover; a session that began before its node gained or
# lost leadership is ended at its next statement, with a message that says
# why.

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
# the joiners copy the table and the sequence from the first node
$nodes[0]->safe_psql('postgres',
	'CREATE TABLE t (id int PRIMARY KEY); CREATE SEQUENCE s; CREATE ROLE app LOGIN');
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my $follower = (grep { $_ != $leader } @nodes)[0];

is($leader->safe_psql('postgres', 'SHOW default_transaction_read_only'), 'off',
	'sessions on the leader are read-write');
is($follower->safe_psql('postgres', 'SHOW default_transaction_read_only'), 'on',
	'sessions on a follower are read-only by default');
$leader->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
pass('the leader accepts an INSERT');

my $hint = qr/HINT:  This node is not the raft leader; write on the leader, node "${\ $leader->name}": host=127\.0\.0\.1 port=${\ $leader->port}/;
foreach my $write (
	'INSERT INTO t VALUES (2)',
	'UPDATE t SET id = 3',
	'DELETE FROM t',
	'TRUNCATE t',
	'CREATE TABLE u (id int)',
	q{SELECT nextval('s')},
	'BEGIN; SET TRANSACTION READ WRITE; INSERT INTO t VALUES (4); COMMIT',
	'SET default_transaction_read_only = off; INSERT INTO t VALUES (5)')
{
	my ($ret, $out, $err) = $follower->psql('postgres', $write);
	like($err, qr/ERROR:  cannot execute .* in a read-only transaction/,
		"the follower refuses: $write");
	like($err, $hint, '... with a hint naming the leader');
}
my ($ret, $out, $err) = $follower->psql('postgres', 'COPY t FROM STDIN', stdin => "9\n\\.\n");
like($err, qr/cannot execute COPY FROM in a read-only transaction/, 'the follower refuses COPY FROM');
RaftCluster::wait_for_apply($leader, $follower);
is($follower->safe_psql('postgres', 'SELECT string_agg(id::text, \',\') FROM t'), '1',
	'its table holds only the row the leader wrote, replicated');

# libpq finds the leader among all members, and a follower for reading.
sub multi_host
{
	my ($attrs) = @_;
	return 'host=' . join(',', ('127.0.0.1') x @nodes)
	  . ' port=' . join(',', map { $_->port } @nodes)
	  . " dbname=postgres target_session_attrs=$attrs";
}
sub connect_name
{
	my ($conninfo) = @_;
	my ($stdout, $stderr);
	IPC::Run::run([ 'psql', '-XAtq', '-d', $conninfo, '-c',
			'SELECT node_name FROM raft.status' ], '>', \$stdout, '2>', \$stderr);
	chomp $stdout;
	return $stdout;
}
is(connect_name(multi_host('read-write')), $leader->name,
	'target_session_attrs=read-write reaches the leader');
isnt(connect_name(multi_host('read-only')), $leader->name,
	'target_session_attrs=read-only reaches a follower');

# A session open on a follower that becomes leader is told.
my ($in, $sout, $serr) = ('', '', '');
my $session = IPC::Run::start(
	[ 'psql', '-XAtq', '-h', $follower->host, '-p', $follower->port, '-d', 'postgres' ],
	'<', \$in, '>', \$sout, '2>', \$serr);
$in .= "SELECT 'before';\n";
$session->pump until $sout =~ /before/;
# a client that names itself like a member's connection, without being one
my ($in2, $sout2, $serr2) = ('', '', '');
my $imposter;
{
	local $ENV{PGAPPNAME} = 'pg_raft imposter';
	$imposter = IPC::Run::start(
		[ 'psql', '-XAtq', '-h', $follower->host, '-p', $follower->port, '-U', 'app', '-d', 'postgres' ],
		'<', \$in2, '>', \$sout2, '2>', \$serr2);
}
$in2 .= "SELECT 'before';\n";
$imposter->pump until $sout2 =~ /before/;
is($leader->safe_psql('postgres', "SELECT raft.transfer_leadership('" . $follower->name . "')"),
	$follower->name, 'leadership moves to the follower with the open session');
$follower->poll_query_until('postgres', q{SELECT role = 'leader' AND writable FROM raft.status})
  or die 'the transfer did not happen';
$in .= "SELECT 'after';\n";
$session->pump until $serr =~ /FATAL/ || $sout =~ /after/;
like($serr, qr/FATAL:  terminating connection because this node's raft role changed/,
	'the session that began on a follower is ended');
like($serr, qr/This node is now the leader and takes writes/, 'and told why');
$session->finish;
$in2 .= "SELECT 'after';\n";
$imposter->pump until $serr2 =~ /FATAL/ || $sout2 =~ /after/;
like($serr2, qr/FATAL:  terminating connection because this node's raft role changed/,
	'so is a session named pg_raft... whose role is not a member\'s');
$imposter->finish;

# A session idle in a transaction that holds a transaction id on a node
# that becomes leader would hold up the new leader's replication slot (and
# so its writes) for as long as it idles: it is ended.
my $idler = $leader;
($in, $sout, $serr) = ('', '', '');
my $timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
$session = IPC::Run::start(
	[ 'psql', '-XAtq', '-h', $idler->host, '-p', $idler->port, '-d', 'postgres' ],
	'<', \$in, '>', \$sout, '2>', \$serr, $timer);
$in .= "BEGIN; SELECT 'xid ' || txid_current();\n";
$session->pump until $sout =~ /xid \d+/ || $timer->is_expired;
is($follower->safe_psql('postgres', "SELECT raft.transfer_leadership('" . $idler->name . "')"),
	$idler->name, 'leadership moves to the node with the idle transaction');
is(RaftCluster::wait_for_leader(@nodes)->name, $idler->name, 'which takes writes');
ok($idler->log_contains('pg_raft is terminating process \d+, idle in transaction \d+, which holds back this new leader'),
	'after ending the idle session');
$in .= "SELECT 'still there';\n";
$session->pump until $serr =~ /FATAL|server closed/ || $sout =~ /still there/ || $timer->is_expired;
like($serr, qr/terminating connection due to administrator command|server closed the connection/,
	'the idle session is gone');
$session->finish;

# After a failover the same conninfo reaches the new leader, which writes.
my $old = RaftCluster::wait_for_leader(@nodes);
$old->kill9;
my @alive = grep { $_ != $old } @nodes;
my $new = RaftCluster::wait_for_leader(@alive);
my $conninfo = multi_host('read-write');
my $reached = '';
for (1 .. 100)
{
	$reached = connect_name($conninfo);
	last if $reached eq $new->name;
	select(undef, undef, undef, 0.1);
}
is($reached, $new->name, 'after a failover read-write reaches the new leader');
$new->safe_psql('postgres', 'INSERT INTO t VALUES (10)');
pass('and the new leader accepts writes');

done_testing();
