# The redis backend with real servers: two PostgreSQL clusters sharing one
# redis-server.  Exclusion across clusters, release paths, tokens, lease
# loss at COMMIT, extend, termination, Redis restart and pause, fallback,
# and a shared counter that loses updates without the lock and none with it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('single');

my @nodes = map { start_lockext_cluster($_, $redis->url, '500ms') } ('alpha', 'beta');
my ($a, $b) = @nodes;
# (sort below uses \$::a and \$::b: the nodes shadow the lexical names)

sub wait_for_waiter
{
	my ($node) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity "
		  . "WHERE query LIKE '%dlock_acquire%' AND wait_event_type = 'Extension'")
	  or die "no session waiting on Redis";
}

is($a->safe_psql('postgres', "SELECT backend FROM (SELECT dlock_acquire('probe')) s, dlock_held()"),
	'redis', 'auto picks the redis backend when nodes are set');

# 1. Exclusion across clusters, and release at COMMIT.
my $sa = $a->background_psql('postgres', on_error_stop => 0);
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('x')");
ok(!free_on($b, 'x'), 'a lock held on alpha excludes beta');
my ($ret, $out, $err) = $b->psql('postgres', "SELECT dlock_acquire('x', 0.3)");
like($err, qr/could not acquire lock "x" within 0.3 seconds/, 'beta times out with 55P03');
$sa->query_safe("COMMIT");
ok(free_on($b, 'x'), 'COMMIT on alpha releases the lock for beta');

# 2. A waiter on beta is woken by the release on alpha, not by the lease.
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('w', 5, 30)");
my $sb = $b->background_psql('postgres', on_error_stop => 0);
$sb->query_until(qr/queued/, "\\echo queued\nSELECT dlock_acquire('w', 20) > 0;\n");
wait_for_waiter($b);
my $t0 = time;
$sa->query_safe("COMMIT");
$out = $sb->query("SELECT 'woken'");
my $handoff = time - $t0;
like($out, qr/^t\nwoken$/m, 'the waiter on beta got the lock');
cmp_ok($handoff, '<', 1, "cross-instance handoff took ${handoff}s (lease was 30 s)");

# 2b. Local first: a second session of alpha queues in alpha's lock manager
#     (visible in pg_locks) while only the head of the queue talks to Redis.
#     Cancel and statement_timeout interrupt a session waiting on Redis.
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('lq', 5, 30)");
my $sb2 = $b->background_psql('postgres', on_error_stop => 0);
my $sb2pid = $sb2->query_safe('SELECT pg_backend_pid()');
$sb2->query_until(qr/queued/, "\\echo queued\nSELECT dlock_acquire('lq', 60);\n");
wait_for_waiter($b);
my $sb3 = $b->background_psql('postgres', on_error_stop => 0);
my $sb3pid = $sb3->query_safe('SELECT pg_backend_pid()');
$sb3->query_until(qr/queued/, "\\echo queued\nSELECT dlock_acquire('lq', 60);\n");
ok($b->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 27768 AND NOT granted"),
	'the second waiter on beta queues in the local lock manager');
$t0 = time;
$b->safe_psql('postgres', "SELECT pg_cancel_backend($sb2pid)");
$sb2->query("SELECT 1");
like($sb2->{stderr}, qr/canceling statement due to user request/, 'cancel interrupts a wait on Redis');
cmp_ok(time - $t0, '<', 2, 'at once');
$sb2->{stderr} = '';
ok($b->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%dlock_acquire(''lq''%' AND wait_event_type = 'Extension'"),
	'the next local waiter moved up to wait on Redis');
# (quit would wait for the running query: cancel it)
$b->safe_psql('postgres', "SELECT pg_cancel_backend($sb3pid)");
$sb3->query("SELECT 1");
$sb3->quit;
$t0 = time;
($ret, $out, $err) = $b->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT dlock_acquire('lq', 60)");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout interrupts a wait on Redis');
cmp_ok(time - $t0, '<', 2, 'at once');
$sa->query_safe("COMMIT");
$sb2->quit;

# 3. Release at abort, savepoint rollback and PL/pgSQL exception block.
$sa->query_safe("BEGIN; SELECT dlock_acquire('r1'); ROLLBACK");
ok(free_on($b, 'r1'), 'ROLLBACK releases in Redis');
$sa->query_safe("BEGIN");
$sa->query_safe("SAVEPOINT s; SELECT dlock_acquire('r2')");
ok(!free_on($b, 'r2'), 'held inside the savepoint');
$sa->query_safe("ROLLBACK TO SAVEPOINT s");
ok(free_on($b, 'r2'), 'ROLLBACK TO SAVEPOINT releases in Redis');
$sa->query_safe(q{DO $$ BEGIN
	BEGIN PERFORM dlock_acquire('r3'); RAISE EXCEPTION 'boom';
	EXCEPTION WHEN raise_exception THEN NULL; END;
	END $$});
ok(free_on($b, 'r3'), 'an aborted PL/pgSQL exception block releases in Redis');
$sa->query_safe("COMMIT");

# 4. Session locks and reentrancy across clusters.
$sa->query_safe("SELECT dlock_acquire_session('s'), dlock_acquire_session('s')");
$sa->query_safe("SELECT dlock_release('s')");
ok(!free_on($b, 's'), 'one of two session holds released: still held');
$sa->query_safe("SELECT dlock_release('s')");
ok(free_on($b, 's'), 'both released: free on the other cluster');

# 5. Fencing tokens increase across clusters.
my @tokens;
for my $i (1 .. 6)
{
	my $node = $nodes[ $i % 2 ];
	push @tokens, $node->safe_psql('postgres', "SELECT dlock_acquire('fence')");
}
ok((join(',', @tokens) eq join(',', sort { $::a <=> $::b } @tokens))
	  && scalar(keys %{ { map { $_ => 1 } @tokens } }) == 6,
	"tokens strictly increase across clusters: @tokens");

# 6. A lost lock fails COMMIT with 40001 and rolls the transaction back.
#    The lease keeper renews the lease of a holder that can act, so the
#    holder is stopped (SIGSTOP) past lease + heartbeat staleness (2 s).
$a->safe_psql('postgres', 'CREATE TABLE t (v int)');
my $sapid = $sa->query_safe('SELECT pg_backend_pid()');
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('lease', 5, 1)");
$sa->query_safe("INSERT INTO t VALUES (1)");
kill 'STOP', $sapid;
usleep(2_300_000);
ok(free_on($b, 'lease'), 'after the lease ran out beta takes the lock');
kill 'CONT', $sapid;
($out, $ret) = $sa->query("COMMIT");
like($sa->{stderr}, qr/lock "lease" was lost before COMMIT/, 'COMMIT fails when the lock was lost');
$sa->{stderr} = '';
$out = $sa->query_safe("SELECT count(*) FROM t");
is($out, '0', 'the transaction\'s writes were rolled back');
$sa->query_safe('\set VERBOSITY verbose');
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('lease2', 5, 1)");
kill 'STOP', $sapid;
usleep(2_300_000);
kill 'CONT', $sapid;
($out, $ret) = $sa->query("COMMIT");
like($sa->{stderr}, qr/was lost before COMMIT/, 'also with nobody else taking it: an expired lease is lost');
like($sa->{stderr}, qr/ERROR:  40001/, 'the SQLSTATE is 40001');
$sa->{stderr} = '';
$sa->query_safe('\set VERBOSITY default');

# 6b. The namespace scopes keys; a hold keeps the namespace it was taken in
#     even if the setting changes before its release.
$sa->query_safe("BEGIN");
$sa->query_safe("SET LOCAL lockext.namespace = 'other'");
$sa->query_safe("SELECT dlock_acquire('ns-key')");
ok(free_on($b, 'ns-key'), 'a key in another namespace does not exclude');
$sa->query_safe("COMMIT");
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('ns-key2')");
$sa->query_safe("SET LOCAL lockext.namespace = 'other'");
$sa->query_safe("COMMIT");
ok(free_on($b, 'ns-key2'), 'released in the namespace it was taken in, after the setting changed');

# 7. dlock_extend renews the lease.
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('ext', 5, 0.4)");
is($sa->query_safe("SELECT dlock_extend('ext', 10)"), 't', 'extend returns true');
usleep(600_000);
ok(!free_on($b, 'ext'), 'after extend the lock outlives its first lease');
$sa->query_safe("COMMIT");
ok(free_on($b, 'ext'), 'and is released at COMMIT');

# 8. pg_terminate_backend releases session locks at once, not at lease end.
my $victim = $a->background_psql('postgres', on_error_stop => 0);
my $vpid = $victim->query_safe("SELECT pg_backend_pid()");
$victim->query_safe("SELECT dlock_acquire_session('term', 5, 60)");
ok(!free_on($b, 'term'), 'session lock held with a 60 s lease');
$a->safe_psql('postgres', "SELECT pg_terminate_backend($vpid)");
$t0 = time;
ok($b->poll_query_until('postgres', "SELECT dlock_try_acquire_session('term') AND dlock_release('term')"),
	'terminated backend\'s lock comes free');
cmp_ok(time - $t0, '<', 5, 'at once rather than after the 60 s lease');

# 9. dlock_holder reads the owner from Redis.
$sa->query_safe("SET application_name = 'holder-test'");
$sa->query_safe("BEGIN; SELECT dlock_acquire('who', 5, 20)");
my $spid = $sa->query_safe("SELECT pg_backend_pid()");
$out = $b->safe_psql('postgres',
	"SELECT pid, database, application_name, instance, since IS NOT NULL, "
	  . "lease_left > interval '10 s' FROM dlock_holder('who')");
is($out, "$spid|postgres|holder-test|alpha|t|t", 'dlock_holder on beta names the holder on alpha');
$sa->query_safe("COMMIT");
is($b->safe_psql('postgres', "SELECT dlock_holder('who') IS NULL"), 't', 'free: NULL');
$redis->cli('SET', 'lockext:lock:typed', 'x');
$redis->cli('DEL', 'lockext:lock:typed');
$redis->cli('LPUSH', 'lockext:lock:typed', 'x');
($ret, $out, $err) = $b->psql('postgres', "SELECT dlock_holder('typed')");
like($err, qr/holds a value of another type/, 'a lock key of another type: clear error');
($ret, $out, $err) = $b->psql('postgres', "SELECT dlock_acquire('typed', 0)");
like($err, qr/holds a value of another type/, 'also for acquire');

# 10. Redis killed: class 08 error naming the node; restarted: the same
#     session recovers by itself.
$redis->kill9;
$t0 = time;
($out, $ret) = $sa->query("SELECT dlock_acquire('down', 5)");
my $elapsed = time - $t0;
like($sa->{stderr}, qr/Redis is unavailable/, 'Redis down: acquire fails');
like($sa->{stderr}, qr/127\.0\.0\.1:@{[ $redis->port ]}/, 'the error names the node');
cmp_ok($elapsed, '<', 3, "within the timeouts (${elapsed}s)");
$sa->{stderr} = '';
($ret, $out, $err) = $a->psql('postgres', "\\set VERBOSITY verbose\nSELECT dlock_acquire('down', 5)");
like($err, qr/ERROR:  08006/, 'SQLSTATE 08006');
$redis->start;
is($sa->query_safe("BEGIN; SELECT dlock_acquire('down', 5) > 0; COMMIT"), 't',
	'after a restart the same session reconnects by itself');

# 10b. Redis gone at COMMIT: the release is a WARNING, never an error.
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('gone', 5, 2)");
$redis->kill9;
($out, $ret) = $sa->query("COMMIT");
like($sa->{stderr}, qr/WARNING:  could not release lock "gone" in Redis/, 'failed release at COMMIT warns');
unlike($sa->{stderr}, qr/ERROR/, 'and the COMMIT succeeds');
$sa->{stderr} = '';
$redis->start;
$sa->query_safe("BEGIN; SELECT dlock_acquire('gone', 5) > 0; COMMIT");

# 10c. SCRIPT FLUSH: NOSCRIPT makes lockext send the script again.
$redis->cli('SCRIPT', 'FLUSH');
is($sa->query_safe("BEGIN; SELECT dlock_acquire('flushed') > 0; COMMIT"), 't',
	'acquire works after SCRIPT FLUSH');
ok(free_on($b, 'flushed'), 'and so does release');
# A transaction's release does not wait for the answer, so it sends the
# script itself (EVAL): a SCRIPT FLUSH before COMMIT cannot strand the lock.
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('flushed-late')");
$redis->cli('SCRIPT', 'FLUSH');
$sa->query_safe("COMMIT");
is($redis->cli('EXISTS', 'lockext:lock:flushed-late'), '0', 'a release sent without waiting survives SCRIPT FLUSH: the key is gone right after COMMIT');
ok(free_on($b, 'flushed-late'), 'and free for the other cluster');

# 11. Redis paused (SIGSTOP): bounded error, no hang; cancel works meanwhile.
$redis->pause;
$t0 = time;
($out, $ret) = $sa->query("SELECT dlock_acquire('paused', 5)");
$elapsed = time - $t0;
like($sa->{stderr}, qr/Redis is unavailable.*timed out/s, 'paused Redis: command times out');
cmp_ok($elapsed, '<', 3, "bounded by the command timeout (${elapsed}s)");
$sa->{stderr} = '';

# 12. Fallback: with lockext.fallback = advisory, a WARNING and the local lock.
$sa->query_safe("SET lockext.fallback = 'advisory'");
($out, $ret) = $sa->query("SELECT dlock_acquire_session('fb', 5) > 0");
like($sa->{stderr}, qr/WARNING:  Redis is unavailable; lock "fb" is held on this instance only/,
	'fallback warns');
$sa->{stderr} = '';
is($sa->query_safe("SELECT backend FROM dlock_held() WHERE key = 'fb'"), 'advisory',
	'and holds the local lock');
$sa->query_safe("SELECT dlock_release('fb')");
$sa->query_safe("RESET lockext.fallback");
$redis->resume;

# 13. Privileges: non-superusers cannot change the backend or the nodes and
#     cannot see the password.
$a->safe_psql('postgres', 'CREATE ROLE plain LOGIN; CREATE ROLE reader LOGIN IN ROLE pg_read_all_settings');
($ret, $out, $err) = $a->psql('postgres', "SET ROLE plain; SET lockext.backend = 'advisory'");
like($err, qr/permission denied to set parameter "lockext.backend"/, 'plain user cannot set the backend');
($ret, $out, $err) = $a->psql('postgres', "SET ROLE plain; SET lockext.redis_nodes = 'redis://127.0.0.1:1'");
like($err, qr/permission denied to set parameter "lockext.redis_nodes"/, 'nor the nodes');
($ret, $out, $err) = $a->psql('postgres', "SET ROLE plain; SHOW lockext.redis_nodes");
# (the wording of 15; 16 and later: permission denied to examine ...)
like($err, qr/must be superuser or have privileges of pg_read_all_settings|permission denied to examine "lockext.redis_nodes"/,
	'nor read them');
is($a->safe_psql('postgres', "SET ROLE plain; SELECT count(*) FROM pg_settings WHERE name = 'lockext.redis_nodes'"),
	'0', 'pg_settings hides them');
like($a->safe_psql('postgres', "SET ROLE reader; SHOW lockext.redis_nodes"),
	qr/^redis:\/\/127\.0\.0\.1:\d+$/, 'pg_read_all_settings members see the nodes');

# 13b. A password-protected Redis: the password works, a wrong one gives a
#      clear error, and neither appears in errors, SHOW for non-superusers
#      or the server log.
my $secret = 'Pw-7f3a9c2e';
my $locked = RedisServer->new('password', requirepass => $secret);
my $gamma = PostgreSQL::Test::Cluster->new('gamma');
$gamma->init;
$gamma->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'lockext'
lockext.redis_nodes = '@{[ $locked->url ]}'
lockext.command_timeout = '500ms'
});
$gamma->start;
$gamma->safe_psql('postgres', 'CREATE EXTENSION lockext; CREATE ROLE reader IN ROLE pg_read_all_settings');
is($gamma->safe_psql('postgres', "SELECT dlock_acquire('pw') > 0"), 't',
	'AUTH with the password from the URL works');
like($gamma->safe_psql('postgres', 'SET ROLE reader; SHOW lockext.redis_nodes'),
	qr/^redis:\/\/:\*\*\*\@127\.0\.0\.1:\d+$/, 'pg_read_all_settings members see the password masked');
is($gamma->safe_psql('postgres', 'SHOW lockext.redis_nodes'), $locked->url,
	'superusers see the URL as configured');
$locked->cli('CONFIG', 'SET', 'requirepass', 'changed-elsewhere');
$locked->{opts}{requirepass} = 'changed-elsewhere';
$locked->cli('CLIENT', 'KILL', 'TYPE', 'normal');
($ret, $out, $err) = $gamma->psql('postgres', "SELECT dlock_acquire('pw2', 0)");
like($err, qr/authentication or database selection failed/, 'wrong password: a clear error');
unlike($err, qr/\Q$secret\E/, 'which does not contain the password');
$gamma->stop;
my $log = slurp_file($gamma->logfile);
unlike($log, qr/\Q$secret\E/, 'the password appears nowhere in the server log');
$locked->stop;

# 14. A shared counter on alpha, incremented from both clusters (beta
#     through postgres_fdw): lost updates without the lock, none with it.
$a->safe_psql('postgres', 'CREATE TABLE counter (id int PRIMARY KEY, v bigint); CREATE TABLE incs (n int)');
link_tables($b, $a, counter => 'id int, v bigint', incs => 'n int');
my $script = q{
BEGIN;
%LOCK%
SELECT v FROM counter WHERE id = 1 \gset
SELECT pg_sleep(0.002);
UPDATE counter SET v = :v + 1 WHERE id = 1;
INSERT INTO incs VALUES (1);
COMMIT;
};

sub shared_counter_race
{
	my ($lock) = @_;
	(my $s = $script) =~ s/%LOCK%/$lock/;
	$a->safe_psql('postgres', 'TRUNCATE incs; DELETE FROM counter; INSERT INTO counter VALUES (1, 0)');
	for my $r (pgbench_on([ $a, $b ], $s, '-c', '4', '-j', '2', '-t', '40'))
	{
		note $r->[1] if $r->[1] ne '';
	}
	return split /\|/, $a->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM incs), (SELECT count(*) FROM incs) - (SELECT v FROM counter)');
}

my ($made, $lost) = shared_counter_race('');
note "unguarded: $made increments, $lost lost";
cmp_ok($lost, '>', 0, "without the lock the two clusters lose updates ($lost of $made)");
($made, $lost) = shared_counter_race("SELECT dlock_acquire('counter', 60);");
note "guarded: $made increments, $lost lost";
is($made, 320, 'with the lock every increment committed');
is($lost, 0, 'and none was lost');

# 15. Two Redis commands per uncontended transaction (acquire, release).
$redis->cli('CONFIG', 'RESETSTAT');
$a->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('rt'); COMMIT;" x 1);
my $stats = $redis->cli('INFO', 'commandstats');
my $calls = 0;
# what clients sent; commands run inside scripts are counted apart
while ($stats =~ /cmdstat_(\w+):calls=(\d+)/g)
{
	my ($command, $count) = ($1, $2);
	# (not PING: the lease keeper pings every node once a second)
	$calls += $count if $command =~ /^(evalsha|eval|blpop|auth|select|hello)$/;
}
is($calls, 2, 'an uncontended transaction costs exactly two Redis commands');

$sa->quit;
$sb->quit;
$victim->quit;
$_->stop for @nodes;
done_testing();
