# dlock_stats counts a scripted workload exactly (acquisitions with and
# without a wait, busy, timeouts, cancels, a deadlock, a lock lost at
# COMMIT, renewals, a fallback, Redis errors, a release left to the lease)
# and dlock_stats_reset() zeroes it; waits show in pg_stat_activity; a
# release Redis did not confirm is finished by the lease keeper while its
# session sits idle; dlock_redis_nodes shows each node as the keeper sees
# it, to superusers and pg_monitor only.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('stats');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '500ms') } ('alpha', 'beta');

my @columns = qw(acquired acquired_after_wait busy timeouts deadlocks canceled
  waits_10ms waits_100ms waits_1s waits_10s waits_longer lost_at_commit
  renewal_failures releases_left_to_lease redis_errors fallbacks);
my %expect = map { $_ => 0 } @columns;

# Compare every counter but renewals with what the script did so far.
sub stats_are
{
	my ($what) = @_;
	my $got = $a->safe_psql('postgres',
		'SELECT ' . join(', ', @columns) . " FROM dlock_stats WHERE datname = 'postgres'");
	is($got, join('|', map { $expect{$_} } @columns), "dlock_stats: $what");
}

# Wait until pid waits on the given wait event type (and event).
sub waits_on
{
	my ($node, $pid, $type) = @_;
	return $node->poll_query_until('postgres',
		"SELECT wait_event_type || '/' || wait_event LIKE '$type' FROM pg_stat_activity WHERE pid = $pid");
}

$a->safe_psql('postgres', 'SELECT dlock_stats_reset()');
stats_are('zero after dlock_stats_reset()');

# 1. Acquisitions without a wait: a reentrant one does not count again;
#    the advisory backend counts too.
$a->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('s1'), dlock_acquire('s2'), "
	  . "dlock_acquire('s1'); COMMIT");
$a->safe_psql('postgres', "SET lockext.backend = 'advisory'; BEGIN; SELECT dlock_acquire('adv'); COMMIT");
$expect{acquired} += 3;
stats_are('three acquisitions without a wait');

# 2. Busy and timed out, on the local queue and on Redis.
my $h = $a->background_psql('postgres', on_error_stop => 0);
my $hpid = $h->query_safe('SELECT pg_backend_pid()');
$h->query_safe("SELECT dlock_acquire_session('busy')");
my $hb = $b->background_psql('postgres', on_error_stop => 0);
$hb->query_safe("SELECT dlock_acquire_session('remote')");
$expect{acquired}++;    # (b's does not count on a)
is($a->safe_psql('postgres', "SELECT dlock_try_acquire('busy')"), 'f', 'a try-once finds it busy');
$expect{busy}++;

my $w = $a->background_psql('postgres', on_error_stop => 0);
my $wpid = $w->query_safe('SELECT pg_backend_pid()');
$w->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire_session('busy', 1.5);\n");
ok(waits_on($a, $wpid, 'Lock/advisory'), 'a wait on the local queue shows as Lock/advisory');
$w->query("SELECT 1");
like($w->{stderr}, qr/could not acquire lock "busy" within 1.5 seconds/, 'the local wait times out');
$w->{stderr} = '';
$w->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire_session('remote', 1.5);\n");
ok(waits_on($a, $wpid, 'Extension/%'), 'a wait on Redis shows as Extension');
$w->query("SELECT 1");
like($w->{stderr}, qr/could not acquire lock "remote" within 1.5 seconds/, 'the Redis wait times out');
$w->{stderr} = '';
$expect{timeouts} += 2;
$expect{waits_10s} += 2;
stats_are('busy, and two timeouts after waits of 1-10 s');

# 3. A wait that is granted, and one that statement_timeout cancels.
$w->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire_session('remote', 10) > 0;\n");
ok(waits_on($a, $wpid, 'Extension/%'), 'waiting for the remote holder');
usleep(200_000);
$hb->query_safe("SELECT dlock_release('remote')");
is($w->query_safe("SELECT dlock_release('remote')"), "t\nt", 'granted after the remote release');
$expect{acquired_after_wait}++;
$expect{waits_1s}++;
$w->query("SET statement_timeout = '300ms'; SELECT dlock_acquire_session('busy', 10)");
like($w->{stderr}, qr/canceling statement due to statement timeout/, 'statement_timeout cancels a wait');
$w->{stderr} = '';
$w->query_safe("RESET statement_timeout");
$expect{canceled}++;
$expect{waits_1s}++;
stats_are('one granted after a wait, one cancelled');

# 4. A deadlock on the local queue: one victim (the second waiter, whose
#    detector runs after 200 ms), and the other gets its lock.
$h->query_safe("BEGIN; SELECT dlock_acquire('d1')");
$w->query_safe("BEGIN; SET LOCAL deadlock_timeout = '200ms'; SELECT dlock_acquire('d2')");
$expect{acquired} += 2;
$h->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('d2', 10) > 0;\n");
ok(waits_on($a, $hpid, 'Lock/advisory'), 'the first waits');
$w->query("SELECT dlock_acquire('d1', 10)");
like($w->{stderr}, qr/deadlock detected/, 'the deadlock detector picks a victim');
$w->{stderr} = '';
$w->query("ROLLBACK");
is($h->query_safe("SELECT 1"), "t\n1", 'and the other session gets its lock');
$h->query_safe('COMMIT');
$expect{deadlocks}++;
$expect{acquired_after_wait}++;
$expect{waits_1s} += 2;
stats_are('one deadlock');

# 5. Renewals, counted as dlock_locks counts them; then a lock flushed
#    under its holder: one failed renewal, one lost at COMMIT.
$h->query_safe("SELECT dlock_release('busy')");
my $base = $a->safe_psql('postgres', "SELECT renewals FROM dlock_stats WHERE datname = 'postgres'");
$h->query_safe("SELECT dlock_acquire_session('renewed', 5, 1)");
$expect{acquired}++;
ok($a->poll_query_until('postgres',
		"SELECT renewals >= 3 FROM dlock_locks WHERE key = 'renewed'"), 'the keeper renews');
ok($a->poll_query_until('postgres',
		"SELECT (SELECT renewals FROM dlock_locks WHERE key = 'renewed') + $base = "
		  . "(SELECT renewals FROM dlock_stats WHERE datname = 'postgres')"),
	'dlock_stats counts the renewals dlock_locks shows');
$h->query_safe("SELECT dlock_release('renewed')");
$h->query_safe("BEGIN; SELECT dlock_acquire('flushed', 5, 3)");
$redis->cli('FLUSHALL');
ok($a->poll_query_until('postgres', "SELECT state = 'lost' FROM dlock_locks WHERE key = 'flushed'"),
	'the keeper finds the flushed lock lost');
$h->query('COMMIT');
like($h->{stderr}, qr/lock "flushed" was lost before COMMIT/, 'its COMMIT fails');
$h->{stderr} = '';
$expect{acquired}++;
$expect{renewal_failures}++;
$expect{lost_at_commit}++;
stats_are('a failed renewal and a lock lost at COMMIT');

# 6. A fallback to the local lock when Redis is down: one Redis error.
my $dead = PostgreSQL::Test::Cluster::get_free_port();
$h->query("SET lockext.redis_nodes = 'redis://127.0.0.1:$dead'; SET lockext.fallback = 'advisory'; "
	  . "BEGIN; SELECT dlock_acquire('fb'); COMMIT; RESET lockext.redis_nodes; RESET lockext.fallback");
like($h->{stderr}, qr/Redis is unavailable; lock "fb" is held on this instance only/, 'a fallback');
$h->{stderr} = '';
$expect{acquired}++;
$expect{fallbacks}++;
$expect{redis_errors}++;
stats_are('one fallback and the Redis error behind it');

# 7. A release Redis does not confirm in time is left to the lease (one
#    more Redis error), and the lease keeper sends it again: the key goes
#    as soon as Redis answers, while its session sits idle.
$h->query_safe("SELECT dlock_acquire_session('handed', 5, 60)");
$expect{acquired}++;
$redis->cli('CLIENT', 'PAUSE', '2000', 'WRITE');    # scripts wait, reads do not
my $t0 = time;
$h->query("SELECT dlock_release('handed')");
like($h->{stderr}, qr/could not release lock "handed" in Redis/, 'the release is not confirmed');
$h->{stderr} = '';
$expect{releases_left_to_lease}++;
$expect{redis_errors}++;
is($redis->cli('EXISTS', 'lockext:lock:handed'), '1', 'the key is still there during the pause');
my $gone;
while (time - $t0 < 8)
{
	$gone = $redis->cli('EXISTS', 'lockext:lock:handed') eq '0';
	last if $gone;
	usleep(100_000);
}
my $took = time - $t0;
ok($gone, sprintf('the keeper released it %.1f s after (lease 60 s, session idle)', $took));
stats_are('a release left to the lease, and its Redis error');

# 8. dlock_stats_reset() zeroes the counters (superusers only).
$a->safe_psql('postgres', 'CREATE ROLE plain LOGIN; CREATE ROLE monitor LOGIN IN ROLE pg_monitor');
my ($ret, $out, $err) = $a->psql('postgres', 'SELECT dlock_stats_reset()',
	extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied for function dlock_stats_reset/, 'others may not reset');
is($a->safe_psql('postgres', "SELECT acquired > 0 FROM dlock_stats WHERE datname = 'postgres'",
		extra_params => [ '-U', 'plain' ]), 't', 'but may read dlock_stats');
$a->safe_psql('postgres', 'SELECT dlock_stats_reset()');
$expect{$_} = 0 for @columns;
stats_are('zero again after a reset');
is($a->safe_psql('postgres', "SELECT stats_reset > now() - interval '5 s' FROM dlock_stats WHERE datname = 'postgres'"),
	't', 'stats_reset says when');

# 9. dlock_redis_nodes: the node as the keeper sees it; privileged only.
is($a->safe_psql('postgres', 'SELECT node, state, last_rtt > 0 FROM dlock_redis_nodes'),
	'redis://127.0.0.1:' . $redis->port . '|connected|t', 'dlock_redis_nodes: connected, with a round trip');
($ret, $out, $err) = $a->psql('postgres', 'SELECT * FROM dlock_redis_nodes',
	extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied for view dlock_redis_nodes/, 'hidden from other roles');
is($a->safe_psql('postgres', 'SELECT count(*) FROM dlock_redis_nodes', extra_params => [ '-U', 'monitor' ]),
	'1', 'shown to pg_monitor');
$redis->pause;
ok($a->poll_query_until('postgres',
		"SELECT state = 'disconnected' AND errors > 0 AND last_error LIKE '%timed out%' FROM dlock_redis_nodes"),
	'a stopped node shows disconnected, with its error');
$redis->resume;
ok($a->poll_query_until('postgres', "SELECT state = 'connected' FROM dlock_redis_nodes"),
	'and connected again when it is back');
kill 'TERM', $a->safe_psql('postgres', 'SELECT dlock_keeper_pid()');
ok($a->poll_query_until('postgres', "SELECT state = 'unknown' FROM dlock_redis_nodes"),
	'without the keeper the state is unknown');

# 10. A dropped database's counters do not pass to a database that gets
#     its OID again (CREATE DATABASE ... OID, as pg_upgrade does).
$a->safe_psql('postgres', 'CREATE DATABASE gone');
$a->safe_psql('gone', "CREATE EXTENSION lockext; SELECT dlock_try_acquire_session('g1'), dlock_try_acquire_session('g2')");
my $gone_oid = $a->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'gone'");
is($a->safe_psql('postgres', "SELECT acquired FROM dlock_stats WHERE datname = 'gone'"), '2',
	'a database counts its acquisitions');
$a->safe_psql('postgres', 'DROP DATABASE gone');
$a->safe_psql('postgres', "CREATE DATABASE reborn OID = $gone_oid");
is($a->safe_psql('postgres', "SELECT acquired FROM dlock_stats WHERE datname = 'reborn'"), '0',
	'a new database with a dropped one\'s OID starts from zero');

$_->quit for ($h, $hb, $w);
$_->stop for ($a, $b);
done_testing();
