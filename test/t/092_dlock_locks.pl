# Version 1.1: the dlock_locks view (every hold and wait on this instance,
# by key text, from shared memory) and the upgrade from 1.0.  Holds and
# waits with their blockers, locally and across clusters; what other roles
# may see; 100,000 keys in one transaction; the cap on tracked rows;
# 1.0 + ALTER EXTENSION UPDATE equals a fresh 1.1, and locks
# held across the update keep working.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('locks');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '500ms') } ('alpha', 'beta');
$a->append_conf('postgresql.conf', "max_locks_per_transaction = 2600\n");
$a->restart;

# 1. A session lock, and a local waiter queued behind it.
my $h = $a->background_psql('postgres', on_error_stop => 0);
my $hpid = $h->query_safe('SELECT pg_backend_pid()');
$h->query_safe("SET application_name = 'holder'");
my $token = $h->query_safe("SELECT dlock_acquire_session('balance:42', 5, 30)");
is($a->safe_psql('postgres',
	"SELECT key, scope, backend, state, pid, database, application_name, token, "
	  . "acquired_at IS NOT NULL, lease_expires_at > now(), renewals FROM dlock_locks"),
	"balance:42|session|redis|held|$hpid|postgres|holder|$token|t|t|0",
	'dlock_locks shows the hold by its key text');

my $w = $a->background_psql('postgres', on_error_stop => 0);
my $wpid = $w->query_safe('SELECT pg_backend_pid()');
$w->query_until(qr/queued/, "\\echo queued\nBEGIN; SELECT dlock_acquire('balance:42', 30) > 0;\n");
ok($a->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM dlock_locks WHERE state = 'waiting' AND pid = $wpid"),
	'and the waiter on the local queue');
is($a->safe_psql('postgres',
	"SELECT key, scope IS NULL, wait_start IS NOT NULL, acquired_at IS NULL, blocked_by_pid, "
	  . "blocked_by_instance FROM dlock_locks WHERE state = 'waiting'"),
	"balance:42|t|t|t|$hpid|alpha", 'blocked by the holder, on this instance');

# 2. A waiter on another cluster: blocked by the remote holder Redis names.
my $r = $b->background_psql('postgres', on_error_stop => 0);
my $rpid = $r->query_safe('SELECT pg_backend_pid()');
$r->query_until(qr/queued/, "\\echo queued\nBEGIN; SELECT dlock_acquire('balance:42', 30) > 0;\n");
ok($b->poll_query_until('postgres',
	"SELECT blocked_by_instance = 'alpha' AND blocked_by_pid = $hpid FROM dlock_locks "
	  . "WHERE state = 'waiting' AND pid = $rpid"),
	'a waiter on beta is shown blocked by the holder on alpha');

# (the two waiters would race for the lock: there is no FIFO across
# instances; beta's gives up, so the handoff below is alpha's)
$b->safe_psql('postgres', "SELECT pg_cancel_backend($rpid)");
$r->query('ROLLBACK');
$r->{stderr} = '';
ok($b->poll_query_until('postgres', 'SELECT count(*) = 0 FROM dlock_locks'),
	'a cancelled wait leaves dlock_locks');

$h->query_safe("SELECT dlock_release('balance:42')");
like($w->query("SELECT 'woken'"), qr/^t\nwoken$/m, 'the local waiter got the lock');
is($a->safe_psql('postgres', "SELECT scope || ':' || state || ':' || pid FROM dlock_locks"),
	"transaction:held:$wpid", 'dlock_locks follows: one transaction-scoped hold');
$w->query_safe('COMMIT');
is($a->safe_psql('postgres', 'SELECT count(*) FROM dlock_locks'), '0', 'nothing left on alpha');
is($b->safe_psql('postgres', 'SELECT count(*) FROM dlock_locks'), '0', 'nor on beta');

# 3. Other roles' keys: only for superusers and pg_read_all_stats members.
$a->safe_psql('postgres',
	'CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats');
my $al = $a->background_psql('postgres', on_error_stop => 0);
$al->query_safe("SET ROLE alice");
$al->query_safe("SELECT dlock_acquire_session('alice:secret', 5, 30)");
my $bo = $a->background_psql('postgres', on_error_stop => 0);
$bo->query_safe("SET ROLE bob");
$bo->query_safe("SELECT dlock_acquire_session('bob:own', 5, 30)");
is($a->safe_psql('postgres', "SET ROLE bob; SELECT string_agg(key, ',' ORDER BY key) FROM dlock_locks"),
	'bob:own', 'a plain role sees only its own keys');
is($a->safe_psql('postgres', "SET ROLE watcher; SELECT string_agg(key || '/' || usename, ',' ORDER BY key) FROM dlock_locks"),
	'alice:secret/alice,bob:own/bob', 'pg_read_all_stats members see every key');
$al->query_safe("SELECT dlock_release_all()");
$bo->query_safe("SELECT dlock_release_all()");

# 4. 100,000 keys in one transaction (advisory backend: the local lock
#    table is the limit there).
$h->query_safe("SET lockext.backend = 'advisory'");
$h->query_safe('BEGIN');
is($h->query_safe("SELECT count(dlock_acquire('many:' || i)) FROM generate_series(1, 100000) i"),
	'100000', 'a transaction takes 100,000 locks');
is($a->safe_psql('postgres', "SELECT count(*) FROM dlock_locks WHERE key LIKE 'many:%'"),
	'100000', 'dlock_locks shows all 100,000');
$h->query_safe('COMMIT');
is($a->safe_psql('postgres', 'SELECT count(*) FROM dlock_locks'), '0', 'and none after COMMIT');

# 5. Beyond lockext.max_tracked_locks: locking goes on, the view says rows
#    are missing.  The cap is the view's: it applies to advisory holds and
#    waits (Redis holds always have their row, the keeper renews from it:
#    106_redis_rows.pl).
$b->append_conf('postgresql.conf', "lockext.max_tracked_locks = 5\n");
$b->restart;
my ($ret, $out, $err) = $b->psql('postgres', q{
	SET lockext.backend = 'advisory';
	BEGIN;
	SELECT count(dlock_acquire('cap:' || i)) FROM generate_series(1, 8) i;
	RESET lockext.backend;
	SELECT count(dlock_acquire('redis:' || i)) FROM generate_series(1, 3) i;
	SELECT count(*) FROM dlock_locks;
	COMMIT;});
is($out, "8\n3\n8", 'over the cap every advisory lock is taken, five are shown, and the three Redis holds');
like($err, qr/WARNING:  3 dlock holds and waits are missing from dlock_locks/,
	'and a WARNING counts the missing rows');
($ret, $out, $err) = $b->psql('postgres', 'SELECT count(*) FROM dlock_locks');
is($out . $err, '0', 'once released, none is missing any more');

# 6. (Without preloading: 122_no_preload.pl.)

# 7. Upgrade: 1.0 + ALTER EXTENSION UPDATE is a fresh 1.1, and a lock held
#    across the update keeps working.
my $catalog = q{
SELECT string_agg(d, E'\n' ORDER BY d) FROM (
  SELECT pg_describe_object(dep.classid, dep.objid, dep.objsubid) || ' ' ||
         coalesce(CASE dep.classid
           WHEN 'pg_proc'::regclass THEN
             (SELECT pg_get_functiondef(p.oid) || coalesce(p.proacl::text, '') FROM pg_proc p WHERE p.oid = dep.objid)
           WHEN 'pg_class'::regclass THEN
             (SELECT c.relkind::text || coalesce(c.relacl::text, '') ||
                     CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) ELSE '' END ||
                     coalesce((SELECT s.seqtypid::regtype::text || s.seqincrement || s.seqcache || s.seqcycle
                               FROM pg_sequence s WHERE s.seqrelid = c.oid), '')
              FROM pg_class c WHERE c.oid = dep.objid)
         END, '') AS d
  FROM pg_depend dep
  WHERE dep.refclassid = 'pg_extension'::regclass AND dep.deptype = 'e'
    AND dep.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'lockext')) s};
$a->safe_psql('postgres', 'CREATE DATABASE fresh; CREATE DATABASE upgraded');
$a->safe_psql('fresh', 'CREATE EXTENSION lockext');
$a->safe_psql('upgraded', "CREATE EXTENSION lockext VERSION '1.0'");
is($a->safe_psql('upgraded', "SELECT extversion FROM pg_extension WHERE extname = 'lockext'"),
	'1.0', 'version 1.0 installed');
my $u = $a->background_psql('upgraded', on_error_stop => 0);
$u->query_safe("SET lockext.backend = 'advisory'");
my $t1 = $u->query_safe("SELECT dlock_acquire_session('across', 5)");
$a->safe_psql('upgraded', 'ALTER EXTENSION lockext UPDATE');
is($a->safe_psql('upgraded', "SELECT extversion FROM pg_extension WHERE extname = 'lockext'"),
	'1.1', 'ALTER EXTENSION UPDATE goes to 1.1');
my $fresh = $a->safe_psql('fresh', $catalog);
my $upgraded = $a->safe_psql('upgraded', $catalog);
like($fresh, qr/view dlock_locks/, 'a fresh 1.1 has the view');
is($upgraded, $fresh, '1.0 + UPDATE has exactly the objects of a fresh 1.1');
is($a->safe_psql('upgraded', "SELECT key || ':' || scope FROM dlock_locks WHERE database = 'upgraded'"),
	'across:session', 'a lock held across the update shows in dlock_locks');
ok(!free_on_db($a, 'upgraded', 'across'), 'and still excludes');
is($u->query_safe("SELECT dlock_release('across')"), 't', 'and is released normally');
my $t2 = $a->safe_psql('upgraded', "BEGIN; SET LOCAL lockext.backend = 'advisory'; SELECT dlock_acquire('across'); COMMIT");
cmp_ok($t2, '>', $t1, 'tokens go on increasing after the update');

sub free_on_db
{
	my ($node, $db, $key) = @_;
	return $node->safe_psql($db,
		"BEGIN; SET LOCAL lockext.backend = 'advisory'; SELECT dlock_try_acquire('$key'); COMMIT") eq 't';
}

$_->quit for ($h, $w, $r, $al, $bo, $u);
$_->stop for ($a, $b);
done_testing();
