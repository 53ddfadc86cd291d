# Copyright (c) pg_raft contributors
#
# 070_tls.pl: members talk over TLS when their conninfo asks for it.
#
# The transport is libpq to the peers' ordinary port, so PostgreSQL's own
# TLS protects the cluster: with sslmode=verify-full in every member's
# conninfo the raft workers connect over TLS and check the certificate;
# a conninfo that asks for TLS from a server without it is refused with a
# clear error.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;

if (system('openssl version > /dev/null 2>&1') != 0)
{
	plan skip_all => 'openssl is not installed';
}

# One self-signed certificate for 127.0.0.1, shared by the three servers
# and trusted by their raft workers as the root.
my $dir = PostgreSQL::Test::Utils::tempdir();
system_or_bail('openssl', 'req', '-new', '-x509', '-days', '1', '-nodes',
	'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
	'-keyout', "$dir/server.key", '-out', "$dir/server.crt");
chmod 0600, "$dir/server.key";

my @nodes = map {
	RaftCluster::new_node($_, qq{
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
})
} qw(n1 n2 n3);
foreach my $node (@nodes)
{
	$node->{raft_conninfo} = RaftCluster::conninfo($node)
	  . " sslmode=verify-full sslrootcert=$dir/server.crt";
}
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
ok(RaftCluster::barrier($leader) > 0, 'a cluster over TLS commits');

foreach my $node (@nodes)
{
	$node->poll_query_until('postgres', q{
		SELECT count(*) >= 1 AND bool_and(s.ssl)
		  FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
		 WHERE a.application_name LIKE 'pg_raft node %'})
	  or die $node->name . ' has no TLS connection from a raft worker';
	pass($node->name . ' receives raft messages over TLS only');
}

# A member whose conninfo demands TLS from a server without it.
my $plain = RaftCluster::new_node('plain');
my ($ret, $out, $err) = $plain->psql('postgres',
	"SELECT raft.join_cluster('plain', '"
	  . RaftCluster::conninfo($plain) . " sslmode=require', '"
	  . $leader->{raft_conninfo} . "')");
like($err, qr/could not connect to this node with the given conninfo/,
	'a conninfo that asks for TLS from a server without it is refused');
like($err, qr/server does not support SSL/, 'and libpq says why');

done_testing();
