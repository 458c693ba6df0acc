# Liveness of a holder (issue 19, A1, A5 and the heartbeat item of C): a
# Redis hold is renewed while the process that took it lives and can act,
# whatever path PostgreSQL's error recovery took, and only then.
#   1. a session lock with a 2 s lease outlives every error path of a
#      transaction block: two errors in one block, ROLLBACK TO after an
#      error and COMMIT of an aborted block, PL/pgSQL EXCEPTION blocks,
#      an ERROR inside a procedure's transaction, PREPARE TRANSACTION;
#   2. FATAL in a nested block ends the session and frees its locks;
#   3. an idle backend does not wake: not after holding a Redis lock, not
#      while holding one (no timer in the backend);
#   4. rows whose process is gone (an exit that failed midway, simulated
#      with lockext.debug_skip_exit_cleanup) are released by the keeper,
#      not renewed, also when another backend takes the same slot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('live');
my $a = start_lockext_cluster('alpha', $redis->url, '500ms');
$a->append_conf('postgresql.conf', "max_prepared_transactions = 2\n");
$a->restart;
my $b = start_lockext_cluster('beta', $redis->url, '500ms');

# 1. Each path in a session of its own, all idle together afterwards.
my @paths = (
	[ 'two errors in one block, then ROLLBACK',
	  [ 'BEGIN', 'SELECT 1/0', 'SELECT 1', 'ROLLBACK' ] ],
	[ 'ROLLBACK TO after an error, an error again, COMMIT of the aborted block',
	  [ 'BEGIN', 'SAVEPOINT s', 'SELECT 1/0', 'ROLLBACK TO s', 'SELECT 1/0', 'SELECT 1', 'COMMIT' ] ],
	[ 'PL/pgSQL EXCEPTION blocks, then an uncaught error',
	  [ q{DO $$ BEGIN BEGIN PERFORM 1/0; EXCEPTION WHEN division_by_zero THEN NULL; END; PERFORM 1/0; END $$},
	    'SELECT 1/0' ] ],
	[ 'an ERROR inside a procedure that commits, in an aborted block',
	  [ q{CREATE PROCEDURE p_err() LANGUAGE plpgsql AS $$ BEGIN COMMIT; PERFORM 1/0; END $$},
	    'CALL p_err()', 'BEGIN', 'SELECT 1/0', 'CALL p_err()', 'END' ] ],
	[ 'PREPARE TRANSACTION and COMMIT PREPARED, then an error in a block',
	  [ 'CREATE TABLE IF NOT EXISTS prep (v int)', 'BEGIN', 'INSERT INTO prep VALUES (1)',
	    "PREPARE TRANSACTION 'p1'", "COMMIT PREPARED 'p1'", 'BEGIN', 'SELECT 1/0', 'SELECT 1/0', 'ROLLBACK' ] ],
);
my @sessions;
for my $i (0 .. $#paths)
{
	my $s = $a->background_psql('postgres', on_error_stop => 0);
	$s->query_safe("SELECT dlock_acquire_session('live$i', 5, 2)");
	$s->query($_) for @{ $paths[$i][1] };
	$s->{stderr} = "";
	push @sessions, $s;
}
sleep 7;	# more than three leases without a word from the holders
for my $i (0 .. $#paths)
{
	ok(!free_on($b, "live$i"), "after $paths[$i][0], the idle holder keeps its 2 s lease lock for 7 s");
	is($sessions[$i]->query_safe("SELECT state FROM dlock_held() WHERE key = 'live$i'"), 'held',
		'and dlock_held() says held');
}
is($a->safe_psql('postgres', q{SELECT count(*) FROM dlock_locks WHERE key LIKE 'live%' AND state = 'held' AND renewals >= 3}),
	scalar(@paths), 'dlock_locks: all held and renewed by the keeper');
for my $i (0 .. $#paths)
{
	$sessions[$i]->query_safe("SELECT dlock_release('live$i')");
	ok(free_on($b, "live$i"), "released: live$i is free");
}

# 2. FATAL in a nested block: the session ends, its locks come free.
my $f = $a->background_psql('postgres', on_error_stop => 0);
$f->query_safe("SELECT dlock_acquire_session('fatal', 5, 30)");
$f->query_safe('BEGIN');
$f->query_safe("SELECT dlock_acquire('fatal_x', 5, 30)");
$f->query_safe('SAVEPOINT a');
eval { $f->query('SELECT pg_terminate_backend(pg_backend_pid())') };
my $t0 = time;
usleep(100_000) until (free_on($b, 'fatal') && free_on($b, 'fatal_x')) || time - $t0 > 10;
ok(time - $t0 < 3, sprintf('FATAL in a nested block: both locks (30 s leases) free after %.1f s', time - $t0));
eval { $f->quit };

# 3. No timer: an idle backend, after holding and while holding, does not wake.
sub switches
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/status" or return -1;
	my ($n) = map { /^voluntary_ctxt_switches:\s+(\d+)/ ? $1 : () } <$fh>;
	close $fh;
	return $n;
}
my $w = $a->background_psql('postgres', on_error_stop => 0);
my $wpid = $w->query_safe('SELECT pg_backend_pid()');
$w->query_safe("SELECT dlock_acquire_session('wake', 5, 2)");
$w->query_safe("SELECT dlock_release('wake')");
sleep 1;
my $before = switches($wpid);
sleep 3;
my $woke = switches($wpid) - $before;
ok($woke < 4, "an idle backend that held a Redis lock does not wake (woke $woke times in 3 s)");
$w->query_safe("SELECT dlock_acquire_session('wake', 5, 2)");
sleep 1;
$before = switches($wpid);
sleep 3;
$woke = switches($wpid) - $before;
ok($woke < 4, "an idle backend holding a Redis lock does not wake (woke $woke times in 3 s)");
ok(!free_on($b, 'wake'), 'and its 2 s lease lock is held 4 s later');
$w->quit;
usleep(100_000) until free_on($b, 'wake') || time - $t0 > 20;

# 4. Orphan rows: an exit that fails midway (simulated) leaves its rows;
#    the keeper sees the process gone and releases them.  A new backend,
#    very likely in the same slot, holds a lock of its own meanwhile.
my $o = $a->background_psql('postgres', on_error_stop => 0);
$o->query_safe("SELECT dlock_acquire_session('orphan', 5, 2)");
$o->query_safe('SET lockext.debug_skip_exit_cleanup = on');
$o->quit;
my $n = $a->background_psql('postgres', on_error_stop => 0);
$n->query_safe("SELECT dlock_acquire_session('newcomer', 5, 2)");
$t0 = time;
usleep(100_000) until free_on($b, 'orphan') || time - $t0 > 10;
ok(time - $t0 < 4, sprintf('the orphan of a failed exit is free after %.1f s (2 s lease)', time - $t0));
sleep 3;
ok(free_on($b, 'orphan'), 'and stays free (not renewed for the slot\'s new backend)');
$t0 = time;
usleep(100_000) until $a->safe_psql('postgres', q{SELECT count(*) FROM dlock_locks WHERE key = 'orphan'}) eq '0' || time - $t0 > 5;
is($a->safe_psql('postgres', q{SELECT count(*) FROM dlock_locks WHERE key = 'orphan'}), '0',
	'its row is gone from dlock_locks');
ok(!free_on($b, 'newcomer'), 'the new backend\'s own lock is renewed');
$n->quit;

$_->stop for ($a, $b);
done_testing();
