# DISCARD ALL and pg_advisory_unlock_all() (issue 19, A3): they release
# every session lock of the user lock method, ours too, and the Redis
# locks go with them at once (not at the next look at the registry, and
# never renewed as orphans).  PgBouncer in session mode resets a server
# connection with DISCARD ALL when its client leaves: a client that
# disconnects while holding a session lock frees it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('discard');
my $a = start_lockext_cluster('alpha', $redis->url, '500ms');
my $b = start_lockext_cluster('beta', $redis->url, '500ms');

sub wait_free
{
	my ($key) = @_;
	my $t = time;
	usleep(50_000) while !free_on($b, $key) && time - $t < 10;
	return time - $t;
}

my $s = $a->background_psql('postgres', on_error_stop => 0);
for my $case ([ 'DISCARD ALL', 'DISCARD ALL' ],
	[ 'pg_advisory_unlock_all()', 'SELECT pg_advisory_unlock_all()' ],
	[ 'pg_advisory_unlock_all() in a PL/pgSQL block that goes on',
	  q{DO $$ BEGIN PERFORM pg_advisory_unlock_all(); PERFORM pg_sleep(0.1); END $$} ])
{
	my ($what, $sql) = @$case;
	$s->query_safe("SELECT dlock_acquire_session('k$_', 5, 30)") for 1 .. 3;
	$s->query_safe("SELECT dlock_acquire_session('k1', 5, 30)");	# held twice
	$s->query_safe($sql);
	my $t = time;
	my $all = 1;
	$all &&= wait_free("k$_") < 1.5 for 1 .. 3;
	ok($all, "after $what the Redis locks (30 s leases) are free at once");
	is($a->safe_psql('postgres', q{SELECT count(*) FROM dlock_locks WHERE key LIKE 'k_'}), '0',
		'and gone from dlock_locks');
	is($s->query_safe('SELECT count(*) FROM dlock_held()'), '0', 'dlock_held() is empty');
	sleep 1;
	ok(free_on($b, 'k1'), 'and nothing renews them');
}
# a lock taken afterwards is an ordinary one
$s->query_safe("SELECT dlock_acquire_session('after', 5, 30)");
ok(!free_on($b, 'after'), 'a session lock taken after DISCARD ALL holds');
is($s->query_safe("SELECT dlock_release('after')"), 't', 'and is released normally');
$s->quit;

# PgBouncer in session mode (its default reset query: DISCARD ALL).
my $via = start_pgbouncer($a, 'session', ['postgres'], 'server_reset_query = DISCARD ALL',
	'default_pool_size = 1');
ok(1, 'pgbouncer listens');
my $c = $via->background_psql('postgres', on_error_stop => 0);
my $server_pid = $c->query_safe('SELECT pg_backend_pid()');
$c->query_safe("SELECT dlock_acquire_session('pooled', 5, 30)");
ok(!free_on($b, 'pooled'), 'a client of pgbouncer (session mode) holds a session lock');
$c->quit;
my $took = wait_free('pooled');
ok($took < 2, sprintf('the client left: the lock (30 s lease) is free %.1f s later', $took));
is($a->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $server_pid"), '1',
	'while the pooled server connection lives on');
$_->stop for ($a, $b);
done_testing();
