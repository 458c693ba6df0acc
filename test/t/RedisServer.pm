# RedisServer: a real redis-server for lockext's TAP tests, on a free
# loopback port, with its files under the test's tmp_check directory.
# Servers are stopped at the end of the test script, also when it dies.
package RedisServer;

use strict;
use warnings;

use File::Path qw(make_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

my @servers;

# RedisServer->new($name, appendonly => 1, requirepass => 'secret', conf => [...],
#   tls => { dir => $certs, cert => 'server', auth_clients => 'yes' },
#   server => '/path/to/redis-server')
# With tls, the port is a TLS port only (no plain one).  server: another
# redis-server than the one on PATH (an older Redis).
sub new
{
	my ($class, $name, %opts) = @_;
	my $self = bless {
		name => $name,
		port => PostgreSQL::Test::Cluster::get_free_port(),
		dir => "$PostgreSQL::Test::Utils::tmp_check/redis_$name",
		opts => \%opts,
	}, $class;
	make_path($self->{dir});
	push @servers, $self;
	$self->start;
	return $self;
}

sub port { return $_[0]->{port} }

# The URL for lockext.redis_nodes (password included when set).
sub url
{
	my ($self) = @_;
	my $auth = defined $self->{opts}{requirepass}
	  ? ":$self->{opts}{requirepass}@" : '';
	my $scheme = $self->{opts}{tls} ? 'rediss' : 'redis';
	return "$scheme://${auth}127.0.0.1:$self->{port}";
}

sub start
{
	my ($self) = @_;
	my $conf = "$self->{dir}/redis.conf";
	open my $fh, '>', $conf or die "cannot write $conf: $!";
	if (my $tls = $self->{opts}{tls})
	{
		my $cert = $tls->{cert} // 'server';
		print $fh "bind 127.0.0.1\nport 0\ntls-port $self->{port}\ndir $self->{dir}\n";
		print $fh "tls-cert-file $tls->{dir}/$cert.crt\ntls-key-file $tls->{dir}/$cert.key\n";
		print $fh "tls-ca-cert-file $tls->{dir}/ca.crt\n";
		print $fh "tls-auth-clients ", $tls->{auth_clients} // 'no', "\n";
	}
	else
	{
		print $fh "bind 127.0.0.1\nport $self->{port}\ndir $self->{dir}\n";
	}
	print $fh "save \"\"\ndaemonize no\nprotected-mode yes\n";
	print $fh "logfile $self->{dir}/redis.log\n";
	if ($self->{opts}{appendonly})
	{
		print $fh "appendonly yes\nappendfsync always\n";
	}
	print $fh "requirepass $self->{opts}{requirepass}\n"
	  if defined $self->{opts}{requirepass};
	# more settings, e.g. conf => ['maxmemory 100mb', 'maxmemory-policy allkeys-lru']
	print $fh "$_\n" for @{ $self->{opts}{conf} // [] };
	close $fh;

	$self->{handle} = IPC::Run::start([ $self->{opts}{server} // 'redis-server', $conf ],
		'>', '/dev/null', '2>', "$self->{dir}/stderr.log");
	for (1 .. 200)
	{
		return if $self->ping;
		usleep(25_000);
	}
	die "redis-server $self->{name} did not start on port $self->{port}";
}

sub ping
{
	my ($self) = @_;
	my $out = $self->cli('PING');
	return defined $out && $out =~ /PONG/;
}

# Run one redis-cli command; returns its output.
sub cli
{
	my ($self, @args) = @_;
	my @auth = defined $self->{opts}{requirepass}
	  ? ('-a', $self->{opts}{requirepass}, '--no-auth-warning') : ();
	# the test's own certificates, some expired on purpose: no checks here
	my $tls = $self->{opts}{tls};
	push @auth, '--tls', '--insecure', '--cert', "$tls->{dir}/client.crt",
	  '--key', "$tls->{dir}/client.key" if $tls;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'redis-cli', '-h', '127.0.0.1', '-p', $self->{port},
		@auth, @args ], '>', \$out, '2>', \$err, IPC::Run::timeout(10));
	chomp $out;
	return $out;
}

sub pid { return $_[0]->{handle} ? ($_[0]->{handle}{KIDS}[0]{PID}) : undef }

sub stop
{
	my ($self) = @_;
	return unless $self->{handle};
	$self->resume if $self->{paused};
	$self->{handle}->signal('TERM');
	eval { $self->{handle}->finish; };
	$self->{handle} = undef;
}

# Crash it: no shutdown, no save.
sub kill9
{
	my ($self) = @_;
	return unless $self->{handle};
	$self->{handle}->signal('KILL');
	eval { $self->{handle}->finish; };
	$self->{handle} = undef;
	$self->{paused} = 0;
}

sub pause
{
	my ($self) = @_;
	kill 'STOP', $self->pid;
	$self->{paused} = 1;
}

sub resume
{
	my ($self) = @_;
	kill 'CONT', $self->pid;
	$self->{paused} = 0;
}

END
{
	local $?;
	$_->stop for @servers;
}

1;
