# False deadlocks across instances: no 40P01 unless the cycle is real now.
# 1. A wait on Redis ended by a cancel or statement_timeout leaves no
#    wait-for edge behind: its holder, waiting later for a key the
#    cancelled session still holds, times out (55P03) instead of 40P01.
# 2. The same for a wait in a local queue that was published for it.
# 3. Two databases on one cluster: a local wait of one database is not
#    resolved against the other's lock holders, nor published by the
#    other's waiters.
# 4. Cost: a check takes one snapshot of the lock manager, not one per
#    local wait (CPU of a waiter with 30 local waiters behind it, against
#    one), and a busy try-once on the advisory backend does not copy the
#    whole lock table every time (a retry loop with a large lock table).
# 5. A quorum of three with one node paused: a real cycle is found within
#    deadlock_timeout + a round trip, not after the command timeout; two
#    nodes that each see a different cycle are not a majority for either.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('false');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '1s') } ('alpha', 'beta');
# room for a large lock table and many sessions (section 4)
$a->append_conf('postgresql.conf', "max_locks_per_transaction = 256\nmax_connections = 60\n");
$a->restart;

sub session
{
	my ($node, $db) = @_;
	my $s = $node->background_psql($db // 'postgres', on_error_stop => 0);
	$s->{pid} = $s->query_safe('SELECT pg_backend_pid()');
	return $s;
}

# Wait until the session waits (on Redis, or in the lock manager).
sub waiting
{
	my ($node, $s, $db) = @_;
	return $node->poll_query_until($db // 'postgres',
		"SELECT wait_event_type IN ('Extension', 'Lock') FROM pg_stat_activity WHERE pid = $s->{pid}");
}

# Run a query, return (stdout, stderr) and clear stderr.
sub run
{
	my ($s, $sql) = @_;
	my $out = $s->query($sql);
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $err);
}

# The wait-for edges in Redis (session ids), and a lock's holder session.
sub edges
{
	my ($r) = @_;
	return sort map { s/^lockext:waitfor://r } grep { /\S/ } split /\n/, ($r // $redis)->cli('KEYS', 'lockext:waitfor:*');
}

sub holder_id
{
	my ($key, $r) = @_;
	return substr(($r // $redis)->cli('GET', "lockext:lock:$key"), 0, 24);
}

# 1. W (alpha) holds k2 and waits for k1 (held by H on beta) long enough
#    to publish its edge; then its wait ends by an ERROR.  H then waits
#    for k2: W waits for nothing, so that is no deadlock.
my $w = session($a);
my $h = session($b);
$h->query_safe("SELECT dlock_acquire_session('k1') > 0");
$w->query_safe("SET deadlock_timeout = '200ms'");
$w->query_safe("SELECT dlock_acquire_session('k2') > 0");
my $wid = holder_id('k2');
for my $end ('cancel', 'statement_timeout')
{
	$w->query_safe("SET statement_timeout = '1500ms'") if $end eq 'statement_timeout';
	$w->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('k1', 30);\n");
	ok(waiting($a, $w), "$end: W waits for k1");
	usleep(700_000);
	ok(grep({ $_ eq $wid } edges()), "$end: W has published its wait-for edge");
	$a->safe_psql('postgres', "SELECT pg_cancel_backend($w->{pid})") if $end eq 'cancel';
	my (undef, $err) = run($w, 'SELECT 1');
	like($err, qr/canceling statement due to (user request|statement timeout)/, "$end: W's wait ends");
	$w->query_safe("RESET statement_timeout");
	ok(!grep({ $_ eq $wid } edges()), "$end: W's edge is gone with its wait");

	my $t0 = time;
	(undef, $err) = run($h, "SET deadlock_timeout = '200ms'; SELECT dlock_acquire('k2', 2)");
	unlike($err, qr/deadlock detected/, "$end: H is no deadlock victim");
	like($err, qr/could not acquire lock "k2" within 2 seconds/, "$end: H times out instead");
	note "$end: H's wait took " . sprintf('%.1f', time - $t0) . " s: $err";
}
$h->query_safe("SELECT dlock_release('k1')");

# 2. The same for a local wait: L (alpha) holds k2' and waits in alpha's
#    lock manager behind A1, which waits on Redis for kb (B1's on beta);
#    A1 publishes L's edge.  L is cancelled; then B1 waits for k2'.
my $a1 = session($a);
my $l = session($a);
my $b1 = $h;
$b1->query_safe("SELECT dlock_acquire_session('kb') > 0");
$l->query_safe("SELECT dlock_acquire_session('k2l') > 0");
my $lid = holder_id('k2l');
$a1->query_safe("SET deadlock_timeout = '200ms'; BEGIN; SELECT dlock_acquire('kl') > 0");
$a1->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('kb', 30) > 0 AS a1_got;\nCOMMIT;\n");
ok(waiting($a, $a1), 'local: A1 waits on Redis for kb');
$l->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('kl', 30);\n");
ok(waiting($a, $l), 'local: L waits in the lock manager for kl');
usleep(700_000);
ok(grep({ $_ eq $lid } edges()), "local: L's edge is published (by A1)");
$a->safe_psql('postgres', "SELECT pg_cancel_backend($l->{pid})");
my (undef, $err) = run($l, 'SELECT 1');
like($err, qr/canceling statement due to user request/, "local: L's wait ends");
usleep(600_000);    # A1 looks again meanwhile
(undef, $err) = run($b1, "SELECT dlock_acquire('k2l', 2)");
unlike($err, qr/deadlock detected/, 'local: B1 is no deadlock victim');
like($err, qr/could not acquire lock "k2l" within 2 seconds/, 'local: B1 times out instead');
$b1->query_safe("SELECT dlock_release('kb')");
like($a1->query('SELECT 1'), qr/^t$/m, 'local: A1 gets kb');
$a1->{stderr} = '';
$l->query_safe("SELECT dlock_release('k2l')");

# 3. Two databases on alpha.  X (postgres) holds kk; in "other", Z holds kk
#    on the advisory backend (alpha's lock manager only) and Y, holding k3,
#    queues behind Z.  X waits for k3: X waits for Y, Y for Z, Z for
#    nothing.  Y's wait is no edge to X (kk's holder in the wrong
#    database), and X does not publish "other"'s waits at all.
$a->safe_psql('postgres', 'CREATE DATABASE other');
$a->safe_psql('other', 'CREATE EXTENSION lockext');
my $x = $a1;
my $z = session($a, 'other');
my $y = session($a, 'other');
$x->query_safe("SELECT dlock_acquire_session('kk') > 0");
$z->query_safe("SET lockext.backend = 'advisory'; SELECT dlock_acquire_session('kk') > 0");
$y->query_safe("SELECT dlock_acquire_session('k3') > 0");
my $yid = holder_id('k3');
$y->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('kk', 30);\n");
ok(waiting($a, $y, 'other'), 'databases: Y waits behind Z in "other"');
my $t0 = time;
$x->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('k3', 2);\n");
usleep(800_000);
ok(!grep({ $_ eq $yid } edges()), 'databases: no edge of Y published from "postgres"');
(undef, $err) = run($x, 'SELECT 1');
unlike($err, qr/deadlock detected/, 'databases: X is no deadlock victim');
like($err, qr/could not acquire lock "k3" within 2 seconds/, 'databases: X times out instead');
$a->safe_psql('other', "SELECT pg_cancel_backend($y->{pid})");
run($y, 'SELECT 1');
$_->query_safe('SELECT dlock_release_all()') for ($x, $y, $z);
$_->quit for ($y, $z, $l, $w);

# 4a. Cost of a check.  A2 (alpha) waits on Redis for hot (B2's) and looks
#     every 10 ms; behind it, first 1, then 30 sessions queue in alpha's
#     lock manager; F holds 10,000 advisory locks.  A2's CPU time must not
#     grow with the local waiters (one lock table copy per check, not one
#     per wait).
sub cpu_of
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or die "cannot read /proc/$pid/stat: $!";
	my @f = split ' ', (split /\) /, <$fh>)[1];
	close $fh;
	return ($f[11] + $f[12]) / 100.0;    # utime + stime, in clock ticks
}

sub cpu_over
{
	my ($pid, $secs) = @_;
	my $c0 = cpu_of($pid);
	usleep($secs * 1_000_000);
	return cpu_of($pid) - $c0;
}

my $f = session($a);
$f->query_safe("SELECT count(pg_advisory_lock(g)) FROM generate_series(1, 10000) g");
my $b2 = $b1;
my $a2 = $x;
$b2->query_safe("SELECT dlock_acquire_session('hot') > 0");
$a2->query_safe("SET deadlock_timeout = '10ms'; BEGIN; SELECT dlock_acquire('hot0') > 0");
$a2->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('hot', 120) > 0;\nCOMMIT;\n");
ok(waiting($a, $a2), 'cost: A2 waits on Redis');
my (@locals, $cpu1);
for my $i (1 .. 30)
{
	my $s = session($a);
	$s->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('hot0', 120) > 0;\n");
	push @locals, $s;
	if ($i == 1)
	{
		ok(waiting($a, $s), 'cost: one local waiter');
		usleep(300_000);
		$cpu1 = cpu_over($a2->{pid}, 3);
	}
}
ok(waiting($a, $locals[-1]), 'cost: thirty local waiters');
usleep(300_000);
my $cpu30 = cpu_over($a2->{pid}, 3);
note "cost: A2's CPU over 3 s: $cpu1 s with one local waiter, $cpu30 s with thirty";
cmp_ok($cpu30, '<', 2 * $cpu1 + 0.3,
	"cost: thirty local waiters cost A2 about what one does ($cpu1 s, $cpu30 s)");
# releasing hot lets A2 and then each local waiter in turn through
$b2->query_safe("SELECT dlock_release('hot')");
$_->quit for ($a2, @locals);

# 4b. A busy try-once on the advisory backend, 2000 times in a loop, with
#     F's 10,000 locks in the lock table and without.
$a->safe_psql('postgres', q{
CREATE FUNCTION busy_loop(n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
  t0 timestamptz := clock_timestamp();
BEGIN
  FOR i IN 1 .. n LOOP
    BEGIN
      PERFORM dlock_acquire('busy', 0);
    EXCEPTION WHEN lock_not_available THEN NULL;
    END;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0);
END $$});
my $g = session($a);
$g->query_safe("SET lockext.backend = 'advisory'; SELECT dlock_acquire_session('busy') > 0");
my $loop = "SET lockext.backend = 'advisory'; SELECT busy_loop(2000)";
my $big = $a->safe_psql('postgres', $loop);
$f->query_safe('SELECT pg_advisory_unlock_all()');
my $small = $a->safe_psql('postgres', $loop);
note "busy: 2000 try-once failures took $big s with 10,000 other locks, $small s without";
cmp_ok($big, '<', 3 * $small + 0.1, "busy: a large lock table does not slow a retry loop ($big s, $small s)");
$g->quit;
$f->quit;

# 5. A quorum of three nodes.
my @q = map { RedisServer->new("q$_") } (1 .. 3);
my $qurl = join(',', map { $_->url } @q);
my ($qa, $qb) = (session($a), $b1);
$_->query_safe("SET lockext.redis_nodes = '$qurl'; SET lockext.command_timeout = '4s'; SET deadlock_timeout = '300ms'")
  for ($qa, $qb);

# 5a. One node paused: a cycle is still found by its youngest waiter
#     deadlock_timeout after it closed, plus a round trip.
$q[2]->pause;
$qa->query_safe("BEGIN; SELECT dlock_acquire('c1') > 0");
$qb->query_safe("BEGIN; SELECT dlock_acquire('c2') > 0");
$qa->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('c2', 20) > 0 AS got;\n");
ok(waiting($a, $qa), 'paused node: the first waits');
$t0 = time;
my ($out, $errb) = run($qb, "SELECT dlock_acquire('c1', 20) > 0 AS got");
my $took = time - $t0;
like($errb, qr/deadlock detected/, 'paused node: the youngest wait is the victim');
cmp_ok($took, '<', 0.3 + 1.2, sprintf('paused node: within deadlock_timeout + a round trip (%.2f s; command timeout 4 s)', $took));
$qb->query_safe('ROLLBACK');
like($qa->query('SELECT 1'), qr/^t$/m, 'paused node: the other gets its lock');
$qa->{stderr} = '';
$qa->query_safe('COMMIT');
$q[2]->resume;

# 5b. Q (alpha) holds q2 and waits for nothing; P (beta) holds q1 and
#     waits for q2.  Node 1 has a (stale) edge Q -> P, node 2 a path
#     Q -> R -> P, node 3 neither: two nodes see a cycle, but not the same
#     one, so no majority sees either.
$qa->query_safe("SELECT dlock_acquire_session('q2') > 0");
$qb->query_safe("SELECT dlock_acquire_session('q1') > 0");
my ($qid, $pid_) = (holder_id('q2', $q[0]), holder_id('q1', $q[0]));
my $rid = 'f' x 24;
$q[0]->cli('SET', "lockext:waitfor:$qid", "$pid_|1|1|1|alpha|1|1|q1", 'PX', '60000');
$q[1]->cli('SET', "lockext:waitfor:$qid", "$rid|1|1|1|alpha|1|1|qr", 'PX', '60000');
$q[1]->cli('SET', "lockext:lock:qr", "$rid|planted", 'PX', '60000');
$q[1]->cli('SET', "lockext:waitfor:$rid", "$pid_|1|1|1|gamma|2|1|q1", 'PX', '60000');
($out, $err) = run($qb, "SELECT dlock_acquire('q2', 2)");
unlike($err, qr/deadlock detected/, 'split: no 40P01 from cycles no majority agrees on');
like($err, qr/could not acquire lock "q2" within 2 seconds/, 'split: the wait times out instead');
# the control: node 2 agrees with node 1, and the (planted) cycle counts
$q[1]->cli('SET', "lockext:waitfor:$qid", "$pid_|1|1|1|alpha|1|1|q1", 'PX', '60000');
($out, $err) = run($qb, "SELECT dlock_acquire('q2', 2)");
like($err, qr/deadlock detected/, 'split: the same cycle on two nodes of three is reported');
$_->cli('DEL', "lockext:waitfor:$qid", "lockext:waitfor:$rid", 'lockext:lock:qr') for @q[0, 1];
$_->query_safe('SELECT dlock_release_all()') for ($qa, $qb);
$_->quit for ($qa, $qb);
$_->stop for @q;

$_->stop for ($a, $b);
done_testing();
