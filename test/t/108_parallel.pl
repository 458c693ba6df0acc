# dlock functions in a parallel worker (issue 19, E): a function wrongly
# marked PARALLEL SAFE could run them in a worker, whose registry is its
# own and empty: on Redis it saw false for keys the leader holds.  They
# are refused there with 0A000, on both backends.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('parallel');
my $node = start_lockext_cluster('par', $redis->url, '500ms');
$node->safe_psql('postgres', q{
CREATE DATABASE adv;
ALTER DATABASE adv SET lockext.backend = 'advisory';
CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g;
CREATE FUNCTION wrongly_safe(k text) RETURNS boolean LANGUAGE sql PARALLEL SAFE
  AS $$ SELECT dlock_try_acquire_session(k) $$;
});
$node->safe_psql('adv', q{
CREATE EXTENSION lockext;
CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g;
CREATE FUNCTION wrongly_safe(k text) RETURNS boolean LANGUAGE sql PARALLEL SAFE
  AS $$ SELECT dlock_try_acquire_session(k) $$;
});
my $parallel = 'SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; '
  . 'SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; '
  . 'SET parallel_leader_participation = off;';
for my $db ('postgres', 'adv')
{
	my $backend = $db eq 'adv' ? 'advisory' : 'redis';
	my ($ret, $out, $err) = $node->psql($db,
		"$parallel SELECT dlock_acquire_session('lead'); "
		  . "EXPLAIN (COSTS OFF) SELECT count(*) FROM t WHERE wrongly_safe('lead');");
	like($out, qr/Gather/, "$backend: the plan runs the function in parallel workers");
	($ret, $out, $err) = $node->psql($db,
		"\\set VERBOSITY verbose\n$parallel SELECT dlock_acquire_session('lead'); "
		  . "SELECT count(*) FROM t WHERE wrongly_safe('lead');");
	like($err, qr/ERROR:  0A000: dlock functions cannot run in a parallel worker/,
		"$backend: refused in a parallel worker with 0A000");
	like($err, qr/HINT:  Mark the function that calls them PARALLEL UNSAFE/, 'with a hint');
	is($node->safe_psql($db, "SELECT dlock_try_acquire_session('lead')"), 't',
		"$backend: nothing was left held");
}
$node->stop;
done_testing();
