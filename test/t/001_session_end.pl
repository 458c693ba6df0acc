# Session end, pg_terminate_backend, pg_cancel_backend and statement_timeout
# on the advisory backend: locks come free at once, waits stop at once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', "deadlock_timeout = 100ms\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION lockext');

# Can another session take the key right now?
sub key_free
{
	my ($key) = @_;
	return $node->safe_psql('postgres', "BEGIN; SELECT dlock_try_acquire('$key'); COMMIT") eq 't';
}

# Wait until some session queues for one of our locks.
sub wait_for_waiter
{
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' "
		  . "AND objsubid = 27768 AND NOT granted")
	  or die "no waiter showed up";
}

# 1. A session lock ends with its session.
my $s = $node->background_psql('postgres');
$s->query_safe("SELECT dlock_acquire_session('s1')");
ok(!key_free('s1'), 'a session lock excludes other sessions');
$s->quit;
ok($node->poll_query_until('postgres', "SELECT dlock_try_acquire_session('s1') AND dlock_release('s1')"),
	'a session lock is released when its session ends');

# 2. pg_terminate_backend frees session and transaction locks at once and
#    the queued waiter gets the lock.
my $holder = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $holder->query_safe('SELECT pg_backend_pid()');
$holder->query_safe("SELECT dlock_acquire_session('t-session')");
$holder->query_safe("BEGIN");
$holder->query_safe("SELECT dlock_acquire('t-xact')");
ok(!key_free('t-session') && !key_free('t-xact'), 'holder holds both locks');

my $waiter = $node->background_psql('postgres', on_error_stop => 0);
$waiter->query_until(qr/queued/,
	"\\echo queued\nSELECT dlock_acquire_session('t-session', 60) > 0 AS got;\n");
wait_for_waiter();
my $t0 = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $out = $waiter->query_safe("SELECT string_agg(key, ',') FROM dlock_held()");
my $elapsed = time - $t0;
like($out, qr/^t\nt-session$/m, 'the waiter got the lock of the terminated holder');
cmp_ok($elapsed, '<', 5, "handover after termination took ${elapsed}s");
ok(key_free('t-xact'), 'the terminated holder\'s transaction lock is free');
$waiter->query_safe("SELECT dlock_release_all()");
$holder->quit;

# 3. pg_cancel_backend interrupts a wait at once; the session stays usable.
my $h2 = $node->background_psql('postgres');
$h2->query_safe("SELECT dlock_acquire_session('c1')");
my $w2 = $node->background_psql('postgres', on_error_stop => 0);
my $w2pid = $w2->query_safe('SELECT pg_backend_pid()');
$w2->query_safe("SELECT dlock_acquire_session('mine')");
$w2->query_until(qr/queued/,
	"\\echo queued\nSELECT dlock_acquire('c1', 600);\n");
wait_for_waiter();
$t0 = time;
$node->safe_psql('postgres', "SELECT pg_cancel_backend($w2pid)");
$out = $w2->query("SELECT string_agg(key, ',') FROM dlock_held()");
$elapsed = time - $t0;
like($w2->{stderr}, qr/canceling statement due to user request/,
	'the wait ended with a cancel error');
cmp_ok($elapsed, '<', 5, "cancel took effect in ${elapsed}s");
is($out, 'mine', 'after the cancel the session keeps its own locks and no other');
$w2->{stderr} = '';

# 4. statement_timeout bounds a wait with an infinite timeout.
$t0 = time;
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT dlock_acquire('c1', 'Infinity')");
$elapsed = time - $t0;
like($stderr, qr/canceling statement due to statement timeout/,
	'statement_timeout interrupts a wait');
cmp_ok($elapsed, '<', 5, "statement_timeout took effect in ${elapsed}s");

# 5. lock_timeout of the session does not shorten a dlock timeout, and the
#    dlock timeout does not leak into lock_timeout afterwards.
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET lock_timeout = '10ms'; SELECT dlock_acquire('c1', 0.5); ");
like($stderr, qr/could not acquire lock "c1" within 0.5 seconds/,
	'the dlock timeout, not lock_timeout, governs the wait');
$stdout = $node->safe_psql('postgres',
	"SET lock_timeout = '10ms'; DO \$\$BEGIN PERFORM dlock_acquire('c1', 0.2); "
	  . "EXCEPTION WHEN lock_not_available THEN NULL; END\$\$; SHOW lock_timeout");
is($stdout, '10ms', 'lock_timeout is restored after a timed-out wait');

# 6. pg_advisory_lock on the very tag fields of a held dlock still gets
#    its lock: the two live in different tag spaces.
$h2->query_safe("BEGIN");
$h2->query_safe("SELECT dlock_acquire('collide')");
my $fields = $h2->query_safe(
	"SELECT classid::bigint || ',' || objid::bigint FROM pg_locks "
	  . "WHERE locktype = 'advisory' AND objsubid = 27768 AND pid = pg_backend_pid() "
	  . "AND mode = 'ExclusiveLock'");
my ($f1, $f2) = map { $_ > 2147483647 ? $_ - 4294967296 : $_ } split /,/, $fields;
is($node->safe_psql('postgres', "SELECT pg_try_advisory_lock($f1, $f2)"), 't',
	'pg_advisory_lock with the same key fields does not collide with a dlock');
ok(!key_free('collide'), 'while the dlock itself is still held');
$h2->query_safe("COMMIT");

$h2->quit;
$w2->quit;
$node->stop;
done_testing();
