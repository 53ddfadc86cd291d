# Copyright (c) pg_raft contributors
#
# RaftProxy.pm: a TCP proxy that a TAP test puts on one network link, so it
# can cut that link and heal it again.
#
# Promises 1 and 2 (no acknowledged commit is lost; one writer) are about
# what happens when the network fails, not when a process dies.  A leader cut
# off from the majority must stop accepting writes within an election
# timeout (check-quorum) while the majority elects a new leader; a follower
# that hears nothing must not disturb the others (pre-vote); and when the
# link heals, the old leader must step down and converge (promise 4), with no
# commit that a client saw acknowledged missing.  To check this on one
# machine, a test needs links it can break.
#
# Every pg_raft node reaches each peer through a libpq conninfo string
# (design §3.2: the transport speaks to the peer's normal PostgreSQL port).
# A partition test gives each directed link A->B its own proxy: the proxy
# listens on a free port of 127.0.0.1 and forwards to node B's real port, and
# node A's conninfo for B names the proxy's port.  The proxy forwards bytes,
# whatever they are (startup packet, SSL negotiation and TLS records,
# queries), so the link behaves like the real one until the test says:
#
#   use FindBin;
#   use lib $FindBin::RealBin;     # test/t, where this module lives
#   use RaftProxy;
#
#   my $ab = RaftProxy->new(target_port => $node_b->port, name => 'a->b');
#   ... conninfo for b, as node a sees it: $ab->conninfo . ' dbname=postgres'
#   $ab->cut;        # drop the link: existing connections are reset (both
#                    # sides see it at once); new ones are accepted and
#                    # reset, so libpq's reconnect attempts fail fast
#   $ab->stall;      # or: the link goes silent.  Nothing moves, nobody is
#                    # told; connections stay open and new ones wait in the
#                    # listen queue, like a partition that TCP retries through
#   $ab->restore;    # forward again (stalled bytes and connections resume)
#   $ab->stop;       # end the proxy (also done when the object goes away)
#
# Cutting only A->B gives a one-way partition: pg_raft's messages are
# one-way, and B answers over its own link B->A.
#
# cut, stall and restore are synchronous: the proxy acknowledges the command
# over a socket pair, and only then does the call return, so after ->cut or
# ->stall no byte goes through that link any more.  ->stats tells how many
# connections are open and how many were accepted or refused, for a test
# that must wait until a node has connected through the proxy.
#
# The proxy runs in a child process (fork) with one select() loop over all
# client/server socket pairs: non-blocking sockets, a bounded buffer per
# direction, half-closes passed on (shutdown once the buffer is drained).
# No proxy may outlive its test, so the child exits by itself when its parent
# dies or closes the control socket, and after max_lifetime seconds (30
# minutes by default); ->stop, DESTROY and an END block stop it otherwise.
# Only Perl core modules are used.

package RaftProxy;

use strict;
use warnings;

use Carp;
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC SOL_SOCKET SO_LINGER
  IPPROTO_TCP TCP_NODELAY SHUT_WR);
use Time::HiRes ();

# Proxies started by this process and not yet stopped: pid => pid of the
# process that started it (a forked child of the test does not own them).
my %running;

# How long the parent waits for the proxy to acknowledge a command.
my $command_timeout = 30;

# Bytes buffered per direction before the proxy stops reading that side.
my $max_buffer = 256 * 1024;

=pod

=item RaftProxy->new(target_port => PORT, %options)

Starts a proxy listening on 127.0.0.1 (on a free port unless listen_port is
given) that forwards every connection to target_host:target_port.  Options:
target_host (default 127.0.0.1), listen_port (default 0: the kernel picks a
free one, outside the range PostgreSQL::Test::Cluster gives to nodes),
name (shown in the log and in ps), max_lifetime in seconds (default 1800).

=cut

sub new
{
	my ($class, %args) = @_;
	my $target_host = $args{target_host} // '127.0.0.1';
	my $target_port = $args{target_port}
	  // croak 'RaftProxy->new: target_port is required';
	my $max_lifetime = $args{max_lifetime} // 1800;

	my $listener = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => $args{listen_port} // 0,
		Proto     => 'tcp',
		Listen    => 128,
		ReuseAddr => 1)
	  or croak "RaftProxy: cannot listen on 127.0.0.1: $@";
	my $port = $listener->sockport;
	my $name = $args{name} // "$port->$target_port";

	socketpair(my $parent_end, my $child_end, AF_UNIX, SOCK_STREAM, PF_UNSPEC)
	  or croak "RaftProxy: socketpair: $!";
	$_->autoflush(1) for ($parent_end, $child_end);

	my $parent_pid = $$;
	my $pid = fork;
	croak "RaftProxy: fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# The child never returns into the test: no END block, no
		# destructor, no buffered test output may run twice.
		my $status = 0;
		eval {
			close $parent_end;
			_child_main(
				listener    => $listener,
				control     => $child_end,
				target_host => $target_host,
				target_port => $target_port,
				parent_pid  => $parent_pid,
				deadline    => time + $max_lifetime,
				title =>
				  "RaftProxy $name 127.0.0.1:$port -> $target_host:$target_port"
			);
			1;
		} or do {
			$status = 1;
			eval { print STDERR "RaftProxy $name: $@"; };
		};
		POSIX::_exit($status);
	}

	close $listener;
	close $child_end;
	$running{$pid} = $$;

	my $self = bless {
		pid         => $pid,
		owner       => $$,
		port        => $port,
		name        => $name,
		target_host => $target_host,
		target_port => $target_port,
		control     => $parent_end,
		exit_status => undef,
	}, $class;

	# A round trip proves that the child runs its loop.
	$self->_command('status');
	print "### RaftProxy $name: 127.0.0.1:$port -> "
	  . "$target_host:$target_port (pid $pid)\n";
	return $self;
}

=pod

=item $proxy->port, ->pid, ->name, ->conninfo

The port the proxy listens on; its process id; its name; and
"host=127.0.0.1 port=PORT", to which a test appends dbname and the rest.

=cut

sub port { return $_[0]->{port}; }
sub pid  { return $_[0]->{pid}; }
sub name { return $_[0]->{name}; }

sub conninfo
{
	my ($self) = @_;
	return "host=127.0.0.1 port=$self->{port}";
}

=pod

=item $proxy->cut

Stops forwarding: every open connection is reset on both sides, and new
connections are accepted and reset at once.  Returns the number of
connections it closed.

=item $proxy->stall

Stops forwarding silently: open connections stay open but no byte moves,
and new connections wait, unaccepted, in the listen queue.

=item $proxy->restore

Forwards again.  Stalled connections resume where they stopped.

=cut

sub cut
{
	my ($self) = @_;
	my $reply = $self->_command('cut');
	print "### RaftProxy $self->{name}: cut "
	  . "($reply->{closed} connections reset)\n";
	return $reply->{closed};
}

sub stall
{
	my ($self) = @_;
	$self->_command('stall');
	print "### RaftProxy $self->{name}: stalled\n";
	return;
}

sub restore
{
	my ($self) = @_;
	$self->_command('restore');
	print "### RaftProxy $self->{name}: restored\n";
	return;
}

=pod

=item $proxy->stats

A hash reference: state (forward, cut or stall), connections (open now),
accepted (forwarded connections so far), refused (connections reset while
cut, or that could not reach the target).

=cut

sub stats
{
	my ($self) = @_;
	my $reply = $self->_command('status');
	delete $reply->{ok};
	return $reply;
}

=pod

=item $proxy->is_running

True while the proxy process runs.  Reaps it when it has exited by itself
(parent gone, max_lifetime), after which ->exit_status holds its wait status.

=cut

sub is_running
{
	my ($self) = @_;
	return 0 unless defined $self->{pid};
	my $r = waitpid($self->{pid}, WNOHANG);
	return 1 if $r == 0;
	$self->{exit_status} = $r == $self->{pid} ? $? : -1;
	$self->_forget;
	return 0;
}

sub exit_status { return $_[0]->{exit_status}; }

=pod

=item $proxy->stop

Ends the proxy process and waits for it; its connections close.  Safe to
call twice.

=cut

sub stop
{
	my ($self) = @_;
	return unless defined $self->{pid};
	return unless $self->{owner} == $$;
	my $pid = $self->{pid};
	close $self->{control} if $self->{control};
	$self->{exit_status} = _terminate($pid);
	$self->_forget;
	print "### RaftProxy $self->{name}: stopped\n";
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($., $@, $!, $^E, $?);
	$self->stop if defined $self->{pid} && $self->{owner} == $$;
	return;
}

END
{
	local $?;
	foreach my $pid (keys %running)
	{
		_terminate($pid) if $running{$pid} == $$;
		delete $running{$pid};
	}
}

sub _forget
{
	my ($self) = @_;
	delete $running{ $self->{pid} } if defined $self->{pid};
	$self->{pid}     = undef;
	$self->{control} = undef;
	return;
}

# SIGTERM, then SIGKILL if it lingers; returns the wait status.
sub _terminate
{
	my ($pid) = @_;
	kill 'TERM', $pid;
	my $deadline = Time::HiRes::time() + 10;
	while (Time::HiRes::time() < $deadline)
	{
		my $r = waitpid($pid, WNOHANG);
		return $? if $r == $pid;
		return -1 if $r < 0;
		Time::HiRes::sleep(0.01);
	}
	kill 'KILL', $pid;
	waitpid($pid, 0);
	return $?;
}

# Sends one command line and waits for the "ok key=value ..." reply.
sub _command
{
	my ($self, $command) = @_;
	croak "RaftProxy $self->{name}: not running"
	  unless defined $self->{pid} && $self->{control};
	croak "RaftProxy $self->{name}: owned by process $self->{owner}"
	  unless $self->{owner} == $$;

	my $fh = $self->{control};
	defined syswrite($fh, "$command\n")
	  or croak "RaftProxy $self->{name}: cannot send '$command': $!";

	my $reply    = '';
	my $sel      = IO::Select->new($fh);
	my $deadline = Time::HiRes::time() + $command_timeout;
	while ($reply !~ /\n/)
	{
		my $left = $deadline - Time::HiRes::time();
		croak "RaftProxy $self->{name}: no answer to '$command'"
		  if $left <= 0;
		next unless $sel->can_read($left);
		my $n = sysread($fh, $reply, 4096, length $reply);
		next if !defined $n && $!{EINTR};
		croak "RaftProxy $self->{name}: proxy process gone during '$command'"
		  unless $n;
	}
	my %reply = map { /^([^=]+)=(.*)$/ ? ($1 => $2) : ($_ => 1) }
	  split ' ', $reply;
	croak "RaftProxy $self->{name}: '$command' failed: $reply"
	  unless $reply{ok};
	return \%reply;
}

# ----------------------------------------------------------------------
# The child: the forwarding loop.
# ----------------------------------------------------------------------

# Makes the child hold nothing of its parent but what it needs: every other
# inherited descriptor (the test's pipes to prove, other proxies' control
# sockets, database connections) is pointed at /dev/null, so that no reader
# waits for this process and no peer sees a connection kept alive by it.
# The descriptor numbers stay taken, so no stale Perl handle can close a
# socket of ours.  Standard output and error stay when they are files (the
# test's log); when they are pipes or terminals they go too.
sub _detach_descriptors
{
	my (@keep) = @_;
	my %keep = map { $_ => 1 } @keep;
	my $null = POSIX::open('/dev/null', POSIX::O_RDWR());
	return unless defined $null;
	$keep{$null} = 1;

	my @fds;
	if (opendir(my $dir, '/proc/self/fd'))
	{
		@fds = grep { /^\d+$/ } readdir $dir;
		closedir $dir;
	}
	else
	{
		@fds = (0 .. 1023);
	}
	foreach my $fd (@fds)
	{
		next if $keep{$fd};
		if ($fd == 1 || $fd == 2)
		{
			my @st = POSIX::fstat($fd);
			next if @st && POSIX::S_ISREG($st[2]);
		}
		POSIX::dup2($null, $fd);
	}
	return;
}

sub _child_main
{
	my (%c) = @_;
	my $listener = $c{listener};
	my $control  = $c{control};

	$0 = $c{title};
	$SIG{$_} = 'DEFAULT'
	  for grep { exists $SIG{$_} } qw(TERM INT HUP QUIT ALRM CHLD USR1 USR2);
	$SIG{PIPE}     = 'IGNORE';
	$SIG{__DIE__}  = 'DEFAULT';
	$SIG{__WARN__} = 'DEFAULT';

	_detach_descriptors(fileno($listener), fileno($control));
	$listener->blocking(0);

	my $state = 'forward';
	my @pairs;
	my %stats = (accepted => 0, refused => 0);
	my $control_buffer = '';

	while (1)
	{
		return if getppid() != $c{parent_pid};    # the test is gone
		return if time > $c{deadline};            # max_lifetime

		my $rsel = IO::Select->new($control);
		my $wsel = IO::Select->new;
		$rsel->add($listener) unless $state eq 'stall';
		if ($state eq 'forward')
		{
			foreach my $p (@pairs)
			{
				foreach my $side ('c', 's')
				{
					my $other = _other($side);
					$rsel->add($p->{$side})
					  if !$p->{eof}{$side}
					  && length($p->{out}{$other}) < $max_buffer;
					$wsel->add($p->{$side}) if length $p->{out}{$side};
				}
			}
		}

		my ($readable, $writable) = IO::Select->select($rsel, $wsel, undef, 0.5);
		next unless $readable || $writable;
		my %r = map { fileno($_) => 1 } @{ $readable || [] };
		my %w = map { fileno($_) => 1 } @{ $writable || [] };

		# Commands first: after one, the sets above may be stale.
		if ($r{ fileno $control })
		{
			my $n = sysread($control, $control_buffer, 4096,
				length $control_buffer);
			next if !defined $n && $!{EINTR};
			return unless $n;    # the parent closed its end, or died
			while ($control_buffer =~ s/^([^\n]*)\n//)
			{
				my $command = $1;
				my $extra   = '';
				if ($command eq 'cut')
				{
					$extra = ' closed=' . scalar(@pairs);
					_abort($_) for @pairs;
					@pairs = ();
					$state = 'cut';
				}
				elsif ($command eq 'stall')
				{
					$state = 'stall';
				}
				elsif ($command eq 'restore')
				{
					$state = 'forward';
				}
				elsif ($command ne 'status')
				{
					syswrite($control, "error unknown-command\n");
					next;
				}
				syswrite($control,
					    "ok state=$state connections="
					  . scalar(@pairs)
					  . " accepted=$stats{accepted}"
					  . " refused=$stats{refused}$extra\n");
			}
			next;
		}

		if ($r{ fileno $listener } && $state ne 'stall')
		{
			my $client = $listener->accept;
			if ($client && $state eq 'cut')
			{
				_reset($client);
				$stats{refused}++;
			}
			elsif ($client)
			{
				my $server = IO::Socket::INET->new(
					PeerAddr => $c{target_host},
					PeerPort => $c{target_port},
					Proto    => 'tcp',
					Timeout  => 5);
				if ($server)
				{
					foreach my $s ($client, $server)
					{
						$s->blocking(0);
						setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
					}
					push @pairs,
					  {
						c    => $client,
						s    => $server,
						out  => { c => '', s => '' },
						eof  => { c => 0,  s => 0 },
						shut => { c => 0,  s => 0 },
					  };
					$stats{accepted}++;
				}
				else
				{
					# The target is down: the client sees the link drop.
					_reset($client);
					$stats{refused}++;
				}
			}
		}

		next unless $state eq 'forward';
		foreach my $p (@pairs)
		{
			next if $p->{dead};
			foreach my $side ('c', 's')
			{
				last if $p->{dead};    # reset while handling the other side
				my $other = _other($side);
				my $fd    = fileno $p->{$side};
				if ($r{$fd})
				{
					my $n = sysread($p->{$side}, my $data, 65536);
					if (!defined $n)
					{
						_abort($p)
						  unless $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
					}
					elsif ($n == 0)
					{
						$p->{eof}{$side} = 1;
					}
					else
					{
						$p->{out}{$other} .= $data;
					}
				}
				if ($w{$fd} && !$p->{dead} && length $p->{out}{$side})
				{
					my $n = syswrite($p->{$side}, $p->{out}{$side});
					if (!defined $n)
					{
						_abort($p)
						  unless $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
					}
					else
					{
						substr($p->{out}{$side}, 0, $n) = '';
					}
				}
			}
			next if $p->{dead};

			# Pass a half-close on once everything before it is delivered.
			foreach my $side ('c', 's')
			{
				my $other = _other($side);
				if (   $p->{eof}{$other}
					&& !$p->{shut}{$side}
					&& !length $p->{out}{$side})
				{
					shutdown($p->{$side}, SHUT_WR);
					$p->{shut}{$side} = 1;
				}
			}
			if ($p->{shut}{c} && $p->{shut}{s})
			{
				close $p->{c};
				close $p->{s};
				$p->{dead} = 1;
			}
		}
		@pairs = grep { !$_->{dead} } @pairs;
	}
}

sub _other { return $_[0] eq 'c' ? 's' : 'c'; }

# Closes a socket with a reset (SO_LINGER 0): the peer's next read or write
# fails at once, as when a link drops.
sub _reset
{
	my ($sock) = @_;
	setsockopt($sock, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
	close $sock;
	return;
}

sub _abort
{
	my ($p) = @_;
	return if $p->{dead};
	_reset($p->{c});
	_reset($p->{s});
	$p->{dead} = 1;
	return;
}

1;
