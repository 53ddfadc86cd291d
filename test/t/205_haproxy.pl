# Copyright (c) pg_raft contributors
#
# 205_haproxy.pl: a real HAProxy in front of a 3-member cluster, driven by
# the health API, as docs/operations.md configures it:
#   - the read port balances over the followers within a lag bound
#     (/replica?lag=1s): a follower held back (its apply worker stopped) is
#     taken out, no read reaches it, and it is put back once it catches up;
#   - the write port sends to the leader (/leader): rows written through
#     it, and through PgBouncer in front of it, land on the leader before
#     and after kill -9 of the leader (killed while the writers run), and
#     every acknowledged row is on every member afterwards.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Socket::UNIX;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;
use Time::HiRes qw(usleep time);

# the Debian packages put some of them in /usr/sbin
$ENV{PATH} .= ':/usr/sbin' unless ":$ENV{PATH}:" =~ m{:/usr/sbin:};
foreach my $tool (qw(haproxy pgbouncer))
{
	BAIL_OUT("$tool is not installed (.ci/install-deps installs it)")
	  if system("command -v $tool > /dev/null") != 0;
}

my %http_port;
my @nodes;
foreach my $name (qw(n1 n2 n3))
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	push @nodes, RaftCluster::new_node($name, "raft.http_listen = '127.0.0.1:$port'\n");
	$http_port{$name} = $port;
}
$nodes[0]->safe_psql('postgres', q{CREATE TABLE t (id integer PRIMARY KEY, served_by text)});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);

# HAProxy, as docs/operations.md sets it up.
my $dir = PostgreSQL::Test::Utils::tempdir();
my $write_port = PostgreSQL::Test::Cluster::get_free_port();
my $read_port = PostgreSQL::Test::Cluster::get_free_port();
my $servers = sub {
	join '', map {
		sprintf("    server %s 127.0.0.1:%d check port %d\n",
			$_->name, $_->port, $http_port{ $_->name })
	} @nodes;
};
my $config = <<"EOF";
global
    maxconn 200
    stats socket $dir/haproxy.sock mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
    # a connection to a member that died fails at once, and the client
    # tries again (HAProxy's own retries wait a second each)
    retries 0
    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions

listen write
    bind 127.0.0.1:$write_port
    option httpchk
    http-check send meth GET uri /leader
    http-check expect status 200
@{[ $servers->() ]}
listen read
    bind 127.0.0.1:$read_port
    balance roundrobin
    option httpchk
    http-check send meth GET uri /replica?lag=1s
    http-check expect status 200
@{[ $servers->() ]}
EOF
PostgreSQL::Test::Utils::append_to_file("$dir/haproxy.cfg", $config);
system_or_bail('haproxy', '-c', '-q', '-f', "$dir/haproxy.cfg");
my ($haproxy_out, $haproxy_err) = ('', '');
# it stops by itself, should the test die before it is killed
my $haproxy = IPC::Run::start([ 'timeout', '900', 'haproxy', '-db', '-f', "$dir/haproxy.cfg" ],
	'>', \$haproxy_out, '2>', \$haproxy_err);

# server_states(PROXY): { server => UP/DOWN/... } from HAProxy's stats
sub server_states
{
	my ($proxy) = @_;
	my $sock = IO::Socket::UNIX->new(Peer => "$dir/haproxy.sock") or return {};
	print $sock "show stat\n";
	my @lines = <$sock>;
	close $sock;
	return {} unless @lines;
	my @header = split /,/, substr($lines[0], 2);
	my ($name_col) = grep { $header[$_] eq 'svname' } 0 .. $#header;
	my ($state_col) = grep { $header[$_] eq 'status' } 0 .. $#header;
	my %states;
	foreach my $line (@lines[ 1 .. $#lines ])
	{
		my @f = split /,/, $line;
		next unless @f > $state_col && $f[0] eq $proxy;
		next if $f[$name_col] eq 'FRONTEND' || $f[$name_col] eq 'BACKEND';
		$states{ $f[$name_col] } = $f[$state_col];
	}
	return \%states;
}

# through(PORT, SQL): psql's exit status and output, through HAProxy
sub through
{
	my ($port, $sql) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGCONNECT_TIMEOUT} = '3';
	IPC::Run::run([ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
			'-h', '127.0.0.1', '-p', $port, '-d', 'postgres', '-c', $sql ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(30));
	chomp $out;
	return ($? >> 8, $out, $err);
}

my @followers = grep { $_ != $leader } @nodes;
ok(RaftCluster::wait_until(sub {
			my $w = server_states('write');
			my $r = server_states('read');
			return $w->{ $leader->name } eq 'UP'
			  && (grep { $w->{ $_->name } eq 'DOWN' } @followers) == 2
			  && $r->{ $leader->name } eq 'DOWN'
			  && (grep { $r->{ $_->name } eq 'UP' } @followers) == 2;
		}),
	'HAProxy sends writes to the leader alone, reads to the two followers');

# Reads: a follower held back is taken out of the read pool, and put back.
my %read_by;
foreach (1 .. 10)
{
	my ($rc, $who) = through($read_port, 'SELECT node_name FROM raft.status');
	$read_by{$who}++ if $rc == 0;
}
is_deeply([ sort keys %read_by ], [ sort map { $_->name } @followers ],
	'reads through the read port reach both followers, not the leader');

my $held = $followers[0];
my $other = $followers[1];
my $apply_pid = $held->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_raft apply worker'");
kill 'STOP', $apply_pid;
$leader->safe_psql('postgres', "INSERT INTO t VALUES ($_, 'direct')") foreach 1 .. 3;
ok(RaftCluster::wait_until(sub { server_states('read')->{ $held->name } eq 'DOWN' }),
	'a follower held back past the lag bound is taken out of the read pool');
my %held_reads = (hits => 0, rows => 0);
foreach (1 .. 10)
{
	my ($rc, $out) = through($read_port,
		"SELECT node_name || ',' || (SELECT count(*) FROM t) FROM raft.status");
	my ($who, $rows) = split /,/, $out;
	$held_reads{hits}++ if $rc != 0 || $who ne $other->name;
	$held_reads{rows}++ if $rc == 0 && $rows == 3;
}
is($held_reads{hits}, 0, '... no read reaches it, all go to the other follower');
is($held_reads{rows}, 10, '... and every read sees the rows just written');
kill 'CONT', $apply_pid;
ok(RaftCluster::wait_until(sub { server_states('read')->{ $held->name } eq 'UP' }),
	'caught up again, it is put back');
%read_by = ();
foreach (1 .. 10)
{
	my ($rc, $who) = through($read_port, 'SELECT node_name FROM raft.status');
	$read_by{$who}++ if $rc == 0;
}
ok($read_by{ $held->name }, '... and takes reads again');

# PgBouncer in front of the write port, as docs/operations.md sets it up.
my $bouncer_port = PostgreSQL::Test::Cluster::get_free_port();
my $user = $leader->safe_psql('postgres', 'SELECT current_user');
PostgreSQL::Test::Utils::append_to_file("$dir/userlist.txt", qq{"$user" ""\n});
PostgreSQL::Test::Utils::append_to_file("$dir/pgbouncer.ini", <<"EOF");
[databases]
postgres = host=127.0.0.1 port=$write_port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
server_check_query = select 1
server_check_delay = 1
server_connect_timeout = 3
server_login_retry = 1
EOF
my ($bouncer_out, $bouncer_err) = ('', '');
my $bouncer = IPC::Run::start([ 'timeout', '900', 'pgbouncer', "$dir/pgbouncer.ini" ],
	'>', \$bouncer_out, '2>', \$bouncer_err);

# Writes: two writers go on, one through HAProxy's write port, one through
# PgBouncer, one row per transaction, while the leader is killed (kill -9)
# under them.  Each notes a row once its COMMIT is acknowledged, who took
# it, and when the statement was sent: one sent just before the kill may
# still be acknowledged by the old leader's processes, which outlive its
# postmaster for a moment (its commit is in the log by then).
my $stop_file = "$dir/stop";

# start_writer(NAME, PORT, FIRST_ID): a child process writing through PORT
sub start_writer
{
	my ($name, $port, $id) = @_;
	my $acked_file = "$dir/acked_$name";
	PostgreSQL::Test::Utils::append_to_file($acked_file, '');
	my $pid = fork() // die "fork: $!";
	return $pid if $pid != 0;
	my $deadline = time() + 2 * $PostgreSQL::Test::Utils::timeout_default;
	while (!-e $stop_file && time() < $deadline)
	{
		$id++;
		my $sent = time();
		my ($rc, $who) = through($port,
			"INSERT INTO t VALUES ($id, (SELECT node_name FROM raft.status)) RETURNING served_by");
		if ($rc == 0)
		{
			PostgreSQL::Test::Utils::append_to_file($acked_file,
				sprintf("%d %s %.3f %.3f\n", $id, $who, time(), $sent));
		}
		else
		{
			usleep(20_000);
		}
	}
	# not exit: the parent's END blocks must not run here
	POSIX::_exit(0);
}

# acked(NAME): [id, member, time acknowledged, time sent] of every row
# acknowledged to that writer
sub acked
{
	my ($name) = @_;
	return [ map { [ split / / ] } split /\n/, slurp_file("$dir/acked_$name") ];
}

my %writers = (
	haproxy => start_writer('haproxy', $write_port, 100_000),
	pgbouncer => start_writer('pgbouncer', $bouncer_port, 200_000));
foreach my $name (sort keys %writers)
{
	ok(RaftCluster::wait_until(sub { @{ acked($name) } >= 20 }), "rows written through $name are taken");
	is(scalar(grep { $_->[1] ne $leader->name } @{ acked($name) }), 0, '... by the leader');
}

$leader->kill9;
my $killed_at = time();
my $new_leader = RaftCluster::wait_for_leader(@followers);
my %acked;
foreach my $name (sort keys %writers)
{
	ok(RaftCluster::wait_until(sub { (grep { $_->[3] > $killed_at } @{ acked($name) }) >= 20 }),
		"after kill -9 of the leader, rows written through $name are taken again");
}
PostgreSQL::Test::Utils::append_to_file($stop_file, '');
foreach my $name (sort keys %writers)
{
	waitpid($writers{$name}, 0);
	my @after = grep { $_->[3] > $killed_at } @{ acked($name) };
	note(sprintf('%s: first row taken %.2f s after the kill', $name, $after[0][2] - $killed_at));
	is(scalar(grep { $_->[1] ne $new_leader->name } @after), 0,
		"... through $name, all by the new leader");
	$acked{ $_->[0] } = 1 foreach @{ acked($name) };
}
$bouncer->kill_kill;

# Every acknowledged row is on every member, the killed one included.
RaftCluster::restart_after_kill9($leader);
my $last = $new_leader->safe_psql('postgres', 'SELECT raft.barrier()');
foreach my $node (@nodes)
{
	$node->poll_query_until('postgres', "SELECT applied_index >= $last FROM raft.status")
	  or die $node->name . ' did not apply the barrier';
}
foreach my $node (@nodes)
{
	my $have = $node->safe_psql('postgres',
		'SELECT string_agg(id::text, \',\' ORDER BY id) FROM t WHERE id >= 100000');
	my %have = map { $_ => 1 } split /,/, $have;
	my @missing = grep { !$have{$_} } keys %acked;
	is(scalar @missing, 0, $node->name . ' holds every acknowledged row')
	  or diag('missing: ' . join(',', sort @missing));
}
ok(RaftCluster::wait_until(sub { server_states('write')->{ $new_leader->name } eq 'UP'
			  && server_states('write')->{ $leader->name } eq 'DOWN' }),
	'HAProxy keeps the restarted old leader out of the write pool');

$haproxy->kill_kill;
$_->stop foreach @nodes;
done_testing();
