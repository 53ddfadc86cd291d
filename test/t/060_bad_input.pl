# Copyright (c) pg_raft contributors
#
# 060_bad_input.pl: bad bytes on the wire and on disk, and a dying worker.
#
# Promise 5 (nothing crashes on bad input): a replayed, corrupted, foreign
# or misaddressed message handed to raft.deliver() gets an ERROR that says
# what is wrong, and the node's Raft state is untouched; a torn end of the
# log is cut off at start-up with a LOG line; damage in the middle of the
# log stops the worker with an error naming the file, while the rest of the
# cluster carries on; a worker that dies is started again.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RaftCluster;
use Test::More;
use Time::HiRes qw(usleep);

# CRC-32C (Castagnoli), as the frame and the message carry it.
sub crc32c
{
	my ($data) = @_;
	my $crc = 0xFFFFFFFF;
	foreach my $byte (unpack('C*', $data))
	{
		$crc ^= $byte;
		$crc = ($crc >> 1) ^ (($crc & 1) ? 0x82F63B78 : 0) for 1 .. 8;
	}
	return $crc ^ 0xFFFFFFFF;
}

# reseal(FRAME): recomputes the message's and the frame's checksums after
# the test changed a field.  Frame: 32-byte header, message, CRC.
sub reseal
{
	my ($frame) = @_;
	my $msg = substr($frame, 32, length($frame) - 36);
	substr($msg, -4) = pack('V', crc32c(substr($msg, 0, -4)));
	my $body = substr($frame, 0, 32) . $msg;
	return $body . pack('V', crc32c($body));
}

sub deliver
{
	my ($node, $frame) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT raft.deliver('\\x" . unpack('H*', $frame) . "'::bytea)");
	return $err;
}

my @nodes = map { RaftCluster::new_node($_) } qw(n1 n2 n3);
RaftCluster::form_cluster(@nodes);
my $leader = RaftCluster::wait_for_leader(@nodes);
my ($n2) = grep { $_->name eq 'n2' } @nodes;
my ($n3) = grep { $_->name eq 'n3' } @nodes;

# Capture one real frame that the leader sent to n2.
$n2->safe_psql('postgres', "ALTER SYSTEM SET log_statement = 'all'");
$n2->reload;
my $frame;
my $log_offset = -s $n2->logfile;
for (1 .. 200)
{
	my $log = slurp_file($n2->logfile, $log_offset);
	if ($log =~ /parameters: \$1 = '\\x(5246524d[0-9a-f]+)'/)
	{
		$frame = pack('H*', $1);
		last;
	}
	usleep(50_000);
}
$n2->safe_psql('postgres', 'ALTER SYSTEM RESET log_statement');
$n2->reload;
ok(defined $frame, 'captured a frame the leader sent to n2');
my $before = RaftCluster::status($n2);

like(deliver($n2, $frame), qr/ERROR:  replayed raft message from node \d+/,
	'a replayed frame is refused');

my $flipped = $frame;
substr($flipped, 40, 1) = chr(ord(substr($flipped, 40, 1)) ^ 0x55);
like(deliver($n2, $flipped), qr/ERROR:  raft message checksum mismatch/,
	'a frame with a flipped byte is refused');

like(deliver($n2, substr($frame, 0, 20)), qr/ERROR:  raft message is truncated/,
	'a truncated frame is refused');
like(deliver($n2, substr($frame, 0, length($frame) - 9)),
	qr/ERROR:  raft message checksum mismatch/,
	'a frame cut short is refused');

my $foreign = $frame;
substr($foreign, 32 + 8, 8) = pack('Q<', 12345);
like(deliver($n2, reseal($foreign)),
	qr/ERROR:  invalid raft message: message belongs to another cluster/,
	'a frame from another cluster is refused');

my $elsewhere = $frame;
substr($elsewhere, 32 + 24, 4) = pack('V', 99);
like(deliver($n2, reseal($elsewhere)),
	qr/ERROR:  raft message is addressed to node 99, but this is node \d+/,
	'a frame for another node is refused');

my $garbled = $frame;
substr($garbled, 32 + 5, 1) = chr(77);
like(deliver($n2, reseal($garbled)),
	qr/ERROR:  invalid raft message: message has an unknown type/,
	'a message of an unknown type is refused');

# None of it touched n2's Raft state, and the cluster commits on.
my $after = RaftCluster::status($n2);
is("$after->{term}/$after->{leader}/$after->{role}",
	"$before->{term}/$before->{leader}/$before->{role}",
	"n2's term, leader and role are unchanged");
ok(RaftCluster::barrier($leader) > 0, 'the cluster still commits');

# A torn end of the log is cut off at start-up, with a LOG line.
sub last_segment
{
	my ($node) = @_;
	my $dir = $node->data_dir . '/pg_raft/log';
	opendir(my $dh, $dir) or die "$dir: $!";
	my @files = sort grep { /^[0-9A-F]{16}$/ } readdir($dh);
	closedir($dh);
	return "$dir/$files[-1]";
}
# Where the records of a segment end: at its size, or at the zeros that
# make room for appends after them.
sub records_end
{
	my ($path) = @_;
	my $data = slurp_file($path);
	my $offset = 0;
	while ($offset + 25 <= length($data)
		&& substr($data, $offset, 25) ne "\0" x 25)
	{
		$offset += 25 + unpack('V', substr($data, $offset, 4));
	}
	return $offset;
}
$n3->stop;
my $segment = last_segment($n3);
my $end = records_end($segment);
ok($end > 0 && $end < -s $segment,
	'the last segment has room made ready after its records');
open(my $fh, '+<', $segment) or die $!;
binmode $fh;
seek($fh, $end, 0);
print $fh pack('V', 40) . ('x' x 30);
close($fh);
$log_offset = -s $n3->logfile;
$n3->start;
$n3->poll_query_until('postgres', q{SELECT count(*) = 1 FROM raft.status})
  or die 'n3 did not come back';
like(slurp_file($n3->logfile, $log_offset),
	qr/LOG:  truncated torn tail of raft log file "pg_raft\/log\/[0-9A-F]{16}" at offset \d+/,
	'a torn log tail is truncated with a LOG line');
$leader = RaftCluster::wait_for_leader(@nodes);
my $index = RaftCluster::barrier($leader);
$n3->poll_query_until('postgres', "SELECT commit_index >= $index FROM raft.status")
  or die 'n3 never caught up';
pass('n3 rejoins and catches up after its tail was cut');

# Damage in the middle of the log stops the worker and names the file:
# a record that fails its checksum, or a record header of zeros (which
# would otherwise end the log), with sound records after it.
sub overwrite
{
	my ($path, $offset, $bytes) = @_;
	open(my $fh, '+<', $path) or die "$path: $!";
	binmode $fh;
	seek($fh, $offset, 0);
	my $old;
	read($fh, $old, length($bytes));
	seek($fh, $offset, 0);
	print $fh $bytes;
	close($fh);
	return $old;
}
sub start_refused
{
	my ($what) = @_;
	$log_offset = -s $n3->logfile;
	$n3->start;
	my $log = '';
	for (1 .. 300)
	{
		$log = slurp_file($n3->logfile, $log_offset);
		last if $log =~ /is corrupted at offset/;
		usleep(50_000);
	}
	like($log,
		qr/ERROR:  raft log file "pg_raft\/log\/[0-9A-F]{16}" is corrupted at offset \d+/,
		"$what in the middle of the log is an error naming the file");
}
$n3->stop;
$segment = last_segment($n3);
my $header = overwrite($segment, 0, "\0" x 25);
start_refused('a record header of zeros');
$n3->stop;
overwrite($segment, 0, $header);
overwrite($segment, 30, "\xff\xff");
start_refused('a record that fails its checksum');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM raft.status'), '0',
	'the node does not claim a role with a log it cannot trust');
my @healthy = grep { $_ != $n3 } @nodes;
ok(RaftCluster::barrier(RaftCluster::wait_for_leader(@healthy)) > 0,
	'the two others carry on');
$n3->stop;

# A worker that is terminated is started again by the postmaster.
my $pid = $n2->safe_psql('postgres', 'SELECT worker_pid FROM raft.status');
kill 'TERM', $pid;
$n2->poll_query_until('postgres',
	"SELECT worker_pid IS NOT NULL AND worker_pid <> $pid FROM raft.status")
  or die 'the worker did not come back';
pass('a terminated worker is restarted');
ok(RaftCluster::barrier(RaftCluster::wait_for_leader(@healthy)) > 0,
	'and the cluster commits with it');

done_testing();
