# Copyright (c) pg_raft contributors
#
# A former leader that committed a transaction which never reached the
# Raft log comes back after the new leader changed the schema of the
# table that transaction touched.  Its rows cannot be repaired across the
# schema change (the leader's rows have other columns, and the log's
# entries before the change fit the old ones): the former leader copies
# its data again from the leader, schema and rows, and ends up holding
# exactly what the others hold.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, note text);
	INSERT INTO t VALUES (1, 'everywhere');
});
RaftCluster::wait_for_apply($leader, @followers);

# A transaction commits on the leader only, then the leader dies.
is(RaftCluster::commit_then_die($leader,
		q{INSERT INTO t VALUES (2, 'only on the old leader'); SELECT 'committed'}),
	'committed', 'the leader commits locally without waiting for the log');

# The new leader changes the table's columns, and writes on.
my $new = RaftCluster::wait_for_leader(@followers);
$new->safe_psql('postgres', q{
	ALTER TABLE t RENAME COLUMN note TO remark;
	ALTER TABLE t ADD COLUMN added int DEFAULT 7;
	INSERT INTO t VALUES (3, 'after the schema change', 8);
});

RaftCluster::restart_after_kill9($leader);
ok($leader->wait_for_log(qr/the columns of table public\.t changed in the log since this node last applied it/),
	'the old leader finds that its diverged rows cannot be repaired across the schema change');
ok($leader->wait_for_log(qr/pg_raft copies the leader's data again/),
	'... and copies its data again from the leader');
$leader->poll_query_until('postgres', 'SELECT NOT resyncing FROM raft.status')
  or die 'the old leader never finished its copy';
$new->safe_psql('postgres', q{INSERT INTO t VALUES (4, 'after the copy', 9)});
RaftCluster::same_everywhere('after the copy', $new, grep { $_ != $new } @nodes);
is($leader->safe_psql('postgres',
		q{SELECT string_agg(id || ' ' || remark || ' ' || added, ', ' ORDER BY id) FROM t}),
	'1 everywhere 7, 3 after the schema change 8, 4 after the copy 9',
	'the old leader holds what the log holds, in the new columns, and no more');

done_testing();
