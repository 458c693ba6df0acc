# TortureOps: the operations a torture session runs, each a queue of steps
# (SQL sent one at a time; a step's handler sees its result and may queue
# more).  Key pools keep the only legitimate deadlocks in one place:
#   g:N    guarded keys: the counter's read-modify-write, taken in one call
#          (one key, or all in canonical order); error blocks take them too
#   s:N    session locks, waited for only by a session holding no other
#          s key (try-once otherwise), so they never form a cycle
#   e:N    keys of error blocks
#   inv:a, inv:b   taken in both orders: the only place 40P01 is allowed
#   big:<session>:N   1,500 keys per session, then the session exits
# $ctx (from torture.pl) has: nolock, lease (the guarded lease), gkeys,
# skeys, counter results (commit, uncertain), violation(), tok().
package TortureOps;

use strict;
use warnings;

use Exporter 'import';
use Time::HiRes ();
our @EXPORT = qw(new_op held_check_step);

sub step
{
	my ($sql, $on, %flags) = @_;
	return { sql => $sql, on => $on, %flags };
}

sub lines { my ($r) = @_; return grep { length } split /\n/, $r->{out} }
sub last_line { my ($r) = @_; my @l = lines($r); return @l ? $l[-1] : '' }
# An error other than the ones listed (expected in that step)?
sub failed
{
	my ($r, @ok) = @_;
	my %ok = map { $_ => 1 } @ok;
	return 1 if grep { !$ok{$_} } @{ $r->{codes} };
	return !@{ $r->{codes} } && $r->{err} =~ /(?:ERROR|FATAL):/;
}
sub quote { my ($s) = @_; $s =~ s/'/''/g; return "'$s'" }

# Pick and build the next operation of session $s.
sub new_op
{
	my ($ctx, $s) = @_;
	my $r = $s->{rng};
	my @choices = (
		guarded => 30, guarded_try => 8, guarded_all => 10, guarded_savepoint => 5,
		guarded_long => 4, session_acquire => 10, session_release => 6,
		session_release_all => 2, error_block => 6, inversion => 4,
		stmt_timeout => 3, discard_all => 3, idle => 5);
	push @choices, big_exit => 1.5 unless $s->{long_lived};
	push @choices, reconnect => 6 if $s->{bouncer};
	my $kind = $r->weighted(@choices);
	my $op = { kind => $kind, steps => [], id => ++$ctx->{op_seq} };
	my $builder = __PACKAGE__->can("op_$kind") or die "no op $kind";
	$builder->($ctx, $s, $op, $r);
	return $op;
}

# The check run after every operation: this session's holds as the
# client's model has them, and no transaction-scoped hold outside a
# transaction.
sub held_check_step
{
	my ($ctx, $s) = @_;
	return step(q{SELECT coalesce(string_agg(key || '=' || holds, ',' ORDER BY key COLLATE "C")
  FILTER (WHERE scope = 'session'), '') || '|' || count(*) FILTER (WHERE scope <> 'session')
FROM dlock_held()}, sub {
		my ($r) = @_;
		return if failed($r);
		my $want = join(',', map { "$_=$s->{model}{$_}" } sort grep { $s->{model}{$_} } keys %{ $s->{model} }) . '|0';
		my $got = last_line($r);
		$ctx->violation('model', "$s->{name}: dlock_held() says '$got', the client expects '$want'"
			  . " (after op $s->{last_op})")
		  if $got ne $want;
		# trust the server from here on, so one divergence is reported once
		%{ $s->{model} } = ();
		if ($got =~ /^([^|]*)\|/)
		{
			for (split /,/, $1) { my ($k, $n) = /^(.*)=(\d+)$/; $s->{model}{$k} = $n; }
		}
	});
}

# --- the guarded read-modify-write of the counter (the invariant's core) ---

sub guarded
{
	my ($ctx, $s, $op, $r, %o) = @_;
	my @keys = @{ $o{keys} };
	my $in = join(', ', map { quote($_) } @keys);
	my $wait = sprintf('%.1f', $r->range(3, 8));
	my $lease = $ctx->{lease};
	my $acquire = $o{acquire};
	my $sleep = $o{sleep} // sprintf('%.3f', $r->range(0.002, 0.010));
	my ($begin, $read, $write, $commit, %read);

	$begin = step("BEGIN;\nSET LOCAL lockext.verify_on_commit = always;\n"
		  . ($ctx->{nolock} ? "SELECT 't'" : $acquire->($in, $wait, $lease)),
		sub {
			my ($res) = @_;
			return push @{ $op->{steps} }, rollback()
			  if failed($res, @{ $o{expect} // [] }) || last_line($res) eq 'f';
			push @{ $op->{steps} }, $read;
		});
	$read = step("SELECT k, v, dlock_token(k), clock_timestamp() FROM counter WHERE k IN ($in) ORDER BY k",
		sub {
			my ($res) = @_;
			%read = map { my @f = split /\|/; ($f[0] => [ @f[ 1 .. 3 ] ]) } lines($res);
			return push @{ $op->{steps} }, rollback() if failed($res) || keys %read != @keys;
			for my $k (@keys)
			{
				next if $ctx->{nolock};
				$ctx->violation('token', "$s->{name} op $op->{id}: no token for $k after acquiring it")
				  unless length $read{$k}[1];
			}
			push @{ $op->{steps} }, $write;
		});
	$write = step(sub {
			join("\n", "SELECT pg_sleep($sleep);",
				map {
					my ($v, $tok, $t) = @{ $read{$_} };
					$tok = $ctx->tok($s) if $ctx->{nolock};
					$tok = 'NULL' unless length $tok;
					("UPDATE counter SET v = " . ($v + 1) . " WHERE k = " . quote($_) . ';',
					 "INSERT INTO tlog VALUES (" . join(', ', quote($_), $v, $tok,
						quote($s->{cluster}), quote($s->{name}), $op->{id}, quote($t),
						'clock_timestamp()') . ');')
				} @keys);
		},
		sub {
			my ($res) = @_;
			return push @{ $op->{steps} }, rollback() if failed($res);
			return push @{ $op->{steps} }, $commit if !$o{before_commit} || $op->{rewritten}++;
			# undo the write (and the lock) and do it again: then commit
			push @{ $op->{steps} }, $o{before_commit}->(\%read,
				sub { push @{ $op->{steps} }, $_[0] ? $write : rollback() });
		});
	$commit = step('COMMIT', sub {
			my ($res) = @_;
			if (!failed($res) && $res->{out} =~ /^COMMIT$/m)
			{
				$ctx->{commits}{$_}++ for @keys;
			}
			elsif (($res->{code} // '') ne '40001')
			{
				# the remote side (postgres_fdw) may have committed
				$ctx->{uncertain}{$_}++ for @keys;
			}
		},
		guarded_commit => 1,
		on_lost => sub { $ctx->{uncertain}{$_}++ for @keys });
	push @{ $op->{steps} }, $begin;
	return;
}

sub rollback { return step('ROLLBACK', sub { }) }

sub gkeys
{
	my ($ctx, $r, $n) = @_;
	my %k;
	$k{ $r->pick(@{ $ctx->{gkeys} }) } = 1 while keys %k < $n;
	return sort keys %k;
}

sub op_guarded
{
	my ($ctx, $s, $op, $r) = @_;
	guarded($ctx, $s, $op, $r, keys => [ gkeys($ctx, $r, 1) ],
		acquire => sub { my ($in, $wait, $lease) = @_; "SELECT dlock_acquire($in, $wait, $lease)" });
}

sub op_guarded_long
{
	my ($ctx, $s, $op, $r) = @_;
	guarded($ctx, $s, $op, $r, keys => [ gkeys($ctx, $r, 1) ],
		sleep => sprintf('%.1f', $r->range(1, 4)),
		acquire => sub { my ($in, $wait, $lease) = @_; "SELECT dlock_acquire($in, $wait, $lease)" });
}

sub op_guarded_try
{
	my ($ctx, $s, $op, $r) = @_;
	guarded($ctx, $s, $op, $r, keys => [ gkeys($ctx, $r, 1) ],
		acquire => sub { my ($in, $wait, $lease) = @_; "SELECT dlock_try_acquire($in, $lease)" });
}

sub op_guarded_all
{
	my ($ctx, $s, $op, $r) = @_;
	my $try = $r->chance(0.3);
	guarded($ctx, $s, $op, $r, keys => [ gkeys($ctx, $r, 2 + $r->int(2)) ],
		acquire => sub {
			my ($in, $wait, $lease) = @_;
			$try ? "SELECT dlock_try_acquire_all(ARRAY[$in], $lease)"
			  : "SELECT dlock_acquire_all(ARRAY[$in], $wait, $lease) IS NOT NULL";
		});
}

# Take the key in a savepoint, write, ROLLBACK TO it (the write and the
# lock must go), then take it again in a savepoint that is released (the
# lock passes to the transaction), write again and commit.
sub op_guarded_savepoint
{
	my ($ctx, $s, $op, $r) = @_;
	my ($k) = gkeys($ctx, $r, 1);
	my $q = quote($k);
	my $nolock = $ctx->{nolock};
	guarded($ctx, $s, $op, $r, keys => [$k], expect => ['22012'],
		acquire => sub { my ($in, $wait, $lease) = @_;
			# an error in a savepoint after the acquire: the lock stays
			"SAVEPOINT a;\nSELECT dlock_acquire($in, $wait, $lease);\nSAVEPOINT b;\nSELECT 1/0;\n"
			  . "ROLLBACK TO SAVEPOINT b;\nSELECT dlock_token($in) IS NOT NULL" },
		before_commit => sub {
			my ($read, $cont) = @_;
			step("ROLLBACK TO SAVEPOINT a;\nSELECT count(*) FROM dlock_held() WHERE key = $q;\n"
				  . "SAVEPOINT c;\n" . ($nolock ? "SELECT 1;\n" : "SELECT dlock_acquire($q, 5, $ctx->{lease});\n")
				  . "RELEASE SAVEPOINT c;\nSELECT v, dlock_token(k) FROM counter WHERE k = $q",
				sub {
					my ($res) = @_;
					my @l = lines($res);
					# ROLLBACK, count, SAVEPOINT, token, RELEASE, v|token
					$ctx->violation('model', "$s->{name} op $op->{id}: $k still held after ROLLBACK TO SAVEPOINT")
					  if !$nolock && @l >= 2 && $l[1] ne '0';
					my $ok = !failed($res) && @l == 6 && $l[5] =~ /^(\d+)\|(\d*)$/;
					@{ $read->{$k} }[ 0, 1 ] = ($1, $2) if $ok;
					$cont->($ok);
				});
		});
	my $begin = $op->{steps}[0];
	my $on = $begin->{on};
	$begin->{on} = sub {
		my ($res) = @_;
		$ctx->violation('model', "$s->{name} op $op->{id}: $k not held after a ROLLBACK TO a later savepoint")
		  if !$nolock && !failed($res, '22012') && last_line($res) eq 'f';
		$on->($res);
	};
	return;
}

# --- session locks ---

sub op_session_acquire
{
	my ($ctx, $s, $op, $r) = @_;
	my $k = $r->pick(@{ $ctx->{skeys} });
	my $others = grep { $_ ne $k && $s->{model}{$_} } keys %{ $s->{model} };
	my $lease = sprintf('%.1f', $r->range(1.5, 4));
	my $q = quote($k);
	my $sql = ($others || $r->chance(0.3))
	  ? "SELECT dlock_try_acquire_session($q, $lease)"
	  : "SELECT dlock_acquire_session($q, " . sprintf('%.1f', $r->range(0, 3)) . ", $lease) IS NOT NULL";
	# sometimes inside a transaction block that then aborts (the session
	# lock stays, as pg_advisory_lock's does)
	my $abort = $r->chance(0.25);
	$sql = "BEGIN;\n$sql;\nSELECT 1/0;\nSELECT 1/0;\nROLLBACK" if $abort;
	push @{ $op->{steps} }, step($sql, sub {
		my ($res) = @_;
		my @l = lines($res);
		my $got = $abort ? ($l[1] // '') : ($l[0] // '');
		$s->{model}{$k}++ if $got eq 't';
	});
}

sub op_session_release
{
	my ($ctx, $s, $op, $r) = @_;
	my @held = sort grep { $s->{model}{$_} } keys %{ $s->{model} };
	my $k = (@held && $r->chance(0.8)) ? $r->pick(@held) : $r->pick(@{ $ctx->{skeys} });
	my $q = quote($k);
	push @{ $op->{steps} }, step("SELECT dlock_release($q)", sub {
		my ($res) = @_;
		return if failed($res);
		my $got = last_line($res);
		my $want = $s->{model}{$k} ? 't' : 'f';
		# a lock lost (its lease ran out under a fault) is released with a WARNING
		$want = 'f' if $res->{err} =~ /WARNING:  01000: lock ".*" was lost/;
		$ctx->violation('model', "$s->{name} op $op->{id}: dlock_release($k) returned '$got', holds $s->{model}{$k}")
		  if $got ne $want && !$s->{model_unsure};
		$s->{model}{$k}-- if $s->{model}{$k} && ($got eq 't' || $res->{err} =~ /was lost/);
	});
}

sub op_session_release_all
{
	my ($ctx, $s, $op, $r) = @_;
	push @{ $op->{steps} }, step('SELECT dlock_release_all()', sub {
		my ($res) = @_;
		%{ $s->{model} } = () unless failed($res);
	});
}

sub op_discard_all
{
	my ($ctx, $s, $op, $r) = @_;
	push @{ $op->{steps} }, step('DISCARD ALL', sub {
		my ($res) = @_;
		%{ $s->{model} } = () unless failed($res);
	});
}

# statement_timeout during a wait for a session lock or many keys
sub op_stmt_timeout
{
	my ($ctx, $s, $op, $r) = @_;
	my $ms = 50 + $r->int(600);
	my $k = $r->pick(@{ $ctx->{skeys} });
	my $others = grep { $_ ne $k && $s->{model}{$_} } keys %{ $s->{model} };
	if ($others || $r->chance(0.5))
	{
		my $in = join(', ', map { quote($_) } gkeys($ctx, $r, 3));
		push @{ $op->{steps} }, step("SET statement_timeout = $ms;\nBEGIN;\n"
			  . "SELECT dlock_acquire_all(ARRAY[$in], 5, $ctx->{lease}) IS NOT NULL;\nSELECT pg_sleep(0.2);\n"
			  . "COMMIT;\nRESET statement_timeout", sub { });
		return;
	}
	my $q = quote($k);
	push @{ $op->{steps} }, step("SET statement_timeout = $ms;\n"
		  . "SELECT dlock_acquire_session($q, 5, 3) IS NOT NULL;\nRESET statement_timeout",
		sub {
			my ($res) = @_;
			my @l = lines($res);
			$s->{model}{$k}++ if @l >= 2 && $l[1] eq 't';
		});
}

# --- errors in blocks ---

sub op_error_block
{
	my ($ctx, $s, $op, $r) = @_;
	my $variant = $r->int(4);
	my $k1 = quote($r->chance(0.5) ? $r->pick(@{ $ctx->{gkeys} }) : 'e:' . $r->int(4));
	my $k2 = quote('e:' . (4 + $r->int(4)));
	my $lease = $ctx->{lease};
	if ($variant == 0)
	{
		# two errors in one block, then COMMIT of the aborted block
		push @{ $op->{steps} }, step("BEGIN;\nSELECT dlock_acquire($k1, 3, $lease);\nSELECT 1/0;\n"
			  . "SELECT 1/0;\nCOMMIT", sub { });
	}
	elsif ($variant == 1)
	{
		# an error in a savepoint, ROLLBACK TO, two more errors, ROLLBACK TO, COMMIT
		my $first_ok;
		push @{ $op->{steps} },
		  step("BEGIN;\nSELECT dlock_acquire($k1, 3, $lease) IS NOT NULL", sub {
			my ($res) = @_;
			$first_ok = !failed($res);
		  }),
		  step("SAVEPOINT s;\nSELECT dlock_acquire($k2, 1, $lease);\nSELECT 1/0;\nROLLBACK TO SAVEPOINT s;\n"
			  . "SELECT '[' || coalesce(string_agg(key, ',' ORDER BY key COLLATE \"C\"), '') || ']' FROM dlock_held() WHERE scope = 'transaction';\n"
			  . "SELECT 1/0;\nSELECT 1/0;\nROLLBACK TO SAVEPOINT s", sub {
			my ($res) = @_;
			my ($held) = map { /^\[(.*)\]$/ ? $1 : () } lines($res);
			(my $want = $k1) =~ s/'//g;
			$ctx->violation('model', "$s->{name} op $op->{id}: after ROLLBACK TO the transaction holds '$held', expected '$want'")
			  if $first_ok && defined $held && $held ne $want;
		  }),
		  step('COMMIT', sub { });
	}
	elsif ($variant == 2)
	{
		# a PL/pgSQL EXCEPTION block releases what it took; the outer error aborts all
		push @{ $op->{steps} }, step(qq{DO \$\$
BEGIN
  PERFORM dlock_acquire($k1, 3, $lease);
  BEGIN
    PERFORM dlock_acquire($k2, 1, $lease);
    PERFORM 1/0;
  EXCEPTION WHEN division_by_zero THEN NULL;
  END;
  IF EXISTS (SELECT 1 FROM dlock_held() WHERE key = $k2) THEN
    RAISE EXCEPTION 'torture: % still held after its EXCEPTION block', $k2 USING ERRCODE = 'LX001';
  END IF;
  PERFORM 1/0;
END
\$\$}, sub {
			my ($res) = @_;
			$ctx->violation('model', "$s->{name} op $op->{id}: $res->{err}") if $res->{err} =~ /LX001/;
		});
	}
	else
	{
		# an error while waiting is not the end: ROLLBACK TO, then a
		# session lock in the same block survives the ROLLBACK
		my $k = $r->pick(@{ $ctx->{skeys} });
		my $others = grep { $_ ne $k && $s->{model}{$_} } keys %{ $s->{model} };
		my $q = quote($k);
		my $fn = $others ? "dlock_try_acquire_session($q, 3)" : "dlock_acquire_session($q, 1, 3) IS NOT NULL";
		push @{ $op->{steps} }, step("BEGIN;\nSAVEPOINT s;\nSELECT dlock_acquire($k1, 0.5, $lease) IS NOT NULL;\n"
			  . "SELECT 1/0;\nROLLBACK TO SAVEPOINT s;\nSELECT $fn;\nSELECT 1/0;\nROLLBACK", sub {
			my ($res) = @_;
			# BEGIN, SAVEPOINT, [t], ROLLBACK, t|f, ROLLBACK
			my @l = lines($res);
			$s->{model}{$k}++ if @l >= 2 && $l[-2] eq 't';
		});
	}
}

# Two keys in an order chosen at random: against another session doing the
# same in the other order, one of them gets 40P01 (legitimate here only).
sub op_inversion
{
	my ($ctx, $s, $op, $r) = @_;
	my @k = $r->chance(0.5) ? ('inv:a', 'inv:b') : ('inv:b', 'inv:a');
	my $lease = $ctx->{lease};
	my $held;
	push @{ $op->{steps} },
	  step("BEGIN;\nSELECT dlock_acquire('$k[0]', 10, $lease) IS NOT NULL", sub {
		my ($res) = @_;
		return push @{ $op->{steps} }, rollback() if failed($res);
		push @{ $op->{steps} },
		  step("SELECT pg_sleep(0.5);\nSELECT dlock_acquire('$k[1]', 10, $lease) IS NOT NULL", sub {
			my ($res) = @_;
			push @{ $op->{steps} }, failed($res) ? rollback() : step('COMMIT', sub { });
		  });
	  });
}

sub op_idle
{
	my ($ctx, $s, $op, $r) = @_;
	$s->{next_at} = Time::HiRes::time() + $r->range(0.1, 1.5);
}

# 1,500 keys in one acquire_all (or as session locks, one by one), then
# COMMIT and exit at once: the exit releases them all.
sub op_big_exit
{
	my ($ctx, $s, $op, $r) = @_;
	my $keys = "array(SELECT 'big:$s->{name}:' || i FROM generate_series(1, 1500) i)";
	my $sql = $r->chance(0.6)
	  ? "BEGIN;\nSELECT cardinality(dlock_acquire_all($keys, 20, $ctx->{lease}));\nCOMMIT"
	  : "SELECT count(dlock_acquire_session(k, 5, $ctx->{lease})) FROM unnest($keys) k";
	push @{ $op->{steps} }, step($sql, sub { }, timeout => 90);
	$op->{exit_after} = 1;
}

# PgBouncer's client leaves and comes back (a server reset: DISCARD ALL)
sub op_reconnect
{
	my ($ctx, $s, $op, $r) = @_;
	$op->{exit_after} = 1;
}

1;
