# Copyright (c) pg_raft contributors
#
# Data through the Raft log: the leader's transactions reach every member,
# a COMMIT is acknowledged only once a majority holds it, and a failover
# loses nothing acknowledged.
#
#  - pgbench and a custom workload on the leader, then every table's
#    raft.table_checksum is equal on all members;
#  - a transaction too big for one entry, and TRUNCATE, replicate;
#  - COMMIT waits for the Raft majority: with both followers' raft workers
#    paused it does not return (synchronous_commit = local turns the wait
#    off);
#  - kill -9 of the leader under a writer that logs every acknowledged
#    commit: the new leader takes writes only once it holds every
#    acknowledged row, the survivors converge, and no row is there twice.

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
# the schema exists on the first node; the others copy it when they join
# (DDL does not replicate yet)
$nodes[0]->command_ok([ 'pgbench', '-i', '-q', '-s', '2', $nodes[0]->connstr('postgres') ],
	'pgbench tables');
$nodes[0]->safe_psql('postgres', q{
CREATE TABLE acked (id int PRIMARY KEY, at timestamptz DEFAULT now());
CREATE TABLE big (id int PRIMARY KEY, pad text);
CREATE TABLE logbook (n int, note text);
ALTER TABLE logbook REPLICA IDENTITY FULL;
CREATE TABLE nokey (a int, b text);
CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
CREATE TABLE tickets (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
CREATE TABLE events (id serial, part int, PRIMARY KEY (id, part)) PARTITION BY LIST (part);
CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);});
my @tables = qw(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history acked big logbook nokey orders tickets events_1);
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;

is($leader->safe_psql('postgres', 'SHOW synchronous_standby_names'), 'pg_raft',
	'the cluster runs in synchronous mode');

# pgbench and a custom workload on the leader
$leader->command_ok(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-t', '300', $leader->connstr('postgres') ],
	'pgbench runs on the leader');
$leader->safe_psql('postgres', q{
INSERT INTO logbook SELECT g, 'note ' || g FROM generate_series(1, 500) g;
UPDATE logbook SET note = note || ' (seen)' WHERE n % 3 = 0;
DELETE FROM logbook WHERE n % 7 = 0;});

# a table without a replica identity takes inserts, and refuses what the
# members could not replay, before it happens
$leader->safe_psql('postgres', q{INSERT INTO nokey VALUES (1, 'one'), (2, 'two')});
my ($ret, $out, $err) = $leader->psql('postgres', q{UPDATE nokey SET b = 'uno' WHERE a = 1});
like($err, qr/ERROR:  cannot update table "nokey" because it has no replica identity/,
	'UPDATE of a table without a replica identity is refused on the leader');
like($err, qr/HINT:  Add a primary key, or set REPLICA IDENTITY FULL/, '... with a hint');
($ret, $out, $err) = $leader->psql('postgres', q{DELETE FROM nokey});
like($err, qr/ERROR:  cannot delete from table "nokey" because it has no replica identity/,
	'and so is DELETE');
($ret, $out, $err) = $leader->psql('postgres',
	q{WITH gone AS (DELETE FROM nokey RETURNING *) SELECT count(*) FROM gone});
like($err, qr/ERROR:  cannot delete from table "nokey"/, 'and a DELETE in a WITH query');
($ret, $out, $err) = $leader->psql('postgres', q{CREATE UNIQUE INDEX ON nokey (a)});
($ret, $out, $err) = $leader->psql('postgres',
	q{INSERT INTO nokey VALUES (1, 'x') ON CONFLICT (a) DO UPDATE SET b = 'x'});
like($err, qr/ERROR:  cannot update table "nokey"/, 'and INSERT ... ON CONFLICT DO UPDATE');
is($leader->safe_psql('postgres', q{SELECT string_agg(b, ',' ORDER BY a) FROM nokey}), 'one,two',
	'and the table is unchanged');

RaftCluster::wait_for_apply($leader, @followers);
my $sums = RaftCluster::checksums($leader, @tables);
is(RaftCluster::checksums($_, @tables), $sums,
	'every table is equal on ' . $_->name . ' after pgbench and the workload')
  foreach @followers;
is($followers[0]->safe_psql('postgres', 'SELECT count(*) FROM pgbench_history'),
	$leader->safe_psql('postgres', 'SELECT count(*) FROM pgbench_history'),
	'the followers hold every pgbench transaction');

# a transaction much bigger than an entry, then TRUNCATE
$leader->safe_psql('postgres',
	q{INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 100000) g});
RaftCluster::wait_for_apply($leader, @followers);
is($_->safe_psql('postgres', 'SELECT count(*), sum(length(pad)) FROM big'), '100000|12800000',
	'a 13 MB transaction arrives whole on ' . $_->name)
  foreach @followers;
# one value far bigger than an entry: its bytes span many entries
$leader->safe_psql('postgres', q{INSERT INTO big VALUES (0, repeat(md5('x'), 200000))});
RaftCluster::wait_for_apply($leader, @followers);
is($_->safe_psql('postgres', q{SELECT md5(pad) = md5(repeat(md5('x'), 200000)) FROM big WHERE id = 0}),
	't', 'a 6 MB value arrives whole on ' . $_->name)
  foreach @followers;
$leader->safe_psql('postgres', 'TRUNCATE big');
RaftCluster::wait_for_apply($leader, @followers);
is($_->safe_psql('postgres', 'SELECT count(*) FROM big'), '0', 'TRUNCATE reaches ' . $_->name)
  foreach @followers;
my ($applied) = $followers[0]->safe_psql('postgres',
	q{SELECT applied_index >= commit_index - 5 FROM raft.status});
is($applied, 't', 'a follower reports its applied index');
my $index = RaftCluster::wait_for_apply($leader, @followers);
ok($leader->poll_query_until('postgres',
		qq{SELECT bool_and(applied_index >= $index AND replay_lag IS NOT NULL) FROM raft.nodes}),
	'the leader sees every member\'s applied index and replay lag');


# COMMIT waits for a majority; synchronous_commit = local does not.  The
# followers' raft workers are paused, under an election timeout long
# enough that the leader keeps its leadership meanwhile.
foreach my $node (@nodes)
{
	$node->append_conf('postgresql.conf', 'raft.election_timeout = 30s');
	$node->reload;
}
my @paused = map { $_->safe_psql('postgres', 'SELECT worker_pid FROM raft.status') } @followers;
kill 'STOP', @paused;
my $timed_out = 0;
$leader->psql('postgres', q{INSERT INTO acked VALUES (-1)},
	timeout => 3, timed_out => \$timed_out);
ok($timed_out, 'without a majority, a COMMIT is not acknowledged');
is($leader->safe_psql('postgres',
		q{SET synchronous_commit = local; INSERT INTO acked VALUES (-2); SELECT 'local'}),
	'local', 'synchronous_commit = local commits without waiting');
kill 'CONT', @paused;
foreach my $node (@nodes)
{
	$node->append_conf('postgresql.conf', 'raft.election_timeout = 1s');
	$node->reload;
}
RaftCluster::wait_for_apply($leader, @followers);
is($_->safe_psql('postgres', 'SELECT count(*) FROM acked WHERE id IN (-1, -2)'), '2',
	'both reach ' . $_->name . ' once the majority is back')
  foreach @followers;

# rows numbered by their sequences, which are not in the change stream
$leader->safe_psql('postgres', q{
INSERT INTO orders (note) SELECT 'before' FROM generate_series(1, 50);
INSERT INTO tickets (note) SELECT 'before' FROM generate_series(1, 30);
INSERT INTO events (part) SELECT 1 FROM generate_series(1, 20);});

# kill -9 under a writer that logs each acknowledged commit
my $writes = join '', map { "INSERT INTO acked (id) VALUES ($_) RETURNING id;\n" } 1 .. 100000;
my ($in, $acks, $errs) = ($writes, '', '');
my $writer = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres') ],
	'<', \$in, '>', \$acks, '2>', \$errs);
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (($acks =~ tr/\n//) < 300 && time() < $deadline)
{
	$writer->pump_nb;
	select(undef, undef, undef, 0.05);
}
$leader->kill9;
# psql dies with the server; what it printed is what was acknowledged
eval { $writer->finish; };
my @acked = grep { /^\d+$/ } split /\n/, $acks;
cmp_ok(scalar @acked, '>=', 300, 'the writer had ' . scalar(@acked) . ' commits acknowledged');
my $old = $leader;
my @alive = grep { $_ != $old } @nodes;
my $new = RaftCluster::wait_for_leader(@alive);
my $max = $acked[-1];
is($new->safe_psql('postgres', "SELECT count(*) FROM acked WHERE id BETWEEN 1 AND $max"),
	scalar(@acked), 'the new leader holds every acknowledged row as soon as it takes writes');
$new->safe_psql('postgres', 'INSERT INTO acked (id) VALUES (200001)');
RaftCluster::wait_for_apply($new, grep { $_ != $new } @alive);
is(RaftCluster::checksums($_, @tables), RaftCluster::checksums($new, @tables),
	'the survivors converge: ' . $_->name)
  foreach grep { $_ != $new } @alive;
is($new->safe_psql('postgres', 'SELECT count(*) = count(DISTINCT id) FROM acked'), 't',
	'no row is there twice');
my @highest = split /\n/, $new->safe_psql('postgres', q{
SELECT max(id) FROM orders; SELECT max(id) FROM tickets; SELECT max(id) FROM events;});
my @next = split /\n/, $new->safe_psql('postgres', q{
INSERT INTO orders (note) VALUES ('after') RETURNING id;
INSERT INTO tickets (note) VALUES ('after') RETURNING id;
INSERT INTO events (part) VALUES (1) RETURNING id;});
ok($next[0] > $highest[0] && $next[1] > $highest[1] && $next[2] > $highest[2],
	"the new leader numbers new rows after those it applied (serial, identity, and a partition's serial): @next after @highest");

# the old leader comes back as a follower and catches up
RaftCluster::restart_after_kill9($old);
RaftCluster::wait_for_leader(@nodes);
RaftCluster::wait_for_apply($new, $old);
is($old->safe_psql('postgres', "SELECT count(*) FROM acked WHERE id = 200001"), '1',
	'the old leader applies what the new one wrote');
is($old->safe_psql('postgres', "SELECT count(*) FROM acked WHERE id BETWEEN 1 AND $max"),
	scalar(@acked), 'and holds every acknowledged row');

done_testing();
