#!/usr/bin/perl
#
# test/faults/flapping.pl: three pg_raft members in network namespaces of
# their own, a bank workload beside large transactions, and a fault
# applied and undone again and again.  Checks the promises that faults
# test: nothing acknowledged is lost, reads always see a consistent total,
# one leader per term, a bounded number of terms, and after healing every
# member is back, converges, and the cluster takes writes.
#
# The large transactions stream through the log while they run
# (logical_decoding_work_mem is at its least): each inserts a batch of
# rows, rolls a savepoint back, and commits or, one in four, rolls back.
# Reads on every member must never see part of a batch, and at the end
# every member holds every acknowledged batch whole and nothing of one
# rolled back.
#
# Usage, as root (the servers run as the unprivileged USER):
#
#	perl test/faults/flapping.pl [--seed N] [--duration S] [--period S]
#		[--fault KIND] [--kills] [--decoding MODE] [--user USER] [--keep]
#
# The fault, each round, for about a period (the seed decides the jitter):
#
#	leader-cut		(the default) the leader's link is down
#	follower-cut	a follower's link is down
#	freeze			the leader's whole instance is stopped (SIGSTOP of the
#					postmaster and its children), as a paused virtual
#					machine is, for two periods
#	freeze-worker	only the leader's raft worker is stopped, as long
#	kill-all		every member's postmaster is killed (kill -9) at once,
#					then all start again
#	double			the leader is cut off, and the member that leads next
#					is cut off too before the first is back
#	one-way			the leader's link drops what flows one way only: what
#					it sends, or what it is sent (the seed picks)
#	slow			the leader's link is slow both ways: 256 kbit/s, with
#					what waits over 50 ms dropped (tc tbf)
#	bridge			five members; members 1 and 2 cannot reach 4 and 5,
#					nor these them, while 3 reaches all (a bridge)
#
# --decoding sets raft.decoding on every member: walsender (this script's
# default), worker or auto.  With worker, the faults hit leaders whose
# decoding worker streams the large transactions.
#
# With --kills, each round also kills (kill -9) the postmaster of the
# member that leads once the cut-off one is back and repairs from it, and
# starts it again a period later: leaders die in the middle of repairs.
#
# Prints TAP ("ok N - ...", "not ok N - ..."), then one line of counts per
# campaign; exits non-zero if a check failed.  A failing run prints its
# seed: the same seed cuts the same members at the same moments.
#
# The network: namespace pgrhub holds a bridge (10.213.0.254/24) and the
# workload; namespaces pgr1..pgr3 (pgr5 for bridge) hold one member each
# (10.213.0.1..), linked to the bridge by a veth pair.  Cutting a member
# off is setting its bridge-side link down.  A one-way cut is a token
# bucket (tc tbf) that lets nothing through on one end of the pair; a
# cut between two members is a neighbour entry, in each one's namespace,
# that sends what it addresses to the other to a hardware address nobody
# has.  All of these drop packets silently, as a real network does.  Before anything else the root namespace gets
# a blackhole route for 10.213.0.0/24, and keeps it: nothing addressed to
# a test host ever leaves the machine, also after the namespaces are gone.
# Every server and process the run starts is stopped when it ends, however
# it ends.

use strict;
use warnings;

use DBI;
use File::Temp qw(tempdir);
use Getopt::Long;
use POSIX qw(:sys_wait_h);
use File::Spec;
use Time::HiRes qw(time sleep);

my %opt = (seed => 1, duration => 60, period => 1.5, user => 'pgraft',
	fault => 'leader-cut', decoding => 'walsender');
my %FAULTS = map { $_ => 1 }
  qw(leader-cut follower-cut freeze freeze-worker kill-all double one-way slow bridge);
GetOptions(\%opt, 'seed=i', 'duration=f', 'period=f', 'fault=s', 'kills', 'decoding=s',
	'user=s', 'keep', 'inner=s')
  && $FAULTS{ $opt{fault} }
  && $opt{decoding} =~ /^(walsender|worker|auto)$/
  or die "usage: $0 [--seed N] [--duration S] [--period S] [--fault "
  . join('|', sort keys %FAULTS)
  . "] [--kills] [--decoding walsender|worker|auto] [--user USER] [--keep]\n";

my $SUBNET = '10.213.0';
my $HUB = 'pgrhub';
my @NODES = $opt{fault} eq 'bridge' ? (1 .. 5) : (1 .. 3);
my $ACCOUNTS = 10;
my $BALANCE = 1000;
my $BATCH_ROWS = 20000;
my $bindir = `pg_config --bindir`;
chomp $bindir;

sub run
{
	my (@cmd) = @_;
	system(@cmd) == 0 or die "failed: @cmd\n";
	return;
}

# ---------------------------------------------------------------- outer
#
# In the root namespace: the route, the namespaces and links, then the
# campaign itself inside the hub, then the teardown.

if (!defined $opt{inner})
{
	die "$0: run me as root (I make network namespaces)\n" if $> != 0;
	getpwnam($opt{user}) or die "$0: user $opt{user} does not exist\n";
	system("ip route replace blackhole $SUBNET.0/24") == 0
	  or die "$0: could not add the blackhole route for $SUBNET.0/24\n";
	my $base = tempdir('/tmp/pg_raft-faults-XXXX');
	my (undef, undef, $uid, $gid) = getpwnam($opt{user});
	chown $uid, $gid, $base;
	teardown_network();
	setup_network();
	my $status = system('ip', 'netns', 'exec', $HUB, $^X, File::Spec->rel2abs($0),
		'--inner', $base, (map { ("--$_", $opt{$_}) } qw(seed duration period user fault decoding)),
		($opt{kills} ? ('--kills') : ()));
	stop_servers($base);
	teardown_network();
	if ($status == 0 && !$opt{keep})
	{
		system('rm', '-rf', $base);
	}
	else
	{
		print "# outputs kept in $base\n";
	}
	exit($status == 0 ? 0 : 1);
}

sub setup_network
{
	run('ip', 'netns', 'add', $HUB);
	run('ip', '-n', $HUB, 'link', 'set', 'lo', 'up');
	run('ip', '-n', $HUB, 'link', 'add', 'br0', 'type', 'bridge');
	run('ip', '-n', $HUB, 'addr', 'add', "$SUBNET.254/24", 'dev', 'br0');
	run('ip', '-n', $HUB, 'link', 'set', 'br0', 'up');
	foreach my $i (@NODES)
	{
		run('ip', 'netns', 'add', "pgr$i");
		run('ip', '-n', "pgr$i", 'link', 'set', 'lo', 'up');
		run('ip', 'link', 'add', "pgr${i}n", 'type', 'veth', 'peer', 'name', "pgr${i}h");
		run('ip', 'link', 'set', "pgr${i}n", 'netns', "pgr$i");
		run('ip', 'link', 'set', "pgr${i}h", 'netns', $HUB);
		run('ip', '-n', "pgr$i", 'addr', 'add', "$SUBNET.$i/24", 'dev', "pgr${i}n");
		run('ip', '-n', "pgr$i", 'link', 'set', "pgr${i}n", 'up');
		run('ip', '-n', $HUB, 'link', 'set', "pgr${i}h", 'master', 'br0');
		run('ip', '-n', $HUB, 'link', 'set', "pgr${i}h", 'up');
	}
	return;
}

sub teardown_network
{
	foreach my $ns ($HUB, map { "pgr$_" } 1 .. 5)
	{
		system("ip netns del $ns 2>/dev/null");
	}
	return;
}

sub stop_servers
{
	my ($base) = @_;
	foreach my $i (@NODES)
	{
		next unless -f "$base/n$i/postmaster.pid";
		system('runuser', '-u', $opt{user}, '--', "$bindir/pg_ctl", '-D', "$base/n$i",
			'-m', 'immediate', 'stop');
	}
	return;
}

# ---------------------------------------------------------------- inner
#
# In the hub namespace, as root: the servers (as the unprivileged user,
# each in its namespace), the workload, the cuts and the checks.

my $base = $opt{inner};
my $test_count = 0;
my $failures = 0;
my @children;

sub ok
{
	my ($cond, $name) = @_;
	$test_count++;
	print(($cond ? 'ok' : 'not ok') . " $test_count - $name\n");
	$failures++ unless $cond;
	return $cond;
}

sub as_user
{
	my ($ns, @cmd) = @_;
	return system('ip', 'netns', 'exec', $ns, 'runuser', '-u', $opt{user}, '--', @cmd);
}

sub conninfo
{
	my ($i, $extra) = @_;
	return "host=$SUBNET.$i port=5432 dbname=postgres user=$opt{user}"
	  . ($extra ? " $extra" : '');
}

# a connection that gives up quickly on a cut link
my $TIMEOUTS = 'connect_timeout=2 keepalives=1 keepalives_idle=1'
  . ' keepalives_interval=1 keepalives_count=2 tcp_user_timeout=2000';

sub connect_db
{
	my ($conninfo) = @_;
	return DBI->connect("dbi:Pg:$conninfo", '', '',
		{ RaiseError => 0, PrintError => 0, AutoCommit => 1 });
}

sub query_value
{
	my ($i, $sql) = @_;
	my $dbh = connect_db(conninfo($i, $TIMEOUTS)) or return undef;
	my ($value) = $dbh->selectrow_array($sql);
	$dbh->disconnect;
	return $value;
}

sub start_node
{
	my ($i) = @_;
	my $dir = "$base/n$i";
	as_user("pgr$i", "$bindir/initdb", '-D', $dir, '-A', 'trust', '--no-sync', '-U', $opt{user})
	  == 0 || die "initdb failed for n$i\n";
	mkdir "$base/sock$i";
	my (undef, undef, $uid, $gid) = getpwnam($opt{user});
	chown $uid, $gid, "$base/sock$i";
	open(my $conf, '>>', "$dir/postgresql.conf") or die;
	print $conf <<"EOF";
listen_addresses = '$SUBNET.$i'
port = 5432
unix_socket_directories = '$base/sock$i'
shared_preload_libraries = 'pg_raft'
output_plugin_libraries = 'pgoutput, test_decoding, pg_raft'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_connections = 50
logical_decoding_work_mem = '64kB'
raft.decoding = '$opt{decoding}'
log_line_prefix = '%m [%p] %a '
EOF
	close($conf);
	open(my $hba, '>>', "$dir/pg_hba.conf") or die;
	print $hba "host all all $SUBNET.0/24 trust\nhost replication all $SUBNET.0/24 trust\n";
	close($hba);
	as_user("pgr$i", "$bindir/pg_ctl", '-D', $dir, '-l', "$base/n$i.log", '-w', 'start') == 0
	  || die "could not start n$i\n";
	return;
}

sub safe_do
{
	my ($i, @sql) = @_;
	my $dbh = connect_db(conninfo($i)) or die "could not connect to n$i: $DBI::errstr\n";
	foreach my $sql (@sql)
	{
		$dbh->do($sql) or die "n$i: $sql: " . $dbh->errstr . "\n";
	}
	$dbh->disconnect;
	return;
}

# the member that leads and takes writes, or undef; of MEMBERS if given
sub find_leader
{
	my (@members) = @_;
	foreach my $i (@members ? @members : @NODES)
	{
		my $w = query_value($i, q{SELECT role = 'leader' AND writable FROM raft.status});
		return $i if defined $w && $w;
	}
	return undef;
}

sub wait_until
{
	my ($timeout, $check) = @_;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my $value = $check->();
		return $value if $value;
		sleep(0.2);
	}
	return undef;
}

# ---- the workload, each part a process of its own that writes a file

sub spawn
{
	my ($code) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# the servers' notices (a commit cut off in its wait) are expected
		$SIG{__WARN__} = sub { };
		srand($opt{seed} * 1000 + $$);
		$code->();
		POSIX::_exit(0);
	}
	push @children, $pid;
	return;
}

# the conninfo of a writer: every member, the one that takes writes found
sub writer_conninfo
{
	my $all = join(',', map { "$SUBNET.$_" } @NODES);
	my $ports = join(',', map { 5432 } @NODES);
	return "host=$all port=$ports dbname=postgres user=$opt{user}"
	  . " target_session_attrs=read-write $TIMEOUTS";
}

# writer(W, DEADLINE): transfers between random accounts through the
# multi-host conninfo, each with an id the client chose; the ids of those
# whose COMMIT returned are acknowledged.
sub writer
{
	my ($w, $deadline) = @_;
	open(my $out, '>', "$base/acked.$w") or die;
	$out->autoflush(1);
	my $ci = writer_conninfo();
	my $dbh;
	my $n = 0;
	while (time() < $deadline)
	{
		$dbh //= connect_db($ci);
		if (!$dbh)
		{
			sleep(0.05);
			next;
		}
		my $id = $w * 1_000_000_000 + ++$n;
		my $src = 1 + int(rand($ACCOUNTS));
		my $dst = 1 + ($src + int(rand($ACCOUNTS - 1))) % $ACCOUNTS;
		my $amount = 1 + int(rand(50));
		my $ok = $dbh->begin_work
		  && $dbh->do("INSERT INTO transfers VALUES ($id, $src, $dst, $amount)")
		  && $dbh->do("UPDATE accounts SET balance = balance - $amount WHERE id = $src")
		  && $dbh->do("UPDATE accounts SET balance = balance + $amount WHERE id = $dst")
		  && $dbh->commit;
		# DBD::Pg's commit returns true when the connection closed before
		# the server answered: only err tells
		if ($ok && !$dbh->err)
		{
			print $out "$id\n";
		}
		else
		{
			$dbh->disconnect;
			undef $dbh;
		}
	}
	close($out);
	return;
}

# batch_writer(DEADLINE): large transactions, one after the other, through
# the multi-host conninfo: each inserts a batch of BATCH_ROWS rows, then
# rows it rolls back to a savepoint, then commits or, one in four times,
# rolls back.  Writes "committed N" or "rolled back N" for each batch
# whose COMMIT or ROLLBACK returned.
sub batch_writer
{
	my ($deadline) = @_;
	open(my $out, '>', "$base/batches") or die;
	$out->autoflush(1);
	my $ci = writer_conninfo();
	my $dbh;
	my $batch = 0;
	while (time() < $deadline)
	{
		$dbh //= connect_db($ci);
		if (!$dbh)
		{
			sleep(0.1);
			next;
		}
		$batch++;
		my $commit = rand() >= 0.25;
		my $ok = $dbh->begin_work
		  && $dbh->do("INSERT INTO batches SELECT $batch, g, repeat('x', 60)"
			  . " FROM generate_series(1, $BATCH_ROWS) g")
		  && $dbh->do('SAVEPOINT part')
		  && $dbh->do("INSERT INTO batches SELECT $batch, g, 'rolled back'"
			  . " FROM generate_series($BATCH_ROWS + 1, $BATCH_ROWS + 2000) g")
		  && $dbh->do('ROLLBACK TO SAVEPOINT part')
		  && ($commit ? $dbh->commit : $dbh->rollback);
		if ($ok && !$dbh->err)
		{
			print $out ($commit ? 'committed' : 'rolled back') . " $batch\n";
		}
		else
		{
			$dbh->disconnect;
			undef $dbh;
		}
		sleep(0.2);
	}
	close($out);
	return;
}

# The batches of which a member holds part, as "batch:rows ...": none, ever.
# LATEST limits it to the last three batches there.
sub partial_batches
{
	my ($latest) = @_;
	return "SELECT coalesce(string_agg(batch || ':' || n, ' '), '') FROM"
	  . ' (SELECT batch, count(*) AS n FROM batches'
	  . ($latest ? ' WHERE batch >= (SELECT max(batch) - 2 FROM batches)' : '')
	  . " GROUP BY batch HAVING count(*) <> $BATCH_ROWS) partial";
}

# reader(I, DEADLINE): reads the total on member I, again and again, and
# now and then whether it shows part of the latest batches; writes the
# number of reads and each read whose total was wrong, or that saw part
# of a batch.
sub reader
{
	my ($i, $deadline) = @_;
	my ($reads, @wrong) = (0);
	my $dbh;
	while (time() < $deadline)
	{
		$dbh //= connect_db(conninfo($i, $TIMEOUTS));
		if (!$dbh)
		{
			sleep(0.1);
			next;
		}
		my ($sum, $count) = $dbh->selectrow_array(
			'SELECT sum(balance), count(*) FROM accounts');
		if (!defined $count)
		{
			$dbh->disconnect;
			undef $dbh;
			next;
		}
		$reads++;
		push @wrong, "$sum/$count" if $sum != $ACCOUNTS * $BALANCE || $count != $ACCOUNTS;
		if ($reads % 10 == 0)
		{
			my ($partial) = $dbh->selectrow_array(partial_batches(1));
			push @wrong, "part of a batch (batch:rows) $partial" if $partial;
		}
		sleep(0.02);
	}
	open(my $out, '>', "$base/reads.$i") or die;
	print $out "$reads\n", map { "$_\n" } @wrong;
	close($out);
	return;
}

# monitor(DEADLINE): which member says it leads in which term.
sub monitor
{
	my ($deadline) = @_;
	open(my $out, '>', "$base/leaders") or die;
	$out->autoflush(1);
	my %dbh;
	while (time() < $deadline)
	{
		foreach my $i (@NODES)
		{
			$dbh{$i} //= connect_db(conninfo($i, $TIMEOUTS));
			next unless $dbh{$i};
			my ($role, $term) = $dbh{$i}->selectrow_array('SELECT role, term FROM raft.status');
			if (!defined $role)
			{
				$dbh{$i}->disconnect;
				delete $dbh{$i};
				next;
			}
			print $out "$term $i\n" if $role eq 'leader';
		}
		sleep(0.1);
	}
	close($out);
	return;
}

# kill_node(I): kill -9 of member I's postmaster, as a crash would.
sub kill_node
{
	my ($i) = @_;
	open(my $pidfile, '<', "$base/n$i/postmaster.pid") or return;
	my $pid = <$pidfile>;
	close($pidfile);
	chomp $pid;
	kill 'KILL', $pid;
	return;
}

# start_again(I): starts member I after kill_node, once its old processes
# have gone (until then a new postmaster refuses to start).
sub start_again
{
	my ($i) = @_;
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		return if as_user("pgr$i", "$bindir/pg_ctl", '-D', "$base/n$i", '-l',
			"$base/n$i.log", '-w', 'start') == 0;
		sleep(0.2);
	}
	die "could not start n$i again\n";
}

sub cut
{
	my ($i, $state) = @_;
	run('ip', 'link', 'set', "pgr${i}h", $state);
	return;
}

# shape(I, END, TBF): gives the end of member I's link that sends out of
# its namespace ('out') or into it ('in') a token bucket with the tc tbf
# arguments TBF, or none again if TBF is empty.
sub shape
{
	my ($i, $end, @tbf) = @_;
	my @where = $end eq 'out' ? ('-n', "pgr$i") : ();
	my $dev = $end eq 'out' ? "pgr${i}n" : "pgr${i}h";
	if (@tbf)
	{
		run('tc', @where, 'qdisc', 'replace', 'dev', $dev, 'root', 'tbf', @tbf);
	}
	else
	{
		system("tc @where qdisc del dev $dev root 2>/dev/null");
	}
	return;
}

# a bucket of one byte: every packet is larger, and dropped
my @DROP_ALL = qw(rate 8bit burst 1 limit 1);
my @SLOW = qw(rate 256kbit burst 4kb latency 50ms);

# sever(I, J, ON): cuts (or mends) the link between members I and J alone,
# both ways: each sends what it addresses to the other nowhere.
sub sever
{
	my ($i, $j, $on) = @_;
	foreach my $pair ([ $i, $j ], [ $j, $i ])
	{
		my ($from, $to) = @$pair;
		if ($on)
		{
			run('ip', '-n', "pgr$from", 'neigh', 'replace', "$SUBNET.$to", 'lladdr',
				'02:00:00:00:00:01', 'nud', 'permanent', 'dev', "pgr${from}n");
		}
		else
		{
			system('ip', '-n', "pgr$from", 'neigh', 'del', "$SUBNET.$to", 'dev', "pgr${from}n");
		}
	}
	return;
}

# the bridge partition: 1 and 2 on one side, 4 and 5 on the other
sub bridge
{
	my ($on) = @_;
	foreach my $i (1, 2)
	{
		sever($i, $_, $on) foreach (4, 5);
	}
	return;
}

my %frozen;
# double: how long after the leader was cut another member took writes
my @failovers;

# freeze(I, SIGNAL, WORKER): stops or continues member I's whole instance
# (the postmaster and every process it started: each is a process group
# of its own), or only its raft worker.
sub freeze
{
	my ($i, $signal, $worker) = @_;
	if ($signal eq 'STOP')
	{
		my @pids;
		if ($worker)
		{
			@pids = (query_value($i, 'SELECT worker_pid FROM raft.status') // ());
		}
		elsif (open(my $pidfile, '<', "$base/n$i/postmaster.pid"))
		{
			my $pid = <$pidfile>;
			close($pidfile);
			chomp $pid;
			@pids = ($pid, split(' ', `pgrep -P $pid`));
		}
		$frozen{$i} = \@pids;
	}
	kill $signal, @{ $frozen{$i} // [] };
	delete $frozen{$i} if $signal eq 'CONT';
	return;
}

# fault(LEADER, SECONDS): one round of the campaign's fault, undone after
# SECONDS.
sub fault
{
	my ($leader, $seconds) = @_;
	my @followers = grep { $_ != $leader } @NODES;
	if ($opt{fault} eq 'leader-cut' || $opt{fault} eq 'follower-cut')
	{
		my $i = $opt{fault} eq 'leader-cut' ? $leader : $followers[ int(rand(@followers)) ];
		cut($i, 'down');
		sleep($seconds);
		cut($i, 'up');
	}
	elsif ($opt{fault} eq 'freeze' || $opt{fault} eq 'freeze-worker')
	{
		# twice as long: the others' election timers must run out
		my $worker = $opt{fault} eq 'freeze-worker';
		freeze($leader, 'STOP', $worker);
		sleep(2 * $seconds);
		freeze($leader, 'CONT', $worker);
	}
	elsif ($opt{fault} eq 'kill-all')
	{
		kill_node($_) foreach @NODES;
		sleep($seconds);
		start_again($_) foreach @NODES;
	}
	elsif ($opt{fault} eq 'double')
	{
		# the second fault starts before the cluster has recovered from
		# the first: as soon as another member leads
		cut($leader, 'down');
		my $cut_at = time();
		# the cut-off member is not asked: its probe would wait out a
		# connect timeout
		my $second = wait_until($seconds * 2, sub {
			find_leader(grep { $_ != $leader } @NODES) });
		push @failovers, time() - $cut_at if defined $second;
		cut($second, 'down') if defined $second;
		sleep($seconds);
		cut($leader, 'up');
		sleep($seconds / 2);
		cut($second, 'up') if defined $second;
	}
	elsif ($opt{fault} eq 'one-way')
	{
		my $end = rand() < 0.5 ? 'out' : 'in';
		shape($leader, $end, @DROP_ALL);
		sleep($seconds);
		shape($leader, $end);
	}
	elsif ($opt{fault} eq 'slow')
	{
		shape($leader, $_, @SLOW) foreach ('out', 'in');
		sleep($seconds);
		shape($leader, $_) foreach ('out', 'in');
	}
	elsif ($opt{fault} eq 'bridge')
	{
		bridge(1);
		sleep($seconds);
		bridge(0);
	}
	return;
}

sub read_lines
{
	my ($file) = @_;
	open(my $in, '<', $file) or return ();
	my @lines = <$in>;
	close($in);
	chomp @lines;
	return @lines;
}

# what each member says of itself and what its sessions wait for, for a
# failure's report
sub describe_members
{
	foreach my $i (@NODES)
	{
		my $dbh = connect_db(conninfo($i, $TIMEOUTS));
		if (!$dbh)
		{
			print "# n$i: unreachable\n";
			next;
		}
		my $status = $dbh->selectrow_arrayref(
			q{SELECT role, term, commit_index, applied_index, writable, resyncing, serves_copies,
					 coalesce(not_writable_reason, '') FROM raft.status});
		print "# n$i: role, term, commit, applied, writable, resyncing, serves copies, why not: "
		  . join(' | ', map { $_ // '' } @{ $status // [] }) . "\n";
		foreach my $row (@{ $dbh->selectall_arrayref(
			'SELECT slot_name, active_pid, restart_lsn FROM pg_replication_slots') })
		{
			print "# n$i:   slot " . join(' | ', map { $_ // '' } @$row) . "\n";
		}
		foreach my $row (@{ $dbh->selectall_arrayref(
			q{SELECT pid, backend_type, state, wait_event_type || ':' || wait_event, left(query, 60)
			  FROM pg_stat_activity WHERE state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid()}) })
		{
			print "# n$i:   " . join(' | ', map { $_ // '' } @$row) . "\n";
		}
		$dbh->disconnect;
	}
	return;
}

# ---- the campaign

$SIG{ALRM} = sub { die "the campaign took too long\n" };
alarm(int($opt{duration}) + 600);
END
{
	kill 'KILL', @children if @children;
}

start_node($_) foreach @NODES;
safe_do($_, 'CREATE EXTENSION pg_raft') foreach @NODES;
safe_do(1,
	'CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)',
	'CREATE TABLE transfers (id bigint PRIMARY KEY, src int, dst int, amount int)',
	'CREATE TABLE batches (batch int, n int, pad text, PRIMARY KEY (batch, n))',
	"INSERT INTO accounts SELECT g, $BALANCE FROM generate_series(1, $ACCOUNTS) g",
	"SELECT raft.create_cluster('n1', '" . conninfo(1) . "')");
safe_do($_, "SELECT raft.join_cluster('n$_', '" . conninfo($_) . "', '" . conninfo(1) . "')")
  foreach @NODES[ 1 .. $#NODES ];
my $first_leader = wait_until(30, \&find_leader);
ok(defined $first_leader, "seed $opt{seed}: the cluster forms and leads");
my $first_term = query_value($first_leader, 'SELECT term FROM raft.status');

my $deadline = time() + $opt{duration};
spawn(sub { writer($_, $deadline) }) foreach (1, 2);
spawn(sub { batch_writer($deadline) });
spawn(sub { reader($_, $deadline) }) foreach @NODES;
spawn(sub { monitor($deadline) });

# apply the fault, undo it, again and again; the seed decides the jitter
srand($opt{seed});
my $cuts = 0;
my $kills = 0;
while (time() < $deadline - $opt{period})
{
	my $leader = find_leader();
	my $jitter = 0.7 + rand(0.6);
	if (defined $leader)
	{
		fault($leader, $opt{period} * $jitter);
		$cuts++;
	}
	if ($opt{kills} && defined $leader)
	{
		# the member back from the cut repairs from the new leader: kill it
		wait_until(2, sub {
			query_value($leader, 'SELECT resyncing FROM raft.status') });
		my $source = find_leader();
		if (defined $source && $source != $leader)
		{
			kill_node($source);
			$kills++;
			sleep($opt{period});
			start_again($source);
		}
	}
	sleep($opt{period} * (1.4 - $jitter + 0.3));
}
cut($_, 'up') foreach @NODES;
if ($opt{fault} eq 'one-way' || $opt{fault} eq 'slow')
{
	foreach my $i (@NODES)
	{
		shape($i, $_) foreach ('out', 'in');
	}
}
bridge(0) if $opt{fault} eq 'bridge';
if ($opt{fault} =~ /^freeze/)
{
	freeze($_, 'CONT', $opt{fault} eq 'freeze-worker') foreach @NODES;
}
my $healed = time();
waitpid($_, 0) foreach @children;
@children = ();

# ---- the checks

my $writable = wait_until(120, \&find_leader);
my $writable_after = time() - $healed;
# every member back: the leader hears from all, and all name it
my $all_back = defined $writable && wait_until(120, sub {
	my $leader_name = query_value($writable, 'SELECT node_name FROM raft.status') // '';
	return 0 unless query_value($writable,
		'SELECT count(*) = ' . scalar(@NODES) . ' AND bool_and(reachable) FROM raft.nodes');
	return @NODES == grep {
		(query_value($_, 'SELECT leader_name FROM raft.status') // '') eq $leader_name
	} @NODES;
});
my $back_after = time() - $healed;
ok(defined $writable, "seed $opt{seed}: a leader takes writes after healing")
  or describe_members();
ok($all_back, "seed $opt{seed}: every member is back in the cluster after healing")
  or describe_members();
if ($opt{decoding} eq 'worker' && defined $writable)
{
	ok(wait_until(30, sub {
			query_value($writable, "SELECT count(*) > 0 FROM pg_stat_activity"
				  . " WHERE backend_type = 'pg_raft decoding worker'") }),
		"seed $opt{seed}: the leader decodes in its decoding worker");
}
$writable //= 1;
# the write after healing goes to whichever member leads by then (one
# back from a fault may still win an election), until it commits
my $write_error = '';
wait_until(60, sub {
	my $leader = find_leader() // return 0;
	my $dbh = connect_db(conninfo($leader, $TIMEOUTS)) or return 0;
	my $done = $dbh->do('INSERT INTO transfers VALUES (0, 1, 1, 0) ON CONFLICT DO NOTHING');
	$write_error = "n$leader: " . $dbh->errstr unless $done;
	$dbh->disconnect;
	return $done;
}) or print "# the write after healing failed: $write_error\n";
my $converged = wait_until(120, sub {
	my %sums = map {
		$_ => (query_value($_,
				"SELECT raft.table_checksum('accounts') || raft.table_checksum('transfers')"
				  . " || raft.table_checksum('batches')"
				  . ' FROM raft.status WHERE NOT resyncing') // "down$_")
	} @NODES;
	my %distinct = map { $_ => 1 } values %sums;
	return keys %distinct == 1
	  && @NODES == grep { query_value($_, 'SELECT count(*) FROM transfers WHERE id = 0') } @NODES;
});
ok($converged, "seed $opt{seed}: every member converges (same checksums) and holds the write after healing")
  or describe_members();

my @acked = map { read_lines("$base/acked.$_") } (1, 2);
foreach my $i (@NODES)
{
	my $dbh = connect_db(conninfo($i));
	my %have = $dbh ? map { $_->[0] => 1 } @{ $dbh->selectall_arrayref('SELECT id FROM transfers') } : ();
	$dbh->disconnect if $dbh;
	my @lost = grep { !$have{$_} } @acked;
	ok(!@lost, "seed $opt{seed}: n$i holds every acknowledged transfer ("
		  . scalar(@acked) . ')')
	  or print "# lost on n$i: @lost[0 .. ($#lost < 9 ? $#lost : 9)]\n";
}

my %batches = (committed => [], 'rolled back' => []);
foreach (read_lines("$base/batches"))
{
	push @{ $batches{$1} }, $2 if /^(committed|rolled back) (\d+)$/;
}
foreach my $i (@NODES)
{
	my $dbh = connect_db(conninfo($i));
	my %rows = $dbh ? map { $_->[0] => $_->[1] }
	  @{ $dbh->selectall_arrayref('SELECT batch, count(*) FROM batches GROUP BY batch') } : ();
	my $partial = $dbh ? ($dbh->selectrow_array(partial_batches(0)))[0] : 'unreachable';
	$dbh->disconnect if $dbh;
	my @missing = grep { ($rows{$_} // 0) != $BATCH_ROWS } @{ $batches{committed} };
	my @present = grep { $rows{$_} } @{ $batches{'rolled back'} };
	ok(!@missing && !@present && $partial eq '',
		"seed $opt{seed}: n$i holds every acknowledged large transaction whole ("
		  . scalar(@{ $batches{committed} }) . ') and nothing of one rolled back ('
		  . scalar(@{ $batches{'rolled back'} }) . ')')
	  or print "# n$i: missing or partial @missing; rolled back but present @present; partial $partial\n";
}

my ($reads, @wrong) = (0);
foreach my $i (@NODES)
{
	my ($n, @bad) = read_lines("$base/reads.$i");
	$reads += $n // 0;
	push @wrong, map { "n$i: $_" } @bad;
}
ok(!@wrong && $reads > 0, "seed $opt{seed}: every read saw the same total ($reads reads)")
  or print "# wrong totals: @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)]\n";

my %leader_of;
my @two;
foreach my $line (read_lines("$base/leaders"))
{
	my ($term, $i) = split ' ', $line;
	push @two, "term $term: n$leader_of{$term} and n$i"
	  if defined $leader_of{$term} && $leader_of{$term} != $i;
	$leader_of{$term} = $i;
}
ok(!@two, "seed $opt{seed}: at most one leader per term") or print "# @two\n";

my $last_term = query_value($writable, 'SELECT term FROM raft.status') // 0;
my $terms = $last_term - $first_term;
ok($terms <= 10 * ($cuts + $kills + 1), "seed $opt{seed}: $terms terms for $cuts faults and $kills kills");

printf "# seed %d: %d %s faults%s in %.0f s; %d transfers and %d large transactions acknowledged, %d reads checked, %d terms; writable %.1f s and every member back %.1f s after healing%s\n",
  $opt{seed}, $cuts, $opt{fault}, $opt{kills} ? " and $kills leader kills" : '', $opt{duration},
  scalar(@acked), scalar(@{ $batches{committed} }), $reads, $terms, $writable_after, $back_after,
  @failovers ? sprintf('; in %d of %d rounds another member took writes, %.1f s (median) and at most %.1f s after the leader was cut',
	scalar(@failovers), $cuts, (sort { $a <=> $b } @failovers)[$#failovers / 2],
	(sort { $b <=> $a } @failovers)[0]) : '';
print "# seed $opt{seed} failed: replay with --seed $opt{seed}\n" if $failures;
exit($failures ? 1 : 0);
