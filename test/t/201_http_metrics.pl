# Copyright (c) pg_raft contributors
#
# 201_http_metrics.pl: the health API's /status and /metrics, and the
# same metrics through SQL and prometheus-postgres-exporter:
#   - /status and /metrics ask for basic authentication when raft.http_user
#     is set (401 without it or with a wrong password), the checks do not;
#     a reload changes the password;
#   - /status is JSON with what raft.status and raft.nodes show;
#   - /metrics passes promtool's parser and linter on the leader, on a
#     follower and on a follower with its apply worker stopped, and agrees
#     with raft.metrics; scraping it and /status does not grow the
#     worker's memory;
#   - after kill -9 of the leader, the new leader counts the election it
#     won, the others a leader change, and commits fill the commit latency
#     histogram;
#   - with raft.http_ssl_cert_file and raft.http_ssl_key_file the API
#     speaks HTTPS (curl checks the certificate), and plain HTTP gets no
#     answer;
#   - prometheus-postgres-exporter with docs/prometheus-postgres-exporter.yaml
#     serves pg_raft's metrics, parsed by promtool;
#   - docs/prometheus-alerts.yml passes promtool check rules, and its
#     tests (test/prometheus/alerts_test.yml) pass promtool test rules.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

# the Debian packages put some of them in /usr/sbin
$ENV{PATH} .= ':/usr/sbin' unless ":$ENV{PATH}:" =~ m{:/usr/sbin:};
foreach my $tool (qw(promtool curl openssl prometheus-postgres-exporter))
{
	BAIL_OUT("$tool is not installed (.ci/install-deps installs it)")
	  if system("command -v $tool > /dev/null") != 0;
}

my $dir = PostgreSQL::Test::Utils::tempdir();
system_or_bail('openssl', 'req', '-new', '-x509', '-days', '1', '-nodes',
	'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
	'-keyout', "$dir/http.key", '-out', "$dir/http.crt");
chmod 0600, "$dir/http.key";

my $http = HTTP::Tiny->new(timeout => 10);
my %http_port;
my @nodes;
foreach my $name (qw(n1 n2 n3))
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $tls = $name eq 'n3'
	  ? "raft.http_ssl_cert_file = '$dir/http.crt'\nraft.http_ssl_key_file = '$dir/http.key'\n"
	  : '';
	push @nodes, RaftCluster::new_node($name, qq{
raft.http_listen = '127.0.0.1:$port'
raft.http_user = 'monitor'
raft.http_password = 'secret one'
$tls});
	$http_port{$name} = $port;
}
my $tls_node = $nodes[2];

# get(NODE, PATH, CREDENTIALS): the answer (HTTP::Tiny's hash), over HTTP
sub get
{
	my ($node, $path, $credentials) = @_;
	my %headers;
	$headers{Authorization} = 'Basic ' . encode_base64($credentials, '')
	  if defined $credentials;
	return $http->get("http://127.0.0.1:$http_port{$node->name}$path",
		{ headers => \%headers });
}

# get_ok(NODE, PATH): the body of a 200 answer, with the password (over
# HTTPS, through curl, on the TLS node)
my $password = 'secret one';
sub get_ok
{
	my ($node, $path) = @_;
	if ($node == $tls_node)
	{
		my ($rc, $body, $err) = curl('--fail', '--cacert', "$dir/http.crt",
			'--user', "monitor:$password",
			"https://127.0.0.1:$http_port{$node->name}$path");
		die "GET $path on " . $node->name . ": curl exited with $rc: $err" if $rc != 0;
		return $body;
	}
	my $r = get($node, $path, "monitor:$password");
	die "GET $path on " . $node->name . ": $r->{status} $r->{content}"
	  unless $r->{status} == 200;
	return $r->{content};
}

# curl(ARGS): curl's exit status, output and errors
sub curl
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '--silent', '--show-error', '--max-time', '10', @args ],
		'>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

# promtool_check(TEXT): promtool check metrics's exit status and output
sub promtool_check
{
	my ($text) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'promtool', 'check', 'metrics' ], '<', \$text, '>', \$out, '2>', \$err);
	return ($? >> 8, $out . $err);
}

# sample(TEXT, NAME, MEMBER): the value of one sample of a text that
# promtool has parsed already; undef when absent
sub sample
{
	my ($text, $name, $member) = @_;
	my $labels = defined $member ? qq(\\{member="\Q$member\E"\\}) : '';
	return $text =~ /^\Q$name\E$labels (\S+)$/m ? $1 + 0 : undef;
}

$nodes[0]->safe_psql('postgres', q{CREATE TABLE t (id integer PRIMARY KEY)});
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
$leader->safe_psql('postgres', "INSERT INTO t SELECT generate_series(1, 10)");
RaftCluster::wait_for_apply($leader, @nodes);
my ($follower) = grep { $_ != $leader && $_ != $tls_node } @nodes;
die "no plain-HTTP follower" unless defined $follower;

# Authentication: /status and /metrics ask, the checks do not.
foreach my $path (qw(/status /metrics))
{
	my $r = get($leader, $path);
	is($r->{status}, 401, "$path without credentials is 401");
	like($r->{headers}{'www-authenticate'} // '', qr/^Basic realm="pg_raft"/,
		'... asking for basic authentication');
	is(get($leader, $path, 'monitor:wrong')->{status}, 401, "$path with a wrong password is 401");
	is(get($leader, $path, 'someone:secret one')->{status}, 401, "$path with a wrong user is 401");
	is(get($leader, $path, 'monitor:secret one')->{status}, 200, "$path with the password is 200");
}
is(get($leader, '/leader')->{status}, 200, 'the checks ask for no credentials');

# /status: JSON with what raft.status and raft.nodes say.
my $status = decode_json(get_ok($leader, '/status'));
my ($term, $commit) = split /\|/,
  $leader->safe_psql('postgres', 'SELECT term, commit_index FROM raft.status');
is($status->{node_name}, $leader->name, '/status names the node');
is($status->{role}, 'leader', '... says it leads');
ok($status->{writable}, '... and takes writes');
is($status->{term}, $term, '... with the term of raft.status');
ok($status->{commit_index} >= $commit, '... and its commit index');
is(scalar @{ $status->{members} }, 3, '... and three members');
ok((grep { $_->{reachable} && defined $_->{lag_entries} } @{ $status->{members} }) == 3,
	'... all reachable, with their lag measured');
ok(!grep({ exists $_->{conninfo} } @{ $status->{members} }),
	'... without conninfo strings (they may hold passwords)');
my $fstatus = decode_json(get_ok($follower, '/status'));
is($fstatus->{role}, 'follower', 'a follower\'s /status says it follows');
is($fstatus->{leader_name}, $leader->name, '... and names the leader');
ok(!$fstatus->{writable} && length($fstatus->{not_writable_reason}) > 0,
	'... not writable, saying why');
ok(!defined $fstatus->{members}[0]{lag_entries},
	'... with lag left null (only the leader measures it)');

# /metrics: promtool parses and lints it, and it agrees with raft.metrics.
my $metrics = get_ok($leader, '/metrics');
my ($rc, $out) = promtool_check($metrics);
is($rc, 0, 'promtool check metrics passes on the leader') or diag($out);
is(sample($metrics, 'pg_raft_leader'), 1, '... pg_raft_leader is 1');
is(sample($metrics, 'pg_raft_writable'), 1, '... pg_raft_writable is 1');
is(sample($metrics, 'pg_raft_members_reachable'), 3, '... three members reachable');
is(sample($metrics, 'pg_raft_term'), $term, '... the term is raft.status\'s');
foreach my $node (@nodes)
{
	ok(defined sample($metrics, 'pg_raft_member_lag_entries', $node->name),
		'... lag in entries of ' . $node->name);
}
ok(sample($metrics, 'pg_raft_log_sync_seconds_count') > 0, '... log syncs counted');
is($leader->safe_psql('postgres',
		"SELECT value FROM raft.metrics WHERE metric = 'pg_raft_term'"),
	$term, 'raft.metrics shows the same term');

my $fmetrics = get_ok($follower, '/metrics');
($rc, $out) = promtool_check($fmetrics);
is($rc, 0, 'promtool check metrics passes on a follower') or diag($out);
is(sample($fmetrics, 'pg_raft_leader'), 0, '... pg_raft_leader is 0');
is(sample($fmetrics, 'pg_raft_leader_known'), 1, '... it hears its leader');
ok(!defined sample($fmetrics, 'pg_raft_member_lag_entries', $leader->name),
	'... and shows no lag per member (only the leader measures it)');

# Answers allocate per request, and free it: 500 more scrapes of /metrics
# and /status leave the worker's resident memory where it was (each
# allocated tens of kilobytes).
sub rss_kb
{
	my ($pid) = @_;
	return slurp_file("/proc/$pid/status") =~ /^VmRSS:\s+(\d+) kB/m ? $1 : die "no VmRSS for $pid";
}
# the worker has no PGPROC, so it is not in pg_stat_activity: find it by its title
my ($http_pid) = grep { slurp_file("/proc/$_/cmdline") =~ /pg_raft http/ }
  split ' ', `pgrep -P $leader->{_pid}`;
die 'the health API\'s worker is not found' unless defined $http_pid;
get_ok($leader, $_ % 2 ? '/metrics' : '/status') foreach 1 .. 50;
my $rss_before = rss_kb($http_pid);
get_ok($leader, $_ % 2 ? '/metrics' : '/status') foreach 1 .. 500;
my $rss_after = rss_kb($http_pid);
ok($rss_after - $rss_before < 2048,
	"500 scrapes leave the health API's memory bounded ($rss_before kB, then $rss_after kB)");

# A follower whose apply worker is stopped: its lag shows.
my $apply_pid = $follower->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_raft apply worker'");
kill 'STOP', $apply_pid;
$leader->safe_psql('postgres', "INSERT INTO t VALUES (100)");
ok(RaftCluster::wait_until(sub {
			my $m = get_ok($follower, '/metrics');
			return sample($m, 'pg_raft_replay_lag_seconds') > 0.5
			  && sample($m, 'pg_raft_commit_index') > sample($m, 'pg_raft_applied_index');
		}),
	'with its apply worker stopped, a follower\'s replay lag and unapplied entries show');
($rc, $out) = promtool_check(get_ok($follower, '/metrics'));
is($rc, 0, '... and promtool still passes') or diag($out);
ok(RaftCluster::wait_until(sub {
			my $m = get_ok($leader, '/metrics');
			my $lag = sample($m, 'pg_raft_member_replay_lag_seconds', $follower->name);
			return defined $lag && $lag > 0.5;
		}),
	'... the leader sees that member\'s replay lag too');
kill 'CONT', $apply_pid;
ok(RaftCluster::wait_until(sub { sample(get_ok($follower, '/metrics'), 'pg_raft_replay_lag_seconds') == 0 }),
	'applying again, its replay lag is back to 0');

# A reload changes the password.
$_->append_conf('postgresql.conf', "raft.http_password = 'secret two'\n") foreach @nodes;
$_->reload foreach @nodes;
ok(RaftCluster::wait_until(sub { get($leader, '/status', 'monitor:secret one')->{status} == 401 }),
	'after a reload, the old password is refused');
is(get($leader, '/status', 'monitor:secret two')->{status}, 200, '... and the new one taken');
$password = 'secret two';

# HTTPS on the TLS node: curl checks its certificate.
my $tls_port = $http_port{ $tls_node->name };
my ($curl_rc, $curl_out) = curl('--cacert', "$dir/http.crt", '--user', "monitor:$password",
	'--write-out', '%{http_code}', '--output', '/dev/null', "https://127.0.0.1:$tls_port/status");
is("$curl_rc $curl_out", '0 200', 'over HTTPS, /status is 200 with a certificate that verifies');
($curl_rc, $curl_out) = curl('--cacert', "$dir/http.crt", '--write-out', '%{http_code}',
	'--output', '/dev/null', "https://127.0.0.1:$tls_port/health");
is("$curl_rc $curl_out", '0 200', '... and /health too');
($curl_rc, $curl_out) = curl('--cacert', "$dir/http.crt", '--write-out', '%{http_code}',
	'--output', '/dev/null', "https://127.0.0.1:$tls_port/metrics");
is($curl_out, '401', '... /metrics without credentials is 401');
($curl_rc) = curl("https://127.0.0.1:$tls_port/health");
isnt($curl_rc, 0, '... a client that does not trust the certificate is refused');
($curl_rc) = curl("http://127.0.0.1:$tls_port/health");
isnt($curl_rc, 0, '... and plain HTTP gets no answer');

# kill -9 of the leader: the new leader counts the election it won, the
# others a leader change, and commits fill the commit latency histogram.
my @survivors = grep { $_ != $leader } @nodes;
my %changes_before = map {
	$_->name => sample(get_ok($_, '/metrics'), 'pg_raft_leader_changes_total')
} @survivors;
my %won_before = map {
	$_->name => sample(get_ok($_, '/metrics'), 'pg_raft_elections_won_total')
} @survivors;
$leader->stop('immediate');
my $new_leader = RaftCluster::wait_for_leader(@survivors);
# one entry per transaction, each observed once a majority holds it
$new_leader->safe_psql('postgres', "INSERT INTO t VALUES ($_)") foreach 200 .. 204;
my $nm;
ok(RaftCluster::wait_until(sub {
			$nm = get_ok($new_leader, '/metrics');
			return sample($nm, 'pg_raft_commit_seconds_count') >= 5;
		}),
	'the new leader\'s commits fill the commit latency histogram');
is(sample($nm, 'pg_raft_elections_won_total'), $won_before{ $new_leader->name } + 1,
	'... it counts the election it won');
ok(sample($nm, 'pg_raft_elections_total') >= 1, '... and the elections it started');
foreach my $node (@survivors)
{
	ok(sample(get_ok($node, '/metrics'), 'pg_raft_leader_changes_total') > $changes_before{ $node->name },
		$node->name . ' counts a leader change');
}
is(sample($nm, 'pg_raft_members_reachable'), 2, '... two members reachable');
is(sample($nm, 'pg_raft_member_reachable', $leader->name), 0,
	'... the killed one is not');
($rc, $out) = promtool_check($nm);
is($rc, 0, 'promtool check metrics passes on the new leader') or diag($out);
$leader->start;
RaftCluster::wait_for_apply($new_leader, @nodes);

# prometheus-postgres-exporter with the shipped queries file, as a role of
# pg_monitor.
$new_leader->safe_psql('postgres', 'CREATE ROLE exporter LOGIN IN ROLE pg_monitor');
my $exporter_port = PostgreSQL::Test::Cluster::get_free_port();
my $queries = "$FindBin::RealBin/../../docs/prometheus-postgres-exporter.yaml";
my ($exp_out, $exp_err) = ('', '');
my $exporter = IPC::Run::start(
	[ 'timeout', '300', 'prometheus-postgres-exporter',
		"--extend.query-path=$queries",
		"--web.listen-address=127.0.0.1:$exporter_port",
		'--disable-default-metrics', '--disable-settings-metrics' ],
	'>', \$exp_out, '2>', \$exp_err,
	init => sub {
		$ENV{DATA_SOURCE_NAME} = 'host=127.0.0.1 port=' . $new_leader->port
		  . ' dbname=postgres user=exporter sslmode=disable';
	});
my $scraped = '';
ok(RaftCluster::wait_until(sub {
			my $r = $http->get("http://127.0.0.1:$exporter_port/metrics");
			$scraped = $r->{content} // '';
			return $r->{status} == 200 && $scraped =~ /^pg_raft_term\{/m;
		}),
	'prometheus-postgres-exporter serves pg_raft_term') or diag($exp_err);
$exporter->kill_kill;
($rc, $out) = promtool_check($scraped);
is($rc, 0, '... in a text promtool parses and lints') or diag($out);
my ($exp_term) = $scraped =~ /^pg_raft_term\{[^}]*\} (\S+)$/m;
is($exp_term, $new_leader->safe_psql('postgres', 'SELECT term FROM raft.status'),
	'... with the term of raft.status');
like($scraped, qr/^pg_raft_leader\{[^}]*\} 1$/m, '... pg_raft_leader 1 on the leader');
like($scraped, qr/^pg_raft_member_lag_entries\{member="n\d",[^}]*\} \d+$/m,
	'... the lag of each member');
like($scraped, qr/^pg_raft_latency_commit_seconds_bucket\{[^}]*le="0.01"\} \d+$/m,
	'... and the commit latency histogram');
unlike($exp_err, qr/level=error/, '... and logs no error');

# The alerting rules shipped in docs/ load, and fire as their tests say.
foreach my $check ([ 'check', 'rules', "$FindBin::RealBin/../../docs/prometheus-alerts.yml" ],
	[ 'test', 'rules', "$FindBin::RealBin/../prometheus/alerts_test.yml" ])
{
	my ($tool_out, $tool_err) = ('', '');
	IPC::Run::run([ 'promtool', @$check ], '>', \$tool_out, '2>', \$tool_err);
	is($? >> 8, 0, "promtool $check->[0] $check->[1] passes on the shipped alerting rules")
	  or diag($tool_out . $tool_err);
}

$_->stop foreach @nodes;
done_testing();
