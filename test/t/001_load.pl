# Copyright (c) pg_raft contributors
#
# 001_load.pl: pg_raft works only when preloaded.
#
# Promise 5 (nothing crashes on bad input, errors say what to do): loading
# the library into a server that does not preload it is an operator error.
# CREATE EXTENSION must fail cleanly, with an errcode, a message and a hint
# that names the setting to change, and leave the session and the server
# running.  With shared_preload_libraries set, the same command works.

use strict;
use warnings;

use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The version the library reports comes from the control file (see Makefile).
my $control = slurp_file(dirname(__FILE__) . '/../../pg_raft.control');
my ($version) = $control =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $version, "control file names a default_version");

# A node that does not preload pg_raft.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;

my ($ret, $stdout, $stderr) = $plain->psql(
	'postgres', q{
\set VERBOSITY verbose
CREATE EXTENSION pg_raft;
SELECT 'session still usable';
},
	on_error_stop => 0);

like(
	$stderr,
	qr/ERROR:  55000: pg_raft must be loaded via "shared_preload_libraries"/,
	'CREATE EXTENSION without preloading fails with SQLSTATE 55000');
like(
	$stderr,
	qr/HINT:  Add pg_raft to the "shared_preload_libraries" setting in postgresql\.conf and restart the server\./,
	'the error hints at the setting to change');
like($stdout, qr/session still usable/, 'the session survives the error');

is( $plain->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_extension WHERE extname = 'pg_raft'}),
	'0',
	'the failed CREATE EXTENSION left no extension behind');
is( $plain->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_namespace WHERE nspname = 'raft'}),
	'0',
	'nor its schema');

# A library whose _PG_init failed is not recorded as loaded: a second
# attempt in the same session, and a plain LOAD, fail the same way.
($ret, $stdout, $stderr) = $plain->psql(
	'postgres', q{
CREATE EXTENSION pg_raft;
LOAD 'pg_raft';
},
	on_error_stop => 0);
my @refusals = $stderr =~ /pg_raft must be loaded via "shared_preload_libraries"/g;
is(scalar @refusals, 2, 'a second CREATE EXTENSION and a LOAD are refused too');

is($plain->safe_psql('postgres', 'SELECT 1'), '1', 'the server keeps running');
$plain->stop;

# A node that preloads pg_raft.
my $node = PostgreSQL::Test::Cluster->new('preloaded');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_raft'");
$node->start;

($ret, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE EXTENSION pg_raft;', on_error_stop => 0);
is($ret, 0, 'CREATE EXTENSION works when preloaded');
is($stderr, '', 'without errors or warnings');

is($node->safe_psql('postgres', 'SELECT raft.version()'),
	$version, "raft.version() returns $version");
is( $node->safe_psql(
		'postgres',
		q{SELECT n.nspname FROM pg_extension e
		    JOIN pg_namespace n ON n.oid = e.extnamespace
		   WHERE e.extname = 'pg_raft'}),
	'raft',
	'the extension lives in schema raft');

$node->stop;

done_testing();
