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

use IPC::Run;
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

# commit_then_die(LEADER, SQL): LEADER's raft worker stops, SQL commits on
# LEADER alone (synchronous_commit = local) and never becomes an entry,
# then LEADER dies (kill -9), the worker still stopped: resumed, it would
# ship what it had.  Returns what SQL printed.
sub commit_then_die
{
	my ($leader, $sql) = @_;
	my $worker = $leader->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
	kill 'STOP', $worker;
	my $out = $leader->safe_psql('postgres', "SET synchronous_commit = local; $sql");
	$leader->kill9;
	kill 'KILL', $worker;
	return $out;
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
	# the tests' timeout for each node: poll_query_until counts tries, and
	# each try here waits up to a second in the server, so it would wait
	# ten times as long
	foreach my $node (@nodes)
	{
		wait_until(sub {
				my ($ret, $out) = $node->psql('postgres',
					"SELECT raft.wait_for_index($index, '1s')");
				return $ret == 0 && $out eq 't';
			})
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

# type_coverage_schema(): tables of every built-in type family, arrays,
# a composite, a domain, an enum, a TOASTed column, a keyless FULL table
# and a foreign key, for the tests that replicate them.
sub type_coverage_schema
{
	return q{
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE kinds (
	id int PRIMARY KEY, b bool, i2 int2, i8 int8, f4 float4, f8 float8,
	n numeric, m money, t text, vc varchar(10), ch char(3), by bytea,
	d date, ti time, tz timestamptz, ts timestamp, iv interval,
	u uuid, j json, jb jsonb, x xml, ip inet, cidr cidr, mac macaddr,
	bits bit varying(8), pt point, bx box, rng int4range, arr int[],
	tarr text[], p pair, dom positive, mo mood, tsv tsvector, oidv oid);
CREATE TABLE docs (id int PRIMARY KEY, body text, n int);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
CREATE TABLE parent (id serial PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);
};
}

# type_coverage_writes(): inserts, updates, deletes and TRUNCATE CASCADE /
# RESTART IDENTITY on the tables of type_coverage_schema().
sub type_coverage_writes
{
	return q{
INSERT INTO kinds VALUES
	(1, true, 32767, 9223372036854775807, 1.5, 'NaN', 12345678901234567890.123, 12.34,
	 'text é ✓', 'varchar', 'abc', '\x00ff10', '2026-11-27', '12:34:56.789',
	 '2026-11-27 12:00:00+01', '2000-01-01 00:00:00', '1 day 02:03:04',
	 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '{"b": [1, 2]}',
	 '<x>1</x>', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
	 B'1011', '(1,2)', '((0,0),(1,1))', '[1,10)', '{1,NULL,3}',
	 '{"a","b c"}', ROW(7, 'seven'), 5, 'happy', 'fat cat', 42),
	(2, NULL, NULL, NULL, NULL, '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL,
	 'infinity', NULL, NULL, NULL, NULL, NULL, NULL, 'null', NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, 'empty', '{}', NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE kinds SET t = 'changed', arr = arr || 4 WHERE id = 1;
UPDATE kinds SET id = 3 WHERE id = 2;
INSERT INTO docs SELECT g, repeat(md5(g::text), 1000), 0 FROM generate_series(1, 20) g;
UPDATE docs SET n = n + 1;
UPDATE docs SET body = body || 'x' WHERE id = 5;
DELETE FROM docs WHERE id > 15;
INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (2, 'b');
UPDATE nokey SET b = 'c' WHERE a = 2;
DELETE FROM nokey WHERE a = 2;
INSERT INTO parent SELECT FROM generate_series(1, 5);
INSERT INTO child VALUES (1, 1), (2, 2);
TRUNCATE parent RESTART IDENTITY CASCADE;
INSERT INTO parent DEFAULT VALUES;
};
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

# dump_schema(NODE): the schema of raft.database as pg_dump shows it
sub dump_schema
{
	my ($node) = @_;
	my ($stdout, $stderr);
	IPC::Run::run([ 'pg_dump', '--schema-only', '-d', $node->connstr('postgres') ],
		'>', \$stdout, '2>', \$stderr)
	  or die "pg_dump failed on " . $node->name . ": $stderr";
	# psql's \restrict keys are random
	$stdout =~ s/^\\(un)?restrict .*$//mg;
	return $stdout;
}

# logged_tables(NODE): the logged tables outside the system schemas and
# raft (an unlogged table's rows stay on each member)
sub logged_tables
{
	my ($node) = @_;
	return split /\n/, $node->safe_psql('postgres', q{
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'raft')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1});
}

# same_everywhere(NAME, MEMBERS...): once every member applied what the
# first has committed, the schema (pg_dump --schema-only) and every logged
# table's checksum are the same on each one
sub same_everywhere
{
	my ($name, @members) = @_;
	my $first = $members[0];
	wait_for_apply($first, @members[ 1 .. $#members ]);
	my $schema = dump_schema($first);
	my @tables = logged_tables($first);
	my $sums = checksums($first, @tables);
	foreach my $node (@members[ 1 .. $#members ])
	{
		is(dump_schema($node), $schema, "$name: the schema is the same on " . $node->name);
		is(checksums($node, @tables), $sums,
			"$name: the " . scalar(@tables) . ' tables are equal on ' . $node->name);
	}
	return;
}

# stop_while_asleep(PID): stops process PID (SIGSTOP) at a moment it sleeps
# in the kernel, waiting: never while it runs, when it might hold a
# spinlock that other processes would then spin on.  Whatever a test
# stopped is let go at its end, also when it dies.
my @stopped;
END { kill 'CONT', @stopped if @stopped; }

sub stop_while_asleep
{
	my ($pid) = @_;
	foreach (1 .. 100_000)
	{
		if (slurp_file("/proc/$pid/stat") =~ /\) S /)
		{
			kill 'STOP', $pid;
			push @stopped, $pid;
			return;
		}
		usleep(100);
	}
	die "process $pid never slept";
}

# large_transaction(LEADER, STATEMENT, NAME): runs STATEMENT, a large
# INSERT, in a session of its own on LEADER, where a walsender decodes
# (raft.decoding = auto).  The walsender is held still from before the
# statement, while it waits for WAL (mid-stream it rarely sleeps, and a
# busy one may have streamed too much by then to be handed over), until
# capture hands decoding to the decoding worker, as for a walsender that
# falls behind: on a quiet machine one may keep up.  The hand-over is
# checked as NAME.  Returns the session and a reference to its stderr.
sub large_transaction
{
	my ($leader, $statement, $name) = @_;
	my $offset = -s $leader->logfile;
	my $slot_holder = q{SELECT active_pid FROM pg_replication_slots
  WHERE slot_name = 'pg_raft' AND active_pid IS NOT NULL};
	$leader->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($slot_holder) h")
	  or die 'no process holds the slot pg_raft';
	my $walsender = $leader->safe_psql('postgres', $slot_holder);
	die 'a walsender does not hold the slot pg_raft'
	  unless $leader->safe_psql('postgres',
		"SELECT backend_type FROM pg_stat_activity WHERE pid = $walsender") eq 'walsender';
	stop_while_asleep($walsender);
	my ($out, $err) = ('', '');
	my $session = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $leader->connstr('postgres'),
			'-c', $statement ],
		'>', \$out, '2>', \$err);
	my $handed = eval {
		$leader->wait_for_log(
			qr/pg_raft hands this leader's decoding to its decoding worker/, $offset);
		1;
	};
	kill 'CONT', $walsender;
	ok($handed, $name);
	return ($session, \$err);
}

# wait_until(CHECK): calls CHECK every 100 ms until it returns true (1) or
# the tests' timeout passes (0)
sub wait_until
{
	my ($check) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return 1 if $check->();
		usleep(100_000);
	}
	return 0;
}

1;
