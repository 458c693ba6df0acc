# The lease keeper: a Redis lock lives as long as its holder can act.  A
# session lock and a long transaction outlive a 2 s lease; a SIGSTOPped
# holder stops being renewed and loses the lock within its lease plus a
# renewal period, and its COMMIT fails; a lock flushed behind its holder's
# back is marked lost within a renewal period and the COMMIT fails even
# with verify_on_commit = auto; the keeper restarts when killed, and locks
# keep working meanwhile; lockext.max_hold and max_idle_hold stop renewal.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('keeper');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '500ms') } ('alpha', 'beta');

sub keeper_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT dlock_keeper_pid()');
}

ok(keeper_pid($a) =~ /^\d+$/, 'the keeper runs as a background worker');

# 1. A session lock with a 2 s lease, held by an idle session for 10 s.
my $s = $a->background_psql('postgres', on_error_stop => 0);
my $spid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_safe("SELECT dlock_acquire_session('report', 5, 2)");
sleep 10;
ok(!free_on($b, 'report'), 'after 10 s (lease 2 s) the idle session still holds it');
is($a->safe_psql('postgres', "SELECT state, renewals > 3 FROM dlock_locks WHERE key = 'report'"),
	'held|t', 'dlock_locks shows it held, renewed by the keeper');
$s->query_safe("SELECT dlock_release('report')");
ok(free_on($b, 'report'), 'released: free');

# 2. A 10 s transaction with a 2 s lease commits without dlock_extend.
$a->safe_psql('postgres', 'CREATE TABLE t (v int)');
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('long', 5, 2)");
$s->query_safe('INSERT INTO t VALUES (1)');
sleep 10;
ok(!free_on($b, 'long'), 'a 10 s transaction keeps its 2 s-lease lock');
$s->query('COMMIT');
is($s->{stderr}, '', 'and commits');
$s->{stderr} = '';
is($a->safe_psql('postgres', 'SELECT count(*) FROM t'), '1', 'its write stands');

# 3. A stopped holder: renewal stops, another cluster gets the key within
#    the lease plus a renewal period, and the stale COMMIT fails.
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('stop', 5, 2)");
$s->query_safe('INSERT INTO t VALUES (2)');
kill 'STOP', $spid;
my $t0 = time;
my $got = $b->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('stop', 10) > 0; COMMIT");
my $took = time - $t0;
kill 'CONT', $spid;
is($got, 't', 'with its holder stopped, the lock goes to another cluster');
cmp_ok($took, '<', 2 + 1 + 1.5, "within the lease and a renewal period (${took}s)");
$s->query('COMMIT');
like($s->{stderr}, qr/lock "stop" was lost before COMMIT/, 'the stopped holder\'s COMMIT fails');
$s->{stderr} = '';
is($a->safe_psql('postgres', 'SELECT count(*) FROM t'), '1', 'and its write is rolled back');

# 4. FLUSHALL under a holder: lost within a renewal period; COMMIT fails
#    with verify_on_commit = auto, without a round trip.
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('flushed', 5, 3)");
$redis->cli('FLUSHALL');
ok($a->poll_query_until('postgres', "SELECT state = 'lost' FROM dlock_locks WHERE key = 'flushed'"),
	'dlock_locks marks the flushed lock lost');
$s->query('COMMIT');
like($s->{stderr}, qr/lock "flushed" was lost before COMMIT/,
	'its COMMIT fails, with verify_on_commit = auto');
$s->{stderr} = '';

# 4b. A session lock flushed: dlock_held shows it lost, dlock_extend and
#     dlock_release warn and return false, and the key can be taken again.
$s->query_safe("SELECT dlock_acquire_session('flushed-s', 5, 3)");
$redis->cli('FLUSHALL');
ok($a->poll_query_until('postgres', "SELECT state = 'lost' FROM dlock_locks WHERE key = 'flushed-s'"),
	'a flushed session lock is marked lost');
is($s->query_safe("SELECT state FROM dlock_held() WHERE key = 'flushed-s'"), 'lost',
	'dlock_held shows it lost');
is($s->query("SELECT dlock_extend('flushed-s')"), 'f', 'dlock_extend returns false');
like($s->{stderr}, qr/WARNING:  lock "flushed-s" was lost/, 'with a WARNING');
$s->{stderr} = '';
is($s->query("SELECT dlock_release('flushed-s')"), 'f', 'dlock_release returns false');
like($s->{stderr}, qr/WARNING:  lock "flushed-s" was lost/, 'with a WARNING');
$s->{stderr} = '';
is($s->query_safe("SELECT count(*) FROM dlock_held()"), '0', 'and the bookkeeping is gone');
is($s->query_safe("SELECT dlock_acquire_session('flushed-s', 1) > 0 AND dlock_release('flushed-s')"), 't',
	'the key can be taken again');

# 5. Kill the keeper: it restarts, renewals resume, locks work meanwhile.
my $k1 = keeper_pid($a);
kill 'TERM', $k1;    # (not a backend in pg_stat_activity: no database)
is($a->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('meanwhile') > 0; COMMIT"), 't',
	'locks work while the keeper is away');
ok($a->poll_query_until('postgres', "SELECT dlock_keeper_pid() <> $k1"),
	'the keeper restarts');
$s->query_safe("SELECT dlock_acquire_session('after', 5, 2)");
sleep 4;
ok(!free_on($b, 'after'), 'and renews again');
$s->query_safe("SELECT dlock_release('after')");

# 6. lockext.max_hold and lockext.max_idle_hold: past them the keeper
#    stops renewing, the lease runs out, and the hold is marked lost.
sub wait_free
{
	my ($key, $limit) = @_;
	my $t = time;
	usleep(100_000) while !free_on($b, $key) && time - $t < $limit;
	return time - $t;
}
$a->safe_psql('postgres', "ALTER SYSTEM SET lockext.max_hold = '2s'; SELECT pg_reload_conf()");
usleep(300_000);
$s->query_safe("SELECT dlock_acquire_session('capped', 5, 1)");
usleep(1_500_000);
ok(!free_on($b, 'capped'), 'under lockext.max_hold the keeper renews (1.5 s into a 1 s lease)');
my $waited = wait_free('capped', 6);
cmp_ok($waited, '<', 3.5, "past max_hold (2 s) the lease runs out (free ${waited}s later)");
is($s->query("SELECT dlock_release('capped')"), 'f',
	'past max_hold the hold is marked lost: dlock_release returns false');
like($s->{stderr}, qr/lock "capped" was lost/, 'with a WARNING');
$s->{stderr} = '';
$a->safe_psql('postgres', "ALTER SYSTEM RESET lockext.max_hold; "
	  . "ALTER SYSTEM SET lockext.max_idle_hold = '2s'; SELECT pg_reload_conf()");
usleep(300_000);
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('idle', 5, 1)");
usleep(1_500_000);
ok(!free_on($b, 'idle'), 'idle in transaction under max_idle_hold: renewed');
$waited = wait_free('idle', 6);
cmp_ok($waited, '<', 3.5, "past max_idle_hold (2 s) the lease runs out (free ${waited}s later)");
$s->query('COMMIT');
like($s->{stderr}, qr/lock "idle" was lost before COMMIT/, 'and the idle holder\'s COMMIT fails');
$s->{stderr} = '';
$a->safe_psql('postgres', "ALTER SYSTEM RESET lockext.max_idle_hold; SELECT pg_reload_conf()");

$s->quit;
$_->stop for ($a, $b);
done_testing();
