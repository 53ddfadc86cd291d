# Copyright (c) pg_raft contributors
#
# 000_proxy.pl: the partition tests' proxy cuts and heals a link, and never
# outlives its test.
#
# Promises 1 and 2 are checked by cutting links between nodes (RaftProxy.pm).
# Those tests mean something only if the tool does what they believe: while
# the link is up, PostgreSQL's protocol goes through unchanged (SSL
# negotiation, TLS, large results and large queries); after ->cut returns, a
# session that was using the link fails at once and a new one is refused;
# after ->stall returns, nothing moves but nobody is told, and ->restore lets
# the same session carry on; after ->restore, new sessions work again.  And
# no proxy process may survive its test: ->stop, going out of scope, the
# death of the process that started it and max_lifetime each end it.
#
# It needs no pg_raft: one plain node, reached over TCP on 127.0.0.1.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use Digest::MD5 qw(md5_hex);
use IO::Socket::INET;
use IPC::Run;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

use RaftProxy;

# How long a step that should be immediate may take before it counts as
# failed: generous, for a loaded machine.
my $patience = 30;

my $node = PostgreSQL::Test::Cluster->new('target');
$node->init;
# PostgreSQL::Test::Cluster listens on a Unix socket only; the proxy needs
# TCP.  initdb -A trust already trusts 127.0.0.1/32; say it for clarity.
$node->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'");
$node->append_conf('pg_hba.conf', 'host all all 127.0.0.1/32 trust');

# TLS, so that the proxy is seen to carry SSL negotiation and TLS records.
my $have_ssl = 0;
if (system('openssl version >/dev/null 2>&1') == 0)
{
	my $dir = $node->data_dir;
	if (system(
			'openssl', 'req', '-new', '-x509', '-nodes', '-days', '2',
			'-newkey', 'rsa:2048', '-subj', '/CN=127.0.0.1',
			'-keyout', "$dir/server.key", '-out', "$dir/server.crt",
			'-loglevel', 'error') == 0
		|| system(
			"openssl req -new -x509 -nodes -days 2 -newkey rsa:2048 "
			  . "-subj /CN=127.0.0.1 -keyout '$dir/server.key' "
			  . "-out '$dir/server.crt' 2>/dev/null") == 0)
	{
		chmod 0600, "$dir/server.key";
		$node->append_conf('postgresql.conf', "ssl = on");
		$have_ssl = 1;
	}
}
$node->start;

# psql through conninfo $connstr; returns (exit code, stdout, stderr).
sub psql_via
{
	my ($connstr, $sql) = @_;
	my ($ret, $out, $err) = $node->psql(
		'postgres', $sql,
		connstr => "$connstr dbname=postgres",
		timeout => $patience * 2);
	return ($ret // -1, $out, $err);
}

# Polls $cond every 50 ms for up to $patience seconds.
sub wait_until
{
	my ($cond) = @_;
	my $deadline = Time::HiRes::time() + $patience;
	while (Time::HiRes::time() < $deadline)
	{
		return 1 if $cond->();
		Time::HiRes::sleep(0.05);
	}
	return $cond->() ? 1 : 0;
}

# True when nothing runs as $pid any more (gone, or a zombie that its new
# parent has not reaped).
sub process_gone
{
	my ($pid) = @_;
	if (-d '/proc/self')
	{
		open(my $fh, '<', "/proc/$pid/stat") or return 1;
		my $stat = <$fh> // '';
		return $stat =~ /\)\s+Z\s/ ? 1 : 0;
	}
	return kill(0, $pid) ? 0 : 1;
}

sub port_refuses
{
	my ($port) = @_;
	my $s = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto    => 'tcp',
		Timeout  => 5);
	return 0 if $s;
	return 1;
}

# Starts psql through $connstr in the background.  IPC::Run feeds \$in to
# it only while the harness is pumped.
sub start_psql
{
	my ($connstr, $in, $out, $err, $timer, @args) = @_;
	return IPC::Run::start(
		[ 'psql', '-XAtq', '-d', "$connstr dbname=postgres", @args ],
		'<', $in, '>', $out, '2>', $err, $timer);
}

my $link_lost =
  qr/server closed the connection unexpectedly|Connection reset by peer|connection to server was lost|could not send data to server/;

my $direct = 'host=127.0.0.1 port=' . $node->port;
my ($ret, $out, $err) = psql_via($direct, 'SELECT 1');
is($out, '1', 'the node answers over TCP on 127.0.0.1 (no proxy)');

# ---------------------------------------------------------------------
# Forwarding.
# ---------------------------------------------------------------------
my $proxy = RaftProxy->new(target_port => $node->port, name => 'test');
ok($proxy->port > 0 && $proxy->port != $node->port,
	'the proxy listens on a port of its own');
ok(!process_gone($proxy->pid), 'the proxy runs in a process of its own');
my $via = $proxy->conninfo;

($ret, $out, $err) =
  psql_via($via, 'SELECT inet_server_port(), host(inet_client_addr())');
is($out, $node->port . '|127.0.0.1',
	'a session through the proxy reaches the node over TCP');
is($proxy->stats->{accepted}, 1, 'the proxy counted that connection');

SKIP:
{
	skip 'openssl is not available', 2 unless $have_ssl;
	($ret, $out, $err) = psql_via("$via sslmode=require",
		'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
	is($out, 't', 'SSL negotiation and TLS go through the proxy');
	($ret, $out, $err) = psql_via("$via sslmode=disable",
		'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
	is($out, 'f', 'so does a session without SSL');
}

# Large messages both ways, so that buffers fill and drain.
my $big = 8 * 1024 * 1024;
($ret, $out, $err) = psql_via($via, "SELECT repeat('x', $big)");
is(length($out // ''), $big, 'an 8 MB result comes back whole');
my $literal = substr('abcdefghijklmnopqrstuvwxyz' x (4 * 1024 * 1024 / 26 + 1),
	0, 4 * 1024 * 1024);
($ret, $out, $err) = psql_via($via, "SELECT md5('$literal')");
is($out, md5_hex($literal), 'a 4 MB query goes through intact');

# ---------------------------------------------------------------------
# cut: a session in progress fails at once, new sessions are refused.
# ---------------------------------------------------------------------
my ($in, $bout, $berr) = ('', '', '');
my $timer = IPC::Run::timeout(180, exception => 'psql hung');
my $h = start_psql($via, \$in, \$bout, \$berr, $timer,
	'-c', 'SELECT pg_sleep(600)');
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
		               WHERE query = 'SELECT pg_sleep(600)'
		                 AND state = 'active'}),
	'a long query runs through the proxy');
is($proxy->stats->{connections}, 1, 'over one open connection');

is($proxy->cut, 1, 'cut resets the one open connection');
$timer->start($patience);
my $finished = eval { $h->finish; 1 };
ok($finished, 'the session in progress ends at once, not after its query');
$h->kill_kill unless $finished;
isnt($h->full_result, 0, 'with a failure');
like($berr, $link_lost, 'psql reports the lost connection');
is($proxy->stats->{connections}, 0, 'the proxy holds no connection');

($ret, $out, $err) = psql_via("$via connect_timeout=$patience", 'SELECT 1');
is($ret, 2, 'a new session through the cut link fails to connect');
like($err, $link_lost, 'because the proxy closes it at once');
ok($proxy->stats->{refused} >= 1, 'the proxy counted the refusal');
is($proxy->cut, 0, 'cutting twice is harmless');

($ret, $out, $err) = psql_via($direct, 'SELECT 1');
is($out, '1', 'the node itself is untouched');

# ---------------------------------------------------------------------
# restore.
# ---------------------------------------------------------------------
$proxy->restore;
is($proxy->stats->{state}, 'forward', 'restore forwards again');
($ret, $out, $err) = psql_via($via, 'SELECT 1');
is($out, '1', 'a new session through the restored link works');

# ---------------------------------------------------------------------
# stall: nothing moves, nobody is told; restore resumes the session.
# ---------------------------------------------------------------------
($in, $bout, $berr) = ("SELECT 'ready' || '!';\n", '', '');
$timer = IPC::Run::timeout($patience * 2, exception => 'psql hung');
$h = start_psql($via, \$in, \$bout, \$berr, $timer, '-f', '-');
my $ready = eval { $h->pump until $bout =~ /ready!/; 1 };
ok($ready, 'a session through the proxy is open and idle');

$proxy->stall;
$in .= "SELECT 'after' || '-stall';\n";
$h->pump_nb while length $in && $h->pumpable;
# Give a wrongly forwarded query time to arrive (it must not).
my $until = Time::HiRes::time() + 1.5;
while (Time::HiRes::time() < $until)
{
	$h->pump_nb if $h->pumpable;
	Time::HiRes::sleep(0.05);
}
unlike($bout, qr/after-stall/, 'a stalled link carries no query');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_stat_activity
		               WHERE query LIKE '%''-stall''%'
		                 AND pid <> pg_backend_pid()}),
	'0',
	'the server never saw it');
ok($h->pumpable, 'and the session stays open');
is($proxy->stats->{connections}, 1, 'so does its connection');

($ret, $out, $err) =
  psql_via("$via connect_timeout=2", 'SELECT 1');
isnt($ret, 0, 'a new session through a stalled link does not connect');
like($err, qr/timeout expired/, 'it waits until its connect_timeout');

$proxy->restore;
my $resumed = eval { $h->pump until $bout =~ /after-stall/; 1 };
ok($resumed, 'after restore, the stalled query goes through');
$in .= "\\q\n";
$finished = eval { $h->finish; 1 };
$h->kill_kill unless $finished;
ok($finished && $h->full_result == 0, 'and the session ends cleanly');

# ---------------------------------------------------------------------
# No proxy outlives its test.
# ---------------------------------------------------------------------
my ($pid, $port) = ($proxy->pid, $proxy->port);
$proxy->stop;
ok(!$proxy->is_running && process_gone($pid), 'stop ends the proxy process');
ok(port_refuses($port), 'and its port refuses connections');
$proxy->stop;
pass('stopping twice is harmless');

{
	my $scoped = RaftProxy->new(target_port => $node->port, name => 'scoped');
	$pid = $scoped->pid;
}
ok(process_gone($pid), 'a proxy object going out of scope ends its process');

my $short = RaftProxy->new(
	target_port  => $node->port,
	name         => 'short',
	max_lifetime => 1);
ok(wait_until(sub { !$short->is_running }),
	'a proxy ends by itself after max_lifetime');
is($short->exit_status, 0, 'cleanly');

# A proxy whose parent dies (here, a helper process killed with SIGKILL, as
# a test killed by a timeout would be) ends by itself.
pipe(my $rd, my $wr) or die "pipe: $!";
my $test_pid = $$;
my $helper = fork;
die "fork: $!" unless defined $helper;
if ($helper == 0)
{
	close $rd;
	eval {
		my $orphan =
		  RaftProxy->new(target_port => $node->port, name => 'orphan');
		syswrite($wr, $orphan->pid . ' ' . $orphan->port . "\n");
		close $wr;
		# Wait to be killed; never outlive the test, never return into it.
		my $deadline = time + $patience * 4;
		Time::HiRes::sleep(0.1)
		  while getppid() == $test_pid && time < $deadline;
	};
	POSIX::_exit(0);
}
close $wr;
my $line = <$rd> // '';
close $rd;
my ($orphan_pid, $orphan_port) = $line =~ /^(\d+) (\d+)$/;
ok($orphan_pid, 'a helper process started a proxy');
SKIP:
{
	skip 'the helper could not start its proxy', 3 unless $orphan_pid;
	ok(!port_refuses($orphan_port), 'that proxy accepts connections');
	kill 'KILL', $helper;
	waitpid($helper, 0);
	ok(wait_until(sub { process_gone($orphan_pid) }),
		'once the helper is killed, its proxy ends by itself');
	ok(port_refuses($orphan_port), 'and its port refuses connections');
	kill 'KILL', $orphan_pid unless process_gone($orphan_pid);
}
waitpid($helper, WNOHANG);

$node->stop;

done_testing();
