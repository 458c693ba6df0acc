# The privilege model and the scope of a key, with a real cluster and
# Redis.  What PUBLIC may call, which settings only superusers may change
# (by SET, ALTER ROLE or ALTER DATABASE), and where a key is unique: per
# database on the advisory backend, per namespace on Redis, where a
# namespace can be given to each database with ALTER DATABASE ... SET.
# (Password masking in SHOW, pg_settings, errors and the log after an
# authentication failure: 010_redis.pl, section 13.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('security');
my $a = start_lockext_cluster('alpha', $redis->url, '500ms');
$a->safe_psql('postgres', q{
CREATE ROLE plain LOGIN;
CREATE DATABASE db1 OWNER plain;
CREATE DATABASE db2 OWNER plain;
});
$a->safe_psql($_, 'CREATE EXTENSION lockext') for ('db1', 'db2');

# 1. PUBLIC may call every dlock_* function but two: resetting the
#    statistics and reading the Redis nodes (pg_monitor's).
is($a->safe_psql('postgres', q{
SELECT string_agg(p.proname || '=' || has_function_privilege('plain', p.oid, 'EXECUTE')::char, ',' ORDER BY p.proname)
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'lockext')
   AND d.classid = 'pg_proc'::regclass}),
	join(',', (map { "$_=t" } qw(dlock_acquire dlock_acquire_all dlock_acquire_session dlock_extend dlock_held
		dlock_holder dlock_keeper_pid dlock_locks_internal)),
		'dlock_redis_nodes_internal=f', 'dlock_release=t', 'dlock_release_all=t',
		'dlock_stats_internal=t', 'dlock_stats_reset=f',
		(map { "$_=t" } qw(dlock_token dlock_try_acquire dlock_try_acquire_all dlock_try_acquire_session))),
	'PUBLIC may execute fifteen of the seventeen dlock_* functions (dlock_locks_internal filters by role)');
is($a->safe_psql('postgres',
	"SELECT has_sequence_privilege('plain', 'dlock_fence_seq', 'USAGE,UPDATE,SELECT')"),
	'f', 'but not touch the fence sequence (tokens only come with a lock)');
is($a->safe_psql('postgres', "SET ROLE plain; SELECT dlock_acquire('as-plain') > 0"), 't',
	'a plain role takes locks (redis backend)');

# 2. Who may change what: anything that could weaken mutual exclusion is
#    superuser-only, whether by SET, ALTER ROLE or ALTER DATABASE.
is($a->safe_psql('postgres', q{
SELECT string_agg(name || '=' || context, ',' ORDER BY name) FROM pg_settings WHERE name LIKE 'lockext.%'}),
	'lockext.backend=superuser,lockext.command_timeout=superuser,lockext.connect_timeout=superuser,'
	  . 'lockext.fallback=superuser,lockext.lease=user,lockext.max_hold=sighup,'
	  . 'lockext.max_idle_hold=sighup,lockext.max_redis_locks=sighup,lockext.max_tracked_locks=sighup,'
	  . 'lockext.namespace=superuser,lockext.redis_passfile=superuser,lockext.session_locks=superuser,'
	  . 'lockext.verify_on_commit=user,lockext.wait_timeout=user',
	'the settings and who may set them (lockext.redis_nodes has no row: see 080)');
for my $set ("SET lockext.namespace = 'other'", "SET lockext.fallback = 'advisory'",
	"SET lockext.backend = 'advisory'", "SET lockext.redis_nodes = 'redis://127.0.0.1:1'",
	"SET lockext.command_timeout = '1h'", "ALTER DATABASE db1 SET lockext.namespace = 'mine'",
	"ALTER ROLE plain SET lockext.fallback = 'advisory'")
{
	my ($ret, $out, $err) = $a->psql('db1', "SET ROLE plain; $set");
	like($err, qr/permission denied to set parameter "lockext\.\w+"/, "plain role: $set is refused");
}
my ($ret, $out, $err) = $a->psql('db1',
	"SET ROLE plain; SET lockext.wait_timeout = '2s'; SET lockext.lease = '1min'; "
	  . "SET lockext.verify_on_commit = 'always'; SHOW lockext.lease");
is($out, '1min', 'plain role sets its own wait timeout, lease and verification');

# 3. Scope of a key on the advisory backend: one database.
$a->safe_psql('postgres', "ALTER SYSTEM SET lockext.backend = 'advisory'; SELECT pg_reload_conf()");
my $s1 = $a->background_psql('db1', on_error_stop => 0);
$s1->query_safe("SELECT dlock_acquire_session('shared-name')");
is($a->safe_psql('db2', "SELECT dlock_try_acquire('shared-name')"), 't',
	'advisory: the same key in another database is another lock');
is($a->safe_psql('db1', "SELECT dlock_try_acquire('shared-name')"), 'f',
	'advisory: in the same database it is the same lock');
$s1->query_safe("SELECT dlock_release('shared-name')");
$s1->quit;
$a->safe_psql('postgres', "ALTER SYSTEM RESET lockext.backend; SELECT pg_reload_conf()");

# 4. Scope on Redis: the namespace.  Databases share the default one; a
#    superuser gives each database its own with ALTER DATABASE ... SET.
$s1 = $a->background_psql('db1', on_error_stop => 0);
$s1->query_safe("SELECT dlock_acquire_session('shared-name')");
is($a->safe_psql('db2', "SELECT dlock_try_acquire('shared-name')"), 'f',
	'redis, one namespace: the same key in another database is the same lock');
$s1->query_safe("SELECT dlock_release('shared-name')");
$s1->quit;
$a->safe_psql('postgres', "ALTER DATABASE db1 SET lockext.namespace = 'db1'; "
	. "ALTER DATABASE db2 SET lockext.namespace = 'db2'");
$s1 = $a->background_psql('db1', on_error_stop => 0);
is($s1->query_safe('SHOW lockext.namespace'), 'db1', 'ALTER DATABASE gave db1 its namespace');
$s1->query_safe("SELECT dlock_acquire_session('shared-name')");
is($redis->cli('EXISTS', 'db1:lock:shared-name'), '1', 'the key lives under db1: in Redis');
is($a->safe_psql('db2', "SELECT dlock_try_acquire('shared-name')"), 't',
	'redis, a namespace per database: the same key in db2 is another lock');
is($a->safe_psql('db1', "SELECT dlock_try_acquire('shared-name')"), 'f',
	'and in db1 it is the same lock');
($ret, $out, $err) = $a->psql('db1', "SET ROLE plain; SET lockext.namespace = 'db2'");
like($err, qr/permission denied/, 'the database owner cannot move its sessions to another namespace');
$s1->query_safe("SELECT dlock_release('shared-name')");
$s1->quit;

$a->stop;
done_testing();
