# Copyright (c) pg_raft contributors
#
# RaftCluster.pm: starting pg_raft instances and forming clusters in TAP
# tests.
#
# Each node is a PostgreSQL::Test::Cluster that preloads pg_raft, listens
# on 127.0.0.1 so that the members reach one another over TCP with libpq,
# and has the extension created in database postgres.  The helpers wait by
# polling the views (poll_query_until and friends), never by sleeping a
# fixed time.

package RaftCluster;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# new_node(NAME, EXTRA_CONF): a started instance with pg_raft installed.
sub new_node
{
	my ($name, $extra_conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	# the leader decodes its WAL through a replication connection to itself
	$node->init(allows_streaming => 'logical');
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'pg_raft'
# this PostgreSQL 15 build lists the output plugins a slot may use
output_plugin_libraries = 'pgoutput, test_decoding, pg_raft'
listen_addresses = '127.0.0.1'
log_statement = none
} . ($extra_conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_raft');
	return $node;
}

# conninfo(NODE): how the other members reach NODE.
sub conninfo
{
	my ($node) = @_;
	return 'host=127.0.0.1 port=' . $node->port . ' dbname=postgres';
}

# form_cluster(NODES...): the first node creates the cluster, the others
# join it one by one; each join returns once the node is a voter.  A node
# may carry its own conninfo in $node->{raft_conninfo} (a proxy's, say).
sub form_cluster
{
	my @nodes = @_;
	my $first = $nodes[0];
	$first->safe_psql('postgres',
		"SELECT raft.create_cluster('" . $first->name . "', '"
		  . member_conninfo($first) . "')");
	join_cluster($_, $first) foreach @nodes[ 1 .. $#nodes ];
	return;
}

# join_cluster(NODE, THROUGH): NODE joins the cluster THROUGH belongs to.
sub join_cluster
{
	my ($node, $through) = @_;
	$node->safe_psql('postgres',
		"SELECT raft.join_cluster('"
		  . $node->name . "', '"
		  . member_conninfo($node) . "', '"
		  . member_conninfo($through) . "')");
	return;
}

# member_conninfo(NODE): the conninfo the other members use for NODE.
sub member_conninfo
{
	my ($node) = @_;
	return $node->{raft_conninfo} // conninfo($node);
}

# restart_after_kill9(NODE): starts NODE again after kill9.  The dead
# postmaster's PID stays in postmaster.pid, and until the process is reaped
# (some init processes take seconds) a new postmaster refuses to start, so
# retry until it does.
sub restart_after_kill9
{
	my ($node) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		# a failed start records the stale PID: forget it before retrying
		$node->{_pid} = undef;
		return if $node->start(fail_ok => 1);
		usleep(200_000);
	}
	die 'could not restart ' . $node->name;
}

# status(NODE): raft.status of NODE as a hash (empty if it is down).
sub status
{
	my ($node) = @_;
	my ($ret, $out) = $node->psql('postgres',
		"SELECT role, term, coalesce(leader_name, ''), commit_index, last_index, writable, applied_index FROM raft.status"
	);
	return {} if $ret != 0 || $out eq '';
	my ($role, $term, $leader, $commit, $last, $writable, $applied) = split /\|/, $out;
	return {
		role => $role,
		term => $term,
		leader => $leader,
		commit => $commit,
		last => $last,
		writable => $writable eq 't',
		applied => $applied
	};
}

# wait_for_leader(NODES...): waits until exactly one of NODES is leader,
# every one of them names it, in the same term, and it takes writes;
# returns the leader node.
sub wait_for_leader
{
	my @nodes = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my @st = map { status($_) } @nodes;
		my @leaders = grep { ($st[$_]{role} // '') eq 'leader' } 0 .. $#nodes;
		if (@leaders == 1)
		{
			my $leader = $nodes[ $leaders[0] ];
			my $term = $st[ $leaders[0] ]{term};
			my $agree = grep {
				($_->{leader} // '') eq $leader->name && $_->{term} == $term
			} @st;
			return $leader
			  if $agree == @nodes && $st[ $leaders[0] ]{writable};
		}
		usleep(100_000);
	}
	die 'no single leader that every node agrees on';
}

# wait_for_apply(LEADER, NODES...): waits until every one of NODES has
# applied everything LEADER has committed so far.
sub wait_for_apply
{
	my ($leader, @nodes) = @_;
	my $index = status($leader)->{commit};
	foreach my $node (@nodes)
	{
		$node->poll_query_until('postgres',
			"SELECT raft.wait_for_index($index, '1s')")
		  or die $node->name . " did not apply index $index";
	}
	return $index;
}

# checksums(NODE, TABLES...): raft.table_checksum of each table, joined.
sub checksums
{
	my ($node, @tables) = @_;
	return join ' ',
	  map { $node->safe_psql('postgres', "SELECT raft.table_checksum('$_')") }
	  @tables;
}

# barrier(NODE): retries raft.barrier() on NODE until it commits; returns
# the index.
sub barrier
{
	my ($node) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my ($ret, $out) =
		  $node->psql('postgres', "SELECT raft.barrier('2s')");
		return $out if $ret == 0;
		usleep(100_000);
	}
	die 'raft.barrier() never committed on ' . $node->name;
}

1;
