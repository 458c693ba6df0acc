# Without shared_preload_libraries.  On PostgreSQL 17 and later lockext's
# shared tables come from the DSM registry, so the advisory backend's holds
# and waits show in dlock_locks and dlock_stats counts them, with zero
# setup; a session that exits holding locks leaves nothing shown.  Before
# 17 those views refuse (55000) and locking works regardless.  In both,
# dlock_redis_nodes (the lease keeper's) needs preloading.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $np = PostgreSQL::Test::Cluster->new('nopreload');
$np->init;
$np->start;
$np->safe_psql('postgres', 'CREATE EXTENSION lockext');
my $registry = $np->safe_psql('postgres', 'SHOW server_version_num') >= 170000;

# two holders, and a waiter behind the first
my $s1 = $np->background_psql('postgres', on_error_stop => 0);
my $p1 = $s1->query_safe('SELECT pg_backend_pid()');
$s1->query_safe("SELECT dlock_acquire_session('np:a') > 0");
my $s2 = $np->background_psql('postgres', on_error_stop => 0);
my $p2 = $s2->query_safe('SELECT pg_backend_pid()');
$s2->query_safe("BEGIN; SELECT dlock_acquire('np:b') > 0");
my $w = $np->background_psql('postgres', on_error_stop => 0);
my $pw = $w->query_safe('SELECT pg_backend_pid()');
$w->query_until(qr/queued/, "\\echo queued\nSELECT dlock_acquire_session('np:a', 60) > 0;\n");
ok($np->poll_query_until('postgres',
	"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pw"),
	'the third session waits behind the first');

my ($ret, $out, $err);
if ($registry)
{
	is($np->safe_psql('postgres',
		"SELECT string_agg(key || ' ' || coalesce(scope, '-') || ' ' || backend || ' ' || state || ' ' || "
		  . "(pid = $p1)::text || (pid = $p2)::text || (pid = $pw)::text || ' ' || "
		  . "coalesce(blocked_by_pid = $p1, false)::text, ', ' ORDER BY key, state) FROM dlock_locks"),
		'np:a session advisory held truefalsefalse false, np:a - advisory waiting falsefalsetrue true, '
		  . 'np:b transaction advisory held falsetruefalse false',
		'17+, not preloaded: dlock_locks shows both holds and the wait');
}
else
{
	($ret, $out, $err) = $np->psql('postgres', "\\set VERBOSITY verbose\nSELECT * FROM dlock_locks");
	like($err, qr/ERROR:  55000: dlock_locks needs lockext in shared_preload_libraries/,
		'before 17, not preloaded: dlock_locks fails with 55000');
}

# the waiter gets the lock when the first session exits holding it
$s1->quit;
ok($np->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_locks WHERE pid = $pw AND locktype = 'advisory' AND granted"),
	'the waiter is granted');
$s2->query_safe('COMMIT');

if ($registry)
{
	is($np->safe_psql('postgres',
		"SELECT acquired, acquired_after_wait, waits_10ms + waits_100ms + waits_1s + waits_10s + waits_longer "
		  . "FROM dlock_stats WHERE datname = 'postgres'"),
		'2|1|1', 'dlock_stats counts two acquisitions without a wait, one after it, and the wait');
	is($np->safe_psql('postgres',
		"SELECT string_agg(key || ' ' || (pid = $pw)::text, ', ') FROM dlock_locks"),
		'np:a true', 'what the exited session held is gone from dlock_locks');

	# a session that ends holding a lock leaves its rows for others to sweep
	for my $i (1 .. 3)
	{
		$np->safe_psql('postgres', "SELECT dlock_acquire_session('np:left$i') > 0");
	}
	is($np->safe_psql('postgres', 'SELECT count(*) FROM dlock_locks'), '1',
		'exits holding locks: only the waiter\'s hold is shown');
	$np->safe_psql('postgres', 'SELECT dlock_stats_reset()');
	is($np->safe_psql('postgres', "SELECT acquired FROM dlock_stats WHERE datname = 'postgres'"),
		'0', 'dlock_stats_reset() works');
}
else
{
	($ret, $out, $err) = $np->psql('postgres', "\\set VERBOSITY verbose\nSELECT * FROM dlock_stats");
	like($err, qr/ERROR:  55000: dlock_stats needs lockext in shared_preload_libraries/,
		'before 17, not preloaded: dlock_stats fails with 55000');
}
($ret, $out, $err) = $np->psql('postgres', "\\set VERBOSITY verbose\nSELECT * FROM dlock_redis_nodes");
like($err, qr/ERROR:  55000: dlock_redis_nodes needs lockext in shared_preload_libraries/,
	'dlock_redis_nodes needs preloading on every version');

$w->quit;
$s2->quit;
$np->stop;
done_testing();
