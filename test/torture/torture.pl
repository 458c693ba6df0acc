# lockext's torture test: a seeded, randomized, bounded stress run that
# looks for what no other test lists (the Jepsen idea, on one machine).
#
# Three clusters (c1 owns the counter; c2 and c3 reach it through
# postgres_fdw; PgBouncer in session mode in front of c2) share Redis —
# half the run one node, half a quorum of three, in an order the seed
# picks.  Ten sessions run a random mix of operations (TortureOps.pm:
# guarded read-modify-writes of a counter, session locks, savepoints,
# errors in blocks, statement_timeout, DISCARD ALL, lock-order inversions,
# 1,500-key acquires followed by an exit), while faults hit one thing at a
# time: SIGSTOP of Redis, of holders and of the keeper, CLIENT PAUSE,
# FLUSHALL, Redis restarts with and without data, kill -9 of the keeper and
# of backends (a crash restart of that cluster), pg_terminate_backend,
# pg_cancel_backend, reloads of lockext.redis_nodes with the nodes
# reordered.
#
# The workload keeps within README "Guarantees": guarded transactions use
# verify_on_commit = always and a 15 s lease that no pause (at most 3 s,
# renewal-blocking faults 6 s apart) can outlast, so only the data-losing
# faults (FLUSHALL, restart without data) lose their locks, and those wait
# until no guarded COMMIT is in flight; a holder is never stopped inside
# its COMMIT (between the check and the commit nothing can help).
#
# Invariants (one assertion each): no lost update and the log matches the
# COMMITs the clients saw; fencing tokens strictly increase per key;
# 40P01 only in lock-order inversions; no internal error; every step ends
# within its bound; dlock_held() agrees with the client's model after every
# operation; no lock key outlives its lease in Redis; backend memory stays
# flat; no PANIC and no crash restart the test did not cause.
#
#   LOCKEXT_TORTURE_SECONDS=N    run time (default 60)
#   LOCKEXT_TORTURE_SEED=N       replay a run (the seed is printed first)
#   LOCKEXT_TORTURE_NO_LOCK=1    guarded transactions take no lock: the
#                                counter and token checks must fail
#   LOCKEXT_TORTURE_SABOTAGE=a,b break other checks on purpose, to show
#                                they can fail: deadlock, internal, hang,
#                                model, leak, memory, crash, client
# The operations log: tmp_check/log/torture_ops.log.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use POSIX qw(strftime);
use File::Path qw(rmtree);
use List::Util qw(max sum0);
use RedisServer;
use LockextCluster;
use TortureSession;
use TortureOps;

my $seed = $ENV{LOCKEXT_TORTURE_SEED} // int(rand(1_000_000_000));
my $seconds = $ENV{LOCKEXT_TORTURE_SECONDS} || 60;
my %sabotage = map { $_ => 1 } split /,/, $ENV{LOCKEXT_TORTURE_SABOTAGE} // '';
my $lease = 15;    # guarded and big acquires; the longest lease used
diag("lockext torture: seed $seed, $seconds s (replay: LOCKEXT_TORTURE_SEED=$seed)");

# a hard bound on the whole run; the END blocks stop every server
$SIG{ALRM} = sub { die "torture: hard timeout\n" };
alarm($seconds + 420);

my $t_start = time;
open my $log, '>', "$PostgreSQL::Test::Utils::log_path/torture_ops.log" or die "ops log: $!";
$log->autoflush(1);
sub logf
{
	my ($fmt, @args) = @_;
	my $t = time;
	printf $log "%s.%03d +%7.3f %s\n", strftime('%H:%M:%S', localtime $t),
	  ($t - int $t) * 1000, $t - $t_start, sprintf($fmt, @args);
}
logf('seed %d, %d s, no_lock %d, sabotage %s', $seed, $seconds,
	$ENV{LOCKEXT_TORTURE_NO_LOCK} ? 1 : 0, join(',', sort keys %sabotage));

# --- the servers ---

my @redis = map { RedisServer->new($_, appendonly => 1) } qw(single q1 q2 q3);
my %config = (single => [ $redis[0] ], quorum => [ @redis[ 1 .. 3 ] ]);
my $cfg_rng = TortureRng->new($seed, 'config');
my @phases = $cfg_rng->chance(0.5) ? qw(single quorum) : qw(quorum single);
my $phase;
sub node_list { my @n = @_; return join(',', map { $_->url } @n) }

my @clusters = map { start_lockext_cluster($_, node_list(@{ $config{ $phases[0] } }), '1s') }
  qw(c1 c2 c3);
my %cluster = map { $_->name => $_ } @clusters;
for my $c (@clusters)
{
	# the test's kill -9 makes a crash restart (PostgreSQL::Test::Cluster
	# turns them off); statements are in the operations log
	$c->safe_psql('postgres', qq{ALTER SYSTEM SET log_line_prefix = '%m [%p] %e ';
ALTER SYSTEM SET restart_after_crash = on;
ALTER SYSTEM SET log_statement = 'none';
ALTER SYSTEM SET lockext.lease = '${lease}s';
SELECT pg_reload_conf();});
}
$clusters[0]->safe_psql('postgres', q{
CREATE TABLE counter (k text PRIMARY KEY, v bigint NOT NULL);
INSERT INTO counter SELECT 'g:' || i, 0 FROM generate_series(0, 3) i;
CREATE TABLE tlog (k text, v bigint, token bigint, cluster text, session text, op int,
  t_read timestamptz, t_end timestamptz);});
link_tables($_, $clusters[0], counter => 'k text, v bigint',
	tlog => 'k text, v bigint, token bigint, cluster text, session text, op int, '
	  . 't_read timestamptz, t_end timestamptz') for @clusters[ 1, 2 ];
my $bouncer = start_pgbouncer($clusters[1], 'session', ['postgres']);

# --- shared state ---

my %violations;    # kind => [ text ]
my (%codes, %killed, %stopped, @events, $gate, %faults);
my $last_kill = 0;
my $ctx = bless {
	nolock => $ENV{LOCKEXT_TORTURE_NO_LOCK} ? 1 : 0, lease => $lease,
	gkeys => [ map { "g:$_" } 0 .. 3 ], skeys => [ map { "s:$_" } 0 .. 5 ],
	commits => {}, uncertain => {}, op_seq => 0,
}, 'TortureCtx';
sub TortureCtx::violation
{
	my ($self, $kind, $text) = @_;
	push @{ $violations{$kind} }, $text;
	logf('VIOLATION %s: %s', $kind, $text);
	diag("violation ($kind): $text") if @{ $violations{$kind} } <= 5;
}
# NO_LOCK's stand-in token: per session, so it cannot increase per key
sub TortureCtx::tok { my ($self, $s) = @_; return $s->{idx} * 1_000_000 + $s->{ops} }

my @sessions;
for my $c (@clusters)
{
	push @sessions, map { { name => $c->name . "s$_", node => $c, via => $c } } 0 .. 2;
}
push @sessions, { name => 'c2b0', node => $clusters[1], via => $bouncer, bouncer => 1 };
for my $i (0 .. $#sessions)
{
	my $s = $sessions[$i];
	%$s = (%$s, idx => $i, cluster => $s->{node}->name, model => {}, ops => 0,
		rng => TortureRng->new($seed, "session:$s->{name}"),
		long_lived => $s->{node}->name eq 'c3', reconnect_at => 0);
}

# --- sessions ---

sub spawn
{
	my ($s) = @_;
	$s->{ps} = TortureSession->new(name => $s->{name}, host => $s->{via}->host,
		port => $s->{via}->port);
	$s->{model} = {};
	$s->{mem0} = undef;
	$s->{since_connect} = 0;
	$s->{op} = undef;
	$s->{cur} = undef;
}

sub session_gone
{
	my ($s, $why) = @_;
	logf('%s: session ended (%s)%s', $s->{name}, $why,
		$s->{op} ? " in op $s->{op}{id} $s->{op}{kind}" : '');
	$s->{ps}->kill if $s->{ps};
	$s->{ps} = undef;
	$s->{op} = undef;
	$s->{cur} = undef;
	$s->{reconnect_at} = time + 0.5;
}

sub result
{
	my ($s, $res) = @_;
	my $step = $s->{cur};
	$s->{cur} = undef;
	(my $sql = $res->{sql}) =~ s/\s+/ /g;
	(my $out = $res->{out}) =~ s/\n/ /g;
	my @err = grep { /ERROR|FATAL|PANIC|WARNING|server closed|connection/ } split /\n/, $res->{err};
	logf('%s [%s] %.3fs %s => %s%s%s', $s->{name}, $s->{op} ? "$s->{op}{id} $s->{op}{kind}" : 'connect',
		$res->{secs}, substr($sql, 0, 300), substr($out, 0, 200),
		@err ? ' | ' . join(' | ', map { substr($_, 0, 300) } @err) : '', $res->{dead} ? ' [psql ended]' : '');
	my $kind = $s->{op} ? $s->{op}{kind} : 'connect';
	for my $code (@{ $res->{codes} })
	{
		$codes{$code}{$kind}++;
		$ctx->violation('deadlock', "$s->{name} op " . ($s->{op} ? $s->{op}{id} : '-')
			  . " ($kind): 40P01 outside a lock-order inversion: $res->{err}")
		  if $code eq '40P01' && ($kind ne 'inversion' || $sabotage{deadlock});
		$ctx->violation('internal', "$s->{name} ($kind): $res->{err}") if $code eq 'XX000';
	}
	if (!$step)    # the connect step: pg_backend_pid()
	{
		return session_gone($s, 'connect failed: ' . (split /\n/, $res->{err})[0] // '')
		  if $res->{dead} || !$s->{ps}{pid};
		logf('%s: connected, backend %d', $s->{name}, $s->{ps}{pid});
		return;
	}
	if ($res->{lost})
	{
		$step->{on_lost}->() if $step->{on_lost};
		return session_gone($s, 'connection lost');
	}
	$step->{on}->($res);
}

# Send the session's next step, or start its next operation.
sub advance
{
	my ($s, $new_ops) = @_;
	if (!$s->{op})
	{
		return unless $new_ops && time >= ($s->{next_at} // 0);
		$s->{op} = new_op($ctx, $s);
		$s->{last_op} = "$s->{op}{id} $s->{op}{kind}";
		logf('%s: op %s', $s->{name}, $s->{last_op});
	}
	my $op = $s->{op};
	if (!@{ $op->{steps} })
	{
		if (!$op->{finishing}++)
		{
			return exit_session($s) if $op->{exit_after};
			if ($op->{kind} ne 'idle')
			{
				push @{ $op->{steps} }, held_check_step($ctx, $s);
				$s->{model}{'s:sabotage'} = 1 if $sabotage{model} && $s->{ops} == 5;
			}
			push @{ $op->{steps} }, memory_step($s, 'mem0')
			  if !defined $s->{mem0} && ++$s->{since_connect} >= 15;
			return if @{ $op->{steps} };
		}
		$s->{op} = undef;
		$s->{ops}++;
		return;
	}
	my $step = $op->{steps}[0];
	return if $step->{guarded_commit} && $gate;
	shift @{ $op->{steps} };
	$s->{cur} = $step;
	$s->{ps}->send(ref $step->{sql} ? $step->{sql}->() : $step->{sql}, $step->{timeout} // 60);
}

sub memory_step
{
	my ($s, $which) = @_;
	my $pad = $sabotage{memory} && $which eq 'mem1' && $s->{long_lived}
	  ? "CREATE TEMP TABLE IF NOT EXISTS pad AS SELECT repeat('x', 1000) FROM generate_series(1, 6000);\n" : '';
	return { sql => $pad . 'SELECT sum(total_bytes) FROM pg_backend_memory_contexts', on => sub {
		my ($res) = @_;
		my ($bytes) = $res->{out} =~ /^(\d+)$/m or return;
		$s->{$which} = [ $bytes, $s->{ps}{pid} ];
		logf('%s: backend memory (%s) %d bytes', $s->{name}, $which, $bytes);
	} };
}

sub exit_session
{
	my ($s) = @_;
	logf('%s: exits (op %s)', $s->{name}, $s->{last_op});
	$s->{ps}->quit;
	$s->{ps} = undef;
	$s->{op} = undef;
	$s->{ops}++;
	$s->{reconnect_at} = time;
}

sub service
{
	my ($s, $new_ops) = @_;
	my $ps = $s->{ps};
	if (!$ps)
	{
		spawn($s) if $new_ops && time >= $s->{reconnect_at};
		return;
	}
	if (my $res = $ps->poll)
	{
		result($s, $res);
	}
	elsif ($ps->overdue)
	{
		$s->{cur}{on_lost}->() if $s->{cur} && $s->{cur}{on_lost};
		$ctx->violation('hang', sprintf('%s: step of op %s did not end in %d s: %s', $s->{name},
			$s->{last_op} // '-', time - $ps->{busy}{sent}, substr($ps->{busy}{sql}, 0, 200)));
		return session_gone($s, 'hung');
	}
	return unless $s->{ps};
	return session_gone($s, 'psql ended') if $s->{ps}->dead && !$s->{ps}{busy};
	advance($s, $new_ops) if $s->{ps}->ready;
}

# --- faults ---

my $frng = TortureRng->new($seed, 'faults');
my ($next_fault, $active_until, $blocking_ok_at) = (0, 0, 0);

sub at { my ($delay, $sub) = @_; push @events, [ time + $delay, $sub ] }

sub control
{
	my ($node, $sql) = @_;
	my ($out, $err, $timed_out) = ('', '', 0);
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err, timeout => 15,
		timed_out => \$timed_out, on_error_stop => 0);
	logf('control %s: %s => %s %s', $node->name, $sql, $out, $err =~ /(ERROR.*)/ ? $1 : '');
	return $out;
}

sub busy_sessions { return grep { $_->{ps} && $_->{ps}{pid} && !$_->{ps}->dead } @sessions }
sub in_guarded_commit { my ($s) = @_; return $s->{cur} && $s->{cur}{guarded_commit} }

sub stop_for
{
	my ($what, $pid, $d) = @_;
	kill 'STOP', $pid or return;
	$stopped{$pid} = 1;
	logf('fault: SIGSTOP %s (pid %d) for %.2f s', $what, $pid, $d);
	at($d, sub { kill 'CONT', $pid; delete $stopped{$pid}; logf('fault: SIGCONT %s (pid %d)', $what, $pid) });
	$active_until = time + $d;
}

sub kill9
{
	my ($node, $pid, $what) = @_;
	return unless $pid && kill 'KILL', $pid;
	$killed{ $node->name }{$pid} = 1;
	$last_kill = time;
	logf('fault: kill -9 %s of %s (pid %d)', $what, $node->name, $pid);
}

# Data-losing faults wait until no guarded COMMIT is in flight.
sub gated { my ($name, $sub) = @_; $gate = { name => $name, sub => $sub, since => time } }

sub wipe_restart
{
	my ($r) = @_;
	$r->stop;
	rmtree("$r->{dir}/appendonlydir");
	unlink glob("$r->{dir}/*.aof $r->{dir}/*.rdb");
	$r->start;
}

my %blocking = map { $_ => 1 } qw(redis_stop client_pause redis_restart redis_wipe keeper_stop);
my @fault_weights = (redis_stop => 8, client_pause => 6, flushall => 4, redis_restart => 4,
	redis_wipe => 3, holder_stop => 8, keeper_stop => 5, keeper_kill9 => 2, backend_kill9 => 2,
	terminate => 4, cancel => 8, reload => 4);

sub fault
{
	my $kind = $frng->weighted(@fault_weights);
	if ($blocking{$kind} && time < $blocking_ok_at)
	{
		# too soon after the last renewal-blocking fault: another kind
		$kind = $frng->weighted(map { @fault_weights[ 2 * $_, 2 * $_ + 1 ] }
			  grep { !$blocking{ $fault_weights[ 2 * $_ ] } } 0 .. $#fault_weights / 2);
	}
	my $d = $frng->range(0.2, 3);
	my $r = $frng->pick(@{ $config{$phase} });
	my $node = $frng->pick(@clusters);
	my $killable = $frng->pick(@clusters[ 0, 1 ]);
	my @busy = busy_sessions();
	my $victim = $frng->next;
	my $pick = sub { my @l = @_; return @l ? $l[ int($victim * @l) ] : undef };
	$faults{$kind}++;
	logf('fault: %s', $kind);
	if ($kind eq 'redis_stop')
	{
		$r->pause;
		logf('fault: SIGSTOP redis %s for %.2f s', $r->{name}, $d);
		at($d, sub { $r->resume; logf('fault: SIGCONT redis %s', $r->{name}) });
		$active_until = time + $d;
	}
	elsif ($kind eq 'client_pause')
	{
		$r->cli('CLIENT', 'PAUSE', int($d * 1000), 'ALL');
		logf('fault: CLIENT PAUSE %d ms on %s', $d * 1000, $r->{name});
		$active_until = time + $d;
	}
	elsif ($kind eq 'redis_restart')
	{
		$d < 1.6 ? $r->kill9 : $r->stop;
		$r->start;
		logf('fault: redis %s restarted with its data (%s)', $r->{name}, $d < 1.6 ? 'kill -9' : 'SIGTERM');
	}
	elsif ($kind eq 'redis_wipe' || $kind eq 'flushall')
	{
		gated($kind, sub {
			if ($kind eq 'flushall') { $r->cli('FLUSHALL') } else { wipe_restart($r) }
			logf('fault: %s on redis %s', $kind eq 'flushall' ? 'FLUSHALL' : 'restart without data', $r->{name});
		});
	}
	elsif ($kind eq 'holder_stop')
	{
		my $s = $pick->(grep { !in_guarded_commit($_) } @busy) or return;
		stop_for("backend of $s->{name}", $s->{ps}{pid}, $d);
	}
	elsif ($kind eq 'keeper_stop')
	{
		my ($pid) = control($node, 'SELECT dlock_keeper_pid()') =~ /^(\d+)/ or return;
		stop_for('keeper of ' . $node->name, $pid, $d);
	}
	elsif ($kind eq 'keeper_kill9')
	{
		my ($pid) = control($killable, 'SELECT dlock_keeper_pid()') =~ /^(\d+)/ or return;
		kill9($killable, $pid, 'the keeper');
	}
	elsif ($kind eq 'backend_kill9' || $kind eq 'terminate')
	{
		my $s = $pick->(grep { $_->{node} == $killable } @busy) or return;
		return kill9($killable, $s->{ps}{pid}, "backend of $s->{name}") if $kind eq 'backend_kill9';
		control($killable, "SELECT pg_terminate_backend($s->{ps}{pid})");
	}
	elsif ($kind eq 'cancel')
	{
		my $s = $pick->(grep { $_->{ps}{busy} } @busy) or return;
		control($s->{node}, "SELECT pg_cancel_backend($s->{ps}{pid})");
	}
	elsif ($kind eq 'reload')
	{
		my @n = @{ $config{$phase} };
		@n = map { $_->[1] } sort { $a->[0] <=> $b->[0] } map { [ $frng->next, $_ ] } @n;
		control($node, "ALTER SYSTEM SET lockext.redis_nodes = '" . node_list(@n) . "';\nSELECT pg_reload_conf()");
	}
	$blocking_ok_at = max($active_until, time) + 6 if $blocking{$kind};
}

sub tick
{
	my ($new_ops) = @_;
	service($_, $new_ops) for @sessions;
	my $now = time;
	for my $e (grep { $_->[0] <= $now } @events)
	{
		$e->[1]->();
	}
	@events = grep { $_->[0] > $now } @events;
	if ($gate)
	{
		if (!grep { in_guarded_commit($_) } @sessions)
		{
			$gate->{sub}->();
			$gate = undef;
		}
		elsif (time - $gate->{since} > 20)
		{
			logf('fault: %s skipped (guarded COMMITs kept running)', $gate->{name});
			$gate = undef;
		}
	}
	elsif ($new_ops && $now >= $next_fault && $now >= $active_until)
	{
		fault();
		$next_fault = max(time, $active_until) + $frng->range(0.5, 3);
	}
	usleep(5_000);
}

# Let running operations end (no new ones, no new faults), then resume
# whatever is stopped.
sub drain
{
	my $until = time + 120;
	tick(0) while time < $until && ($gate || grep { $_->{ps} && $_->{op} } @sessions);
	$_->[1]->() for sort { $a->[0] <=> $b->[0] } @events;
	@events = ();
	$gate = undef;
	for my $s (grep { $_->{ps} && $_->{op} } @sessions)
	{
		$ctx->violation('hang', "$s->{name}: op $s->{last_op} still running after the drain");
		session_gone($s, 'drain');
	}
}

# The end of a phase: the memory samples, then every session exits.
my @memory;
sub end_sessions
{
	for my $s (grep { $_->{ps} && defined $_->{mem0} } @sessions)
	{
		$s->{op} = { kind => 'memory', id => 0, steps => [ memory_step($s, 'mem1') ] };
		my $until = time + 30;
		tick(0) while $s->{ps} && $s->{op} && time < $until;
		next unless $s->{mem1} && $s->{mem1}[1] == $s->{mem0}[1];
		push @memory, [ $s->{name}, $s->{mem0}[0], $s->{mem1}[0] ];
	}
	for my $s (grep { $_->{ps} } @sessions)
	{
		$s->{ps}->quit;
		$s->{ps} = undef;
		$s->{reconnect_at} = 0;
	}
}

# Break checks on purpose (LOCKEXT_TORTURE_SABOTAGE), to show they can fail.
sub sabotage
{
	if ($sabotage{hang})
	{
		my $s = $sessions[0];
		$s->{next_at} = time + 5;
		spawn($s);
		tick(0) until $s->{ps}->ready;
		$s->{op} = { kind => 'sabotage', id => 0,
			steps => [ { sql => 'SELECT pg_sleep(30)', on => sub { }, timeout => 3 } ] };
	}
	control($clusters[0], q{DO $$ BEGIN RAISE EXCEPTION 'torture sabotage' USING ERRCODE = 'XX000'; END $$})
	  if $sabotage{internal};
	if ($sabotage{crash})
	{
		my ($pid) = control($clusters[2], 'SELECT dlock_keeper_pid()') =~ /^(\d+)/;
		kill 'KILL', $pid if $pid;
		logf('sabotage: kill -9 of the keeper of c3 (pid %d), not recorded', $pid // 0);
	}
}

# --- the run ---

my $t_run = time;

for my $i (0 .. $#phases)
{
	$phase = $phases[$i];
	if ($i > 0)
	{
		for my $c (@clusters)
		{
			control($c, "ALTER SYSTEM SET lockext.redis_nodes = '" . node_list(@{ $config{$phase} })
				  . "';\nSELECT pg_reload_conf()");
		}
		sleep 1;
	}
	logf('phase %s (%s)', $phase, node_list(@{ $config{$phase} }));
	my $until = time + $seconds / @phases;
	$next_fault = time + 2;
	sabotage() if $i == 0 && %sabotage;
	tick(1) while time < $until;
	drain();
	end_sessions();
}
my $t_ops = time - $t_run;

# --- the checks ---

my $c1 = $clusters[0];
if ($sabotage{leak})
{
	$redis[0]->cli('SET', 'lockext:lock:torture-sabotage', 'x');
}
# keys of killed backends and of stopped holders go with their lease
my $deadline = max(time, $last_kill) + $lease + 10;
my @left;
while (1)
{
	@left = ();
	for my $r (@redis)
	{
		push @left, map { "$r->{name}: $_ (ttl " . $r->cli('PTTL', $_) . ' ms, value ' . $r->cli('GET', $_) . ')' }
		  grep { length } split /\n/, $r->cli('--scan', '--pattern', 'lockext:lock:*');
	}
	last if !@left || time > $deadline;
	usleep(500_000);
}
my $t_keys = time;

# the server logs: PANIC, assertion failures, crash restarts, internal errors
my @crashes;
for my $c (@clusters)
{
	my $text = slurp_file($c->logfile);
	my $name = $c->name;
	push @crashes, "$name: $1" while $text =~ /^(.*\b(?:PANIC|TRAP):.*)$/mg;
	while ($text =~ /^(.*\(PID (\d+)\) was terminated by signal (\d+).*)$/mg)
	{
		push @crashes, "$name: $1" unless $3 == 9 && $killed{$name}{$2};
	}
	my $restarts = () = $text =~ /terminating any other active server processes/g;
	my $kills = keys %{ $killed{$name} // {} };
	push @crashes, "$name: $restarts crash restarts, $kills caused by the test" if $restarts > $kills;
	$ctx->violation('internal', "$name log: $1") while $text =~ /^(.* XX000 (?:ERROR|FATAL|WARNING|PANIC):.*)$/mg;
	logf('%s: %d crash restarts, %d kill -9 by the test', $name, $restarts, $kills);
}

my @keys = @{ $ctx->{gkeys} };
my %rows = map { split /\|/ } split /\n/, $c1->safe_psql('postgres', 'SELECT k, count(*) FROM tlog GROUP BY k');
my %counter = map { split /\|/ } split /\n/, $c1->safe_psql('postgres', 'SELECT k, v FROM counter');
$ctx->{commits}{ $keys[0] }++ if $sabotage{client};
my (@lost, @client);
for my $k (@keys)
{
	my ($n, $v, $c, $u) = ($rows{$k} // 0, $counter{$k}, $ctx->{commits}{$k} // 0, $ctx->{uncertain}{$k} // 0);
	logf('%s: counter %d, log rows %d, commits seen %d, outcome unknown %d', $k, $v, $n, $c, $u);
	push @lost, "$k: counter $v, $n committed increments" if $v != $n;
	push @client, "$k: $n log rows, clients saw $c COMMITs and $u of unknown outcome"
	  if $n < $c || $n > $c + $u;
}
my @tokens = split /\n/, $c1->safe_psql('postgres', q{
SELECT k || ': v ' || v || ' token ' || token || ' (' || session || ' op ' || op || ') after v ' || pv || ' token ' || pt
  || ' (' || ps || ' op ' || po || ')'
FROM (SELECT *, lag(token) OVER w AS pt, lag(v) OVER w AS pv, lag(session) OVER w AS ps, lag(op) OVER w AS po
      FROM tlog WINDOW w AS (PARTITION BY k ORDER BY v, t_end)) x
WHERE token <= pt ORDER BY k, v LIMIT 20});
my $committed = sum0(map { $rows{$_} // 0 } @keys);

my $total_faults = sum0(values %faults);
my $errors = sum0(map { sum0(values %$_) } values %codes);
my $summary = sprintf('%.0f s of operations, %d operations, %d guarded COMMITs, %d faults (%s), '
	  . 'errors by SQLSTATE: %s', $t_ops, $ctx->{op_seq}, $committed, $total_faults,
	join(', ', map { "$_ $faults{$_}" } sort keys %faults),
	join(', ', map { my $c = $_; "$c " . sum0(values %{ $codes{$c} }) } sort keys %codes));
logf('%s', $summary);
note($summary);
logf('errors by operation: %s', join('; ', map { my $c = $_;
	"$c: " . join(', ', map { "$_ $codes{$c}{$_}" } sort keys %{ $codes{$c} }) } sort keys %codes));

cmp_ok($committed, '>=', 10, "guarded transactions committed ($committed; seed $seed)");
is_deeply(\@lost, [], 'no lost update: each counter equals its committed increments');
is_deeply(\@client, [], 'the log matches the COMMITs the clients saw');
is_deeply(\@tokens, [], 'fencing tokens strictly increase per key in commit order');
is_deeply($violations{deadlock} // [], [], 'no 40P01 outside lock-order inversions');
is_deeply($violations{internal} // [], [], 'no internal error (XX000), from clients or in server logs');
is_deeply($violations{hang} // [], [], 'every step ended within its bound');
is_deeply([ @{ $violations{model} // [] }, @{ $violations{token} // [] } ], [],
	"dlock_held() and dlock_release() agreed with the client's model after every operation");
is_deeply(\@left, [], sprintf('no lock key left in Redis %.0f s after the sessions ended (longest lease %d s)',
	$t_keys - $t_run - $t_ops, $lease));
my @grew = map { "$_->[0]: $_->[1] -> $_->[2] bytes" } grep { $_->[2] - $_->[1] > 2 * 1024 * 1024 } @memory;
logf('memory: %s', join(', ', map { "$_->[0] $_->[1] -> $_->[2]" } @memory));
ok(@memory && !@grew, sprintf('backend memory flat (%d sessions sampled, growth at most 2 MB)%s',
	scalar @memory, @grew ? ': ' . join(', ', @grew) : ''));
is_deeply(\@crashes, [], 'no PANIC, no assertion failure, no crash restart the test did not cause');
ok($total_faults >= $seconds / 10 && $errors > 0, "the faults bit ($total_faults faults, $errors errors seen)");

diag("violations: see $PostgreSQL::Test::Utils::log_path/torture_ops.log (seed $seed)")
  if %violations || @lost || @client || @tokens || @left || @grew || @crashes;
alarm(0);
done_testing();

END
{
	# resume what is stopped, so that the servers can be stopped
	kill 'CONT', $_ for keys %stopped;
	$_->resume for grep { $_->{paused} } @redis;
}
