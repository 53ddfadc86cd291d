# Copyright (c) pg_raft contributors
#
# A migration like a real application's, run statement by statement on the
# leader through target_session_attrs=read-write while pgbench writes, with
# kill -9 of the leader in the middle.  pgbench's own tables are created
# after the cluster formed (pgbench -i: DDL, then COPY).  Afterwards
# pg_dump --schema-only is identical on every member, every table's
# raft.table_checksum is equal, and the new leader takes writes.

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
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my $any = 'host=' . join(',', ('127.0.0.1') x @nodes) . ' port='
  . join(',', map { $_->port } @nodes)
  . ' dbname=postgres target_session_attrs=read-write connect_timeout=2';

$leader->command_ok([ 'pgbench', '-i', '-q', '-s', '2', $leader->connstr('postgres') ],
	'pgbench -i after the cluster formed');
RaftCluster::same_everywhere('pgbench -i', @nodes);

# pgbench(SECONDS): pgbench against whichever member leads, in the
# background; it stops by itself, or when its leader dies
sub pgbench
{
	my ($seconds) = @_;
	my ($out, $err);
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', $seconds, $any ],
		'>', \$out, '2>', \$err);
}

# migrate(STATEMENT): runs one migration statement through the multi-host
# conninfo, retrying while no member takes writes (the failover)
sub migrate
{
	my ($statement) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my ($stdout, $stderr);
		return if IPC::Run::run([ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-c', $statement, '-d', $any ],
			'>', \$stdout, '2>', \$stderr);
		# only a failover may get in the way
		die "migration statement failed: $statement\n$stderr"
		  unless $stderr =~ /could not connect|server closed|terminating connection|read-only|not the raft leader|connection to server/;
		sleep 1;
	}
	die "no leader took the migration statement: $statement";
}

my @before_kill = (
	'CREATE TABLE accounts_ext (aid int PRIMARY KEY REFERENCES pgbench_accounts, note text)',
	q{ALTER TABLE pgbench_accounts ADD COLUMN email text DEFAULT 'none'},
	q{UPDATE pgbench_accounts SET email = 'user' || aid || '@example.com' WHERE aid <= 2000},
	'CREATE INDEX pgbench_accounts_email ON pgbench_accounts (email)',
	q{INSERT INTO accounts_ext SELECT aid, 'ext ' || aid FROM pgbench_accounts WHERE aid <= 500},);
my @after_kill = (
	'ALTER TABLE pgbench_history ADD COLUMN note text',
	'ALTER TABLE pgbench_accounts RENAME COLUMN email TO contact',
	'ALTER TABLE pgbench_tellers DROP COLUMN filler',
	'CREATE VIEW branch_totals AS SELECT bid, sum(abalance) AS total FROM pgbench_accounts GROUP BY bid',
	'ALTER TABLE accounts_ext ADD CONSTRAINT note_set CHECK (note IS NOT NULL)',);

my $bench = pgbench(60);
sleep 2;
migrate($_) foreach @before_kill;
pass('half of the migration ran while pgbench wrote');

$leader->kill9;
my $old = $leader;
$bench->finish;
$bench = pgbench(8);
migrate($_) foreach @after_kill;
pass('the rest of the migration ran on the new leader, with pgbench writing again');
$bench->finish;

my @survivors = grep { $_ != $old } @nodes;
$leader = RaftCluster::wait_for_leader(@survivors);
$leader->safe_psql('postgres', q{INSERT INTO accounts_ext VALUES (501, 'after the migration')});
is($leader->safe_psql('postgres', q{SELECT count(*) FROM accounts_ext}), '501',
	'the new leader takes writes');
RaftCluster::same_everywhere('after the failover', $leader, grep { $_ != $leader } @survivors);

RaftCluster::restart_after_kill9($old);
RaftCluster::wait_for_leader(@nodes);
RaftCluster::same_everywhere('with the old leader back', $leader, grep { $_ != $leader } @nodes);

done_testing();
