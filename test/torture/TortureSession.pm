# TortureSession: the torture test's building blocks that are not lockext
# specific — a seeded random stream (TortureRng) that gives the same
# sequence for the same seed and stream name whatever the interleaving, and
# an asynchronous psql session (TortureSession) that runs one step (SQL
# text) at a time while the scheduler drives many at once.
package TortureRng;

use strict;
use warnings;

use Digest::MD5 qw(md5);

# One named stream of the run's seed: stream "s3" draws the same numbers
# in every run with that seed, however the other streams were used.
sub new
{
	my ($class, $seed, $stream) = @_;
	return bless { seed => $seed, stream => $stream, n => 0 }, $class;
}

# A float in [0, 1).
sub next
{
	my ($self) = @_;
	my $h = md5("$self->{seed}/$self->{stream}/" . $self->{n}++);
	return unpack('N', $h) / 4294967296;
}

sub int { my ($self, $n) = @_; return int($self->next * $n) }
sub chance { my ($self, $p) = @_; return $self->next < $p }
sub range { my ($self, $lo, $hi) = @_; return $lo + $self->next * ($hi - $lo) }
sub pick { my ($self, @l) = @_; return $l[ $self->int(scalar @l) ] }

# A choice among name => weight pairs.
sub weighted
{
	my ($self, @pairs) = @_;
	my $total = 0;
	$total += $pairs[ 2 * $_ + 1 ] for 0 .. $#pairs / 2;
	my $x = $self->next * $total;
	for my $i (0 .. $#pairs / 2)
	{
		$x -= $pairs[ 2 * $i + 1 ];
		return $pairs[ 2 * $i ] if $x < 0;
	}
	return $pairs[-2];
}

package TortureSession;

use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(time);

# A psql on host:port (not yet connected: poll until ready() or dead()).
sub new
{
	my ($class, %args) = @_;
	my $self = bless { %args, stdin => '', stdout => '', stderr => '', mark => 0,
		busy => undef, pid => undef }, $class;
	$self->{h} = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-v', 'VERBOSITY=verbose', '-h', $args{host},
		  '-p', $args{port}, '-d', 'postgres' ],
		'<', \$self->{stdin}, '>', \$self->{stdout}, '2>', \$self->{stderr});
	$self->{started} = time;
	$self->send('SELECT pg_backend_pid()', 30);
	return $self;
}

# Queue one step; its result comes from poll().
sub send
{
	my ($self, $sql, $timeout) = @_;
	die "session $self->{name} is busy" if $self->{busy};
	my $m = ++$self->{mark};
	$self->{busy} = { sql => $sql, mark => "\@\@end $m\@\@", sent => time,
		deadline => time + $timeout };
	$self->{stdin} .= "$sql\n;\n\\echo '\@\@end $m\@\@'\n\\warn '\@\@end $m\@\@'\n";
	$self->pump;
	return;
}

sub pump
{
	my ($self) = @_;
	return if $self->{dead};
	eval { $self->{h}->pump_nb; };
	if (!$self->{h}->pumpable)
	{
		eval { $self->{h}->finish; };
		$self->{dead} = 1;
		$self->{died_at} = time;
	}
	return;
}

# The finished step's result: { out, err, code (first SQLSTATE), secs,
# dead (the connection or psql ended) }, or undef while it runs.
sub poll
{
	my ($self) = @_;
	my $b = $self->{busy} or return undef;
	$self->pump;
	my $m = $b->{mark};
	my $done = $self->{stdout} =~ /^\Q$m\E$/m && $self->{stderr} =~ /^\Q$m\E$/m;
	return undef unless $done || $self->{dead};
	my ($out, $err) = ($self->{stdout}, $self->{stderr});
	if ($done)
	{
		$out =~ s/^\Q$m\E\n//m;
		$err =~ s/^\Q$m\E\n//m;
	}
	$self->{stdout} = $self->{stderr} = '';
	$self->{busy} = undef;
	my $res = { sql => $b->{sql}, out => $out, err => $err, secs => time - $b->{sent},
		dead => !$done };
	$res->{code} = $1 if $err =~ /(?:ERROR|FATAL|PANIC):  ([0-9A-Z]{5}): /;
	$res->{codes} = [ $err =~ /(?:ERROR|FATAL|PANIC):  ([0-9A-Z]{5}): /g ];
	$res->{lost} = 1
	  if !$done || $err =~ /server closed the connection|connection to server was lost|no connection to the server/;
	if (!defined $self->{pid})
	{
		($self->{pid}) = $out =~ /^(\d+)$/m;
		$self->{dead} = 1 unless $self->{pid};
	}
	return $res;
}

# Connected and idle?
sub ready { my ($self) = @_; return !$self->{dead} && !$self->{busy} && $self->{pid} }
sub dead { return $_[0]->{dead} }
sub overdue { my ($self) = @_; return $self->{busy} && time > $self->{busy}{deadline} }

# Exit psql (killed if it does not within 3 s, e.g. behind a pooler still
# waiting for a server).
sub quit
{
	my ($self) = @_;
	return if $self->{dead};
	$self->{stdin} .= "\\q\n";
	my $until = time + 3;
	while (time < $until)
	{
		eval { $self->{h}->pump_nb; };
		last unless $self->{h}->pumpable;
		select(undef, undef, undef, 0.01);
	}
	return $self->kill if $self->{h}->pumpable;
	eval { $self->{h}->finish; };
	$self->{dead} = 1;
	return;
}

sub kill
{
	my ($self) = @_;
	return if $self->{dead};
	eval { $self->{h}->kill_kill(grace => 1); };
	$self->{dead} = 1;
	return;
}

1;
