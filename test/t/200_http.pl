# Copyright (c) pg_raft contributors
#
# 200_http.pl: the health API (raft.http_listen) answers as the fence and
# the apply worker stand, on every member:
#   - before the cluster forms: /health 200, /leader and /replica 503;
#   - on the leader: /leader, /primary, /read-write 200 (HEAD too),
#     /replica 503; on a follower the other way round;
#   - /replica?lag=: a follower whose apply worker is stopped goes over a
#     bound of 1 s and of 2 entries (503), and comes back within them;
#   - a leader whose raft worker is frozen loses its lease: /leader 503,
#     and /status and /metrics say it leads and does not take writes;
#   - so does a leader whose followers are gone, as the fence refuses its
#     writes, and /status and /metrics say it does not take writes; 200
#     again once they are back;
#   - bad requests get 400, 404 or 405; a client that sends half a request
#     and waits stalls no one;
#   - a raft.http_listen that is no address:port is reported in the log,
#     and no health API runs; so are TLS settings that cannot work.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use HTTP::Tiny;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;
use Time::HiRes qw(usleep);

my $http = HTTP::Tiny->new(timeout => 10);
my %http_port;
my @nodes;
foreach my $name (qw(n1 n2 n3))
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $node = RaftCluster::new_node($name, "raft.http_listen = '127.0.0.1:$port'\n");
	$http_port{$name} = $port;
	push @nodes, $node;
}

# get(NODE, PATH, METHOD): the answer's status and body
sub get
{
	my ($node, $path, $method) = @_;
	my $r = $http->request($method // 'GET',
		"http://127.0.0.1:$http_port{$node->name}$path");
	return ($r->{status}, $r->{content}, $r);
}

# status_of(NODE, PATH): the status alone
sub status_of { return (get(@_))[0]; }

# wait_for_status(NODE, PATH, STATUS): polls until PATH answers STATUS
sub wait_for_status
{
	my ($node, $path, $want) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return 1 if status_of($node, $path) == $want;
		usleep(100_000);
	}
	return 0;
}

# The worker starts with the server; answers before the cluster forms.
ok(wait_for_status($nodes[0], '/health', 200), 'before the cluster forms, /health is 200');
my ($code, $body) = get($nodes[0], '/leader');
is($code, 503, 'before the cluster forms, /leader is 503');
like($body, qr/not a member of a raft cluster/, '... saying that it is not a member');
is(status_of($nodes[0], '/replica'), 503, 'before the cluster forms, /replica is 503');

$nodes[0]->safe_psql('postgres', q{CREATE TABLE t (id integer PRIMARY KEY)});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my @followers = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres', q{INSERT INTO t VALUES (1)});
RaftCluster::wait_for_apply($leader, @nodes);

foreach my $path (qw(/leader /primary /read-write))
{
	is(status_of($leader, $path), 200, "leader: $path is 200");
	foreach my $f (@followers)
	{
		is(status_of($f, $path), 503, $f->name . ": $path is 503");
	}
}
my (undef, $head_body, $head) = get($leader, '/leader', 'HEAD');
ok($head->{status} == 200 && $head_body eq '', 'leader: HEAD /leader is 200 without a body');
($code, $body) = get($followers[0], '/leader');
like($body, qr/follows; the leader is "@{[ $leader->name ]}"/,
	'a follower\'s /leader names the leader');
is(status_of($leader, '/replica'), 503, 'leader: /replica is 503');
foreach my $f (@followers)
{
	foreach my $path (qw(/replica /read-only /replica?lag=10s /replica?lag=1000))
	{
		ok(wait_for_status($f, $path, 200), $f->name . ": $path is 200");
	}
}
is(status_of($_, '/health'), 200, $_->name . ': /health is 200') foreach @nodes;

# Bad requests.
my ($bad, undef, $bad_r) = get($leader, '/leader', 'POST');
is($bad, 405, 'POST is 405');
is($bad_r->{headers}{allow}, 'GET, HEAD', '... with Allow: GET, HEAD');
is(status_of($leader, '/nowhere'), 404, 'an unknown path is 404');
foreach my $lag ('abc', '-1', '1.5', '10parsecs', '')
{
	is(status_of($followers[0], "/replica?lag=$lag"), 400, "lag=$lag is 400");
}
my $garbage = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
	PeerPort => $http_port{ $leader->name }, Timeout => 10)
  or die "connect: $!";
print $garbage "NOT A REQUEST\r\n\r\n";
my $line = <$garbage> // '';
like($line, qr{^HTTP/1\.[01] 400}, 'a malformed request line is 400');
close $garbage;

# Half a request, held open: the others are answered meanwhile.
my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
	PeerPort => $http_port{ $leader->name }, Timeout => 10)
  or die "connect: $!";
print $slow "GET /lea";
$slow->flush;
is(status_of($leader, '/leader'), 200, 'a client sending half a request stalls no one');
close $slow;

# A follower whose apply worker is stopped falls behind, then catches up.
my $lagging = $followers[0];
my $apply_pid = $lagging->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_raft apply worker'");
ok($apply_pid > 0, 'the lagging follower\'s apply worker is found');
kill 'STOP', $apply_pid;
$leader->safe_psql('postgres', "INSERT INTO t VALUES ($_)") foreach 2 .. 5;
ok(wait_for_status($lagging, '/replica?lag=1s', 503),
	'with its apply worker stopped, /replica?lag=1s becomes 503');
($code, $body) = get($lagging, '/replica?lag=2');
is($code, 503, '... and /replica?lag=2 (entries) too');
like($body, qr/lagging: \d+ entries not applied/, '... saying how many entries it lacks');
is(status_of($lagging, '/replica'), 200, '... while /replica without a bound stays 200');
is(status_of($followers[1], '/replica?lag=1s'), 200, 'the other follower stays within 1 s');
kill 'CONT', $apply_pid;
ok(wait_for_status($lagging, '/replica?lag=1s', 200), 'applying again, it is back within 1 s');
ok(wait_for_status($lagging, '/replica?lag=0', 200), '... and within 0 entries');

# A leader whose raft worker is frozen still calls itself leader in
# shared memory, but its lease runs out: /status and /metrics say it
# leads and does not take writes.  (With its followers gone instead, it
# would also step down an election timeout or two later, so what /status
# says of its role there depends on when it is asked.)
my $worker_pid = $leader->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
kill 'STOP', $worker_pid;
ok(wait_for_status($leader, '/leader', 503), 'with its raft worker frozen, the leader\'s /leader becomes 503');
($code, $body) = get($leader, '/status');
ok($code == 200 && $body =~ /"role":"leader"/ && $body =~ /"writable":false/
	  && $body =~ /"not_writable_reason":"[^"]*lease ran out/,
	'... /status says it leads, does not take writes, and why');
($code, $body) = get($leader, '/metrics');
ok($code == 200 && $body =~ /^pg_raft_leader 1$/m && $body =~ /^pg_raft_writable 0$/m,
	'... and /metrics says it leads and does not take writes');
kill 'CONT', $worker_pid;
$leader = RaftCluster::wait_for_leader(@nodes);
@followers = grep { $_ != $leader } @nodes;
ok(wait_for_status($leader, '/leader', 200), 'thawed, the cluster has a writable leader again');

# A leader whose followers are gone loses its lease: not writable.
$_->stop('immediate') foreach @followers;
ok(wait_for_status($leader, '/leader', 503), 'with its followers gone, the leader\'s /leader becomes 503');
($code, $body) = get($leader, '/leader');
like($body, qr/^not the writable leader: /, '... saying why');
my ($ret, undef, $stderr) = $leader->psql('postgres',
	"SET statement_timeout = '30s'; INSERT INTO t VALUES (100)");
ok($ret != 0 && $stderr =~ /read-only transaction/, '... and the fence refuses its writes');
is(status_of($leader, '/health'), 200, '... while /health stays 200');
($code, $body) = get($leader, '/status');
ok($code == 200 && $body =~ /"writable":false/ && $body =~ /"not_writable_reason":"[^"]+"/,
	'... /status says it does not take writes, and why');
($code, $body) = get($leader, '/metrics');
ok($code == 200 && $body =~ /^pg_raft_writable 0$/m, '... and /metrics too');
$_->start foreach @followers;
$leader = RaftCluster::wait_for_leader(@nodes);
ok(wait_for_status($leader, '/leader', 200), 'with the followers back, the leader\'s /leader is 200');
$leader->safe_psql('postgres', 'INSERT INTO t VALUES (101)');
is($leader->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 101'), '1',
	'and the writable leader takes writes');

$_->stop foreach @nodes;

# A setting that names no address and port: PostgreSQL reports it when
# the library defines the setting, keeps the default (no health API) and
# starts.
my $n_bad = 0;
foreach my $case (['localhost:8008', qr/"localhost" is not an IP address/],
	['127.0.0.1:99999', qr/The port must be a number from 1 to 65535/],
	['127.0.0.1', qr/It must be address:port/])
{
	my ($value, $detail) = @$case;
	my $bad = PostgreSQL::Test::Cluster->new('bad' . ++$n_bad);
	$bad->init;
	$bad->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pg_raft'\nraft.http_listen = '$value'\n");
	$bad->start;
	my $log = slurp_file($bad->logfile);
	ok($log =~ /invalid value for parameter "raft.http_listen": "\Q$value\E"/ && $log =~ $detail,
		"raft.http_listen = '$value' is reported, saying why");
	is($bad->safe_psql('postgres',
			"SELECT current_setting('raft.http_listen') || '/' || count(*) FROM pg_stat_activity WHERE backend_type = 'pg_raft http'"),
		'/0', '... and no health API runs');
	$bad->stop;
}
# TLS settings that cannot work: the worker says why in the log, and tries
# again; the server runs on.
my $dir = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$dir/junk.pem", "not a certificate\n");
foreach my $case (['files that are not there',
		"raft.http_ssl_cert_file = '$dir/missing.crt'\nraft.http_ssl_key_file = '$dir/missing.key'\n",
		qr/could not open file "\Q$dir\E\/missing.crt" named by "raft.http_ssl_cert_file"/],
	['a certificate without its key', "raft.http_ssl_cert_file = '$dir/junk.pem'\n",
		qr/raft.http_ssl_cert_file and raft.http_ssl_key_file must be set together/],
	['files that hold no certificate',
		"raft.http_ssl_cert_file = '$dir/junk.pem'\nraft.http_ssl_key_file = '$dir/junk.pem'\n",
		qr/could not listen on .*\n.*HINT:.*hold a PEM certificate and its key/])
{
	my ($what, $conf, $message) = @$case;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $bad = PostgreSQL::Test::Cluster->new('tls' . ++$n_bad);
	$bad->init;
	$bad->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pg_raft'\nraft.http_listen = '127.0.0.1:$port'\n$conf");
	$bad->start;
	ok(RaftCluster::wait_until(sub { slurp_file($bad->logfile) =~ $message }),
		"TLS settings naming $what are reported");
	is($bad->safe_psql('postgres', 'SELECT 1'), '1', '... and the server runs on');
	$bad->stop;
}
done_testing();
