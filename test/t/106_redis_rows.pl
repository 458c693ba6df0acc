# The lease keeper's table is not the view's (issue 19, A4): every Redis
# hold has its row, so lockext.max_tracked_locks (a cap on dlock_locks)
# never turns renewal off; lockext.max_redis_locks caps Redis holds, and
# beyond it a new Redis lock is refused with 53200 and nothing is left
# held.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('rows');
my $a = start_lockext_cluster('alpha', $redis->url, '500ms');
my $b = start_lockext_cluster('beta', $redis->url, '500ms');

# 1. The view's cap at 0: Redis locks are still renewed.
$a->safe_psql('postgres', 'ALTER SYSTEM SET lockext.max_tracked_locks = 0; SELECT pg_reload_conf()');
my $s = $a->background_psql('postgres', on_error_stop => 0);
$s->query_safe("SELECT dlock_acquire_session('capped', 5, 2)");
$s->query_safe("SELECT dlock_acquire_session('capped2', 5, 2)");
sleep 6;
ok(!free_on($b, 'capped'), 'max_tracked_locks = 0: a 2 s-lease session lock is still held 6 s later');
ok(!free_on($b, 'capped2'), 'and so is the second');
is($a->safe_psql('postgres', q{SELECT count(*) FROM dlock_locks WHERE key LIKE 'capped%' AND renewals > 0}), '2',
	'its rows are in dlock_locks (Redis holds are not subject to the view\'s cap), renewed');
$s->query_safe('SELECT dlock_release_all()');
ok(free_on($b, 'capped'), 'released: free');

# 2. lockext.max_redis_locks = 2: the third Redis lock is refused with 53200.
$a->safe_psql('postgres', 'ALTER SYSTEM SET lockext.max_redis_locks = 2; SELECT pg_reload_conf()');
$s->query_safe('\set VERBOSITY verbose');
$s->query_safe("SELECT dlock_acquire_session('r1', 5, 30)");
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('r2', 5, 30)");
$s->{stderr} = '';
$s->query("SELECT dlock_acquire_session('r3', 5, 30)");
like($s->{stderr}, qr/ERROR:  53200: too many Redis locks are held on this instance to take lock "r3"/,
	'the third Redis lock is refused with 53200');
like($s->{stderr}, qr/HINT:  .*lockext\.max_redis_locks/, 'with a hint');
$s->query('ROLLBACK');
$s->{stderr} = '';
ok(free_on($b, 'r3'), 'nothing of the refused lock is held in Redis');
ok(free_on($b, 'r2'), 'the transaction lock went with the rollback');
ok(!free_on($b, 'r1'), 'the first session lock is still held');
is($s->query_safe('SELECT count(*) FROM dlock_held()'), '1', 'dlock_held() shows just it');
is($s->query_safe("SELECT dlock_try_acquire_session('r4', 30)"), 't',
	'with room again (r2 gone) a Redis lock can be taken');
$s->query_safe('SELECT dlock_release_all()');

# 3. With the caps back, many holds: every one is renewed.
$a->safe_psql('postgres', 'ALTER SYSTEM RESET lockext.max_redis_locks; ALTER SYSTEM RESET lockext.max_tracked_locks; SELECT pg_reload_conf()');
$s->quit;
$_->stop for ($a, $b);
done_testing();
