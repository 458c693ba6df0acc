# A stalled holder and a killed holder, with real clusters and Redis.
#
# Stalled: a backend holding a lock is stopped (SIGSTOP) past its lease,
# another cluster takes the lock and commits, the first resumes: its
# COMMIT fails with 40001 and its writes roll back, local ones and ones
# made through postgres_fdw (whose remote commit must come after our
# check).  Killed: a backend killed with SIGKILL while holding session
# locks makes the postmaster restart; Redis locks come free by their
# lease, advisory ones with the restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('stalled');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '500ms') } ('alpha', 'beta');
$a->safe_psql('postgres', 'CREATE TABLE t (who text)');
$b->safe_psql('postgres', 'CREATE TABLE t_local (who text)');
link_tables($b, $a, t => 'who text');

# Stop backend $pid until $cond (a sub) is true, then let it go on.
sub stall_until
{
	my ($pid, $cond) = @_;
	kill 'STOP', $pid or die "cannot stop $pid: $!";
	my $ok = eval { $cond->() };
	my $err = $@;
	kill 'CONT', $pid;
	die $err if $err;
	return $ok;
}

# 1. Local writes.  Lease 1 s; alpha's holder stalls for longer.
my $sa = $a->background_psql('postgres', on_error_stop => 0);
$sa->query_safe('\set VERBOSITY verbose');
my $pid = $sa->query_safe('SELECT pg_backend_pid()');
$sa->query_safe('BEGIN');
$sa->query_safe("SELECT dlock_acquire('stall', 5, 1)");
$sa->query_safe("INSERT INTO t VALUES ('alpha, stalled')");
my $t0 = time;
ok(stall_until($pid, sub {
	$b->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('stall', 10); "
		. "INSERT INTO t_local VALUES ('beta'); COMMIT;");
	return 1;
}), 'beta took the lock while alpha\'s holder was stopped');
my $waited = time - $t0;
cmp_ok($waited, '>=', 0.9, "beta waited for the lease to run out (${waited}s)");
cmp_ok($waited, '<', 5, 'but not for its whole timeout');
my ($out, $ret) = $sa->query('COMMIT');
like($sa->{stderr}, qr/ERROR:  40001: lock "stall" was lost before COMMIT/,
	'the resumed holder\'s COMMIT fails with 40001');
$sa->{stderr} = '';
is($a->safe_psql('postgres', "SELECT count(*) FROM t"), '0', 'and its write rolled back');
is($b->safe_psql('postgres', "SELECT who FROM t_local"), 'beta', 'the new holder\'s write stands');
is($sa->query_safe("SELECT count(*) FROM dlock_held()"), '0', 'the lost lock left no bookkeeping');
is($sa->query_safe("BEGIN; SELECT dlock_acquire('stall', 5) > 0; COMMIT"), 't', 'and the session goes on');

# 2. Writes through postgres_fdw: beta's holder writes alpha's table, the
#    foreign table first used in the same transaction as the lock.
my $sb = $b->background_psql('postgres', on_error_stop => 0);
$sb->query_safe('\set VERBOSITY verbose');
$pid = $sb->query_safe('SELECT pg_backend_pid()');
$sb->query_safe('BEGIN');
$sb->query_safe("SELECT dlock_acquire('stall-fdw', 5, 1)");
$sb->query_safe("INSERT INTO t VALUES ('beta through fdw, stalled')");
stall_until($pid, sub {
	$a->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('stall-fdw', 10); "
		. "INSERT INTO t VALUES ('alpha after'); COMMIT;");
});
($out, $ret) = $sb->query('COMMIT');
like($sb->{stderr}, qr/ERROR:  40001: lock "stall-fdw" was lost before COMMIT/,
	'through postgres_fdw too the COMMIT fails with 40001');
$sb->{stderr} = '';
is($a->safe_psql('postgres', "SELECT string_agg(who, ',') FROM t"), 'alpha after',
	'and the foreign write rolled back with it (checked before the remote commit)');

# Again in the same session: the FDW's callbacks are old now.
$sb->query_safe('BEGIN');
$sb->query_safe("SELECT dlock_acquire('stall-fdw', 5, 1)");
$sb->query_safe("INSERT INTO t VALUES ('beta again, stalled')");
stall_until($pid, sub {
	$a->safe_psql('postgres', "SELECT dlock_acquire('stall-fdw', 10)");
});
($out, $ret) = $sb->query('COMMIT');
like($sb->{stderr}, qr/40001/, 'a later transaction of the session: 40001 again');
$sb->{stderr} = '';
is($a->safe_psql('postgres', "SELECT count(*) FROM t WHERE who LIKE 'beta%'"), '0',
	'and nothing of beta\'s reached alpha');
$sb->query_safe('BEGIN');
$sb->query_safe("SELECT dlock_acquire('stall-fdw', 5)");
$sb->query_safe("INSERT INTO t VALUES ('beta, in time')");
$sb->query_safe('COMMIT');
is($a->safe_psql('postgres', "SELECT count(*) FROM t WHERE who = 'beta, in time'"), '1',
	'a holder that keeps its lock commits through postgres_fdw as usual');
$sb->quit;
$sa->quit;

# 3. SIGKILL of a backend holding session locks: the postmaster restarts
#    the cluster.  The Redis lock stays until its lease ends (2 s here);
#    the advisory lock goes with the restart.
$a->append_conf('postgresql.conf', 'restart_after_crash = on');    # the default, not the test suite's
$a->reload;
my $victim = $a->background_psql('postgres', on_error_stop => 0);
$pid = $victim->query_safe('SELECT pg_backend_pid()');
$victim->query_safe("SELECT dlock_acquire_session('crashed', 5, 2)");
$victim->query_safe("SET lockext.backend = 'advisory'");
$victim->query_safe("SELECT dlock_acquire_session('crashed-local', 5)");
$t0 = time;
kill 'KILL', $pid;
eval { $victim->quit };
is($redis->cli('EXISTS', 'lockext:lock:crashed'), '1', 'right after the crash the Redis lock is still held');
is($b->safe_psql('postgres', "SELECT dlock_try_acquire('crashed')"), 'f', 'another cluster cannot take it yet');
is($b->safe_psql('postgres', "SELECT dlock_acquire('crashed', 10) > 0"), 't',
	'it comes free by its lease');
$waited = time - $t0;
cmp_ok($waited, '<', 4, "within about the lease (${waited}s after the kill)");
$a->poll_query_until('postgres', 'SELECT true') or die 'alpha did not come back';
like(slurp_file($a->logfile), qr/terminated by signal 9/, 'alpha restarted after the crash');
is($a->safe_psql('postgres', "SET lockext.backend = 'advisory'; SELECT dlock_try_acquire('crashed-local')"),
	't', 'the advisory lock went with the restart');

$_->stop for ($a, $b);
done_testing();
