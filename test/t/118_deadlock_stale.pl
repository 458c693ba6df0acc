# False deadlocks on a quorum from what some nodes still show (issue 19;
# the torture test's 40P01 in a guarded dlock_acquire_all).  A waiter on a
# quorum names as its holder the value the first refusing node showed,
# which may be a value only that node has (a release or a give-back of a
# split vote that has not reached it yet), and DETECT followed a wait on
# Redis on every node whose key was free.  So an edge toward a session
# that holds the key on no majority, together with a real edge back, made
# a cycle "a majority of the nodes sees".
#
# 1. Nodes q1..q3; q3 is down.  X (beta) released k, but q1 still shows
#    X's value (the state a release that missed q1 leaves).  W (alpha)
#    holds the session lock m, which X waits for.  W then waits for k:
#    refused on q1 (X), granted on q2, q3 down: busy, its holder named X.
#    X holds k on one node of three: no cycle, no 40P01; W's wait times
#    out, and W gets k once q3 is back.
# 2. The control: with X's value on q2 too (a majority shows X holding k),
#    the same waits are a cycle, and W, the younger wait, gets 40P01.
# 3. One node, with its data on disk.  V (beta) waits for W's session lock
#    m1 long enough to publish its edge V -> W; then Redis restarts: V's
#    wait ends by the outage, and its delete cannot reach the node, which
#    comes back with the edge.  V then takes k1 in a new transaction and W
#    waits for it: V waits for nothing, so no 40P01 (W times out).  The
#    delete used to be tried once; it now goes again first thing on the
#    node's next connection, as a release does.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my @q = map { RedisServer->new("q$_") } (1 .. 3);
my $urls = join(',', map { $_->url } @q);
my ($alpha, $beta) = map { start_lockext_cluster($_, $urls, '4s') } qw(alpha beta);
for my $c ($alpha, $beta)
{
	$c->safe_psql('postgres', "ALTER SYSTEM SET deadlock_timeout = '300ms'; SELECT pg_reload_conf()");
}

sub session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->{pid} = $s->query_safe('SELECT pg_backend_pid()');
	return $s;
}

sub waiting
{
	my ($node, $s) = @_;
	return $node->poll_query_until('postgres',
		"SELECT wait_event_type IN ('Extension', 'Lock') FROM pg_stat_activity WHERE pid = $s->{pid}");
}

# The errors of a query (taken off the session's stderr).
sub error_of
{
	my ($s, $sql) = @_;
	$s->query($sql);
	my $err = $s->{stderr};
	$s->{stderr} = '';    # IPC::Run writes into this very string
	return $err;
}

my $w = session($alpha);
my $x = session($beta);

# X's value for k, as a hold of X leaves it
$x->query_safe("SELECT dlock_acquire_session('k') > 0");
my $xk = $q[0]->cli('GET', 'lockext:lock:k');
like($xk, qr/^[0-9a-f]{24}/, 'X held k (its owner value)');
$x->query_safe("SELECT dlock_release('k')");
is($q[0]->cli('EXISTS', 'lockext:lock:k'), '0', 'X released k on every node');

$w->query_safe("SELECT dlock_acquire_session('m') > 0");

# W waits for k with X's value on the nodes listed; X waits for m (W's).
# Returns W's error.
sub round
{
	my (@stale) = @_;
	$_->cli('SET', 'lockext:lock:k', $xk, 'PX', '60000') for @stale;
	$x->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire_session('m', 30) > 0 AS x_got;\n");
	ok(waiting($beta, $x), 'X waits for m (held by W)');
	sleep 1;    # X's edge is out (deadlock_timeout 300 ms)
	$q[2]->stop;
	my $err = error_of($w, "BEGIN; SELECT dlock_acquire('k', 3) > 0");
	$w->query_safe('ROLLBACK');
	$q[2]->start;
	return $err;
}

# 1. X's value on q1 only
my $err = round($q[0]);
unlike($err, qr/deadlock detected/, 'one node of three shows X: W is no deadlock victim')
  or diag($err);
like($err, qr/could not acquire lock "k" within 3 seconds/, 'W times out instead');
like($w->query("BEGIN; SELECT dlock_acquire('k', 5) > 0; COMMIT"), qr/^t$/m, 'with q3 back, W gets k (q2 and q3)');
$q[0]->cli('DEL', 'lockext:lock:k');
$w->query_safe("SELECT dlock_release('m')");
like($x->query('SELECT 1'), qr/^t$/m, 'X gets m when W releases it');
$x->{stderr} = '';
$x->query_safe("SELECT dlock_release('m')");

# 2. X's value on q1 and q2: a majority shows X holding k
$w->query_safe("SELECT dlock_acquire_session('m') > 0");
$err = round(@q[0, 1]);
like($err, qr/deadlock detected/, 'a majority shows X: the cycle counts, W is the victim');
$_->cli('DEL', 'lockext:lock:k') for @q[0, 1];
$w->query_safe("SELECT dlock_release('m')");
like($x->query('SELECT 1'), qr/^t$/m, 'X gets m');
$x->query_safe("SELECT dlock_release('m')");

# 3. A wait's edge that a restarting node keeps
my $r = RedisServer->new('one', appendonly => 1);
my $url = $r->url;
$w->query_safe("SET lockext.redis_nodes = '$url'; SET deadlock_timeout = '300ms'");
$x->query_safe("SET lockext.redis_nodes = '$url'; SET deadlock_timeout = '2s'");
$w->query_safe("SELECT dlock_acquire_session('m1') > 0");
$x->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire_session('m1', 30);\n");
ok(waiting($beta, $x), 'V waits for m1 (held by W)');
sleep 3;
my $vid = $r->cli('--scan', '--pattern', 'lockext:waitfor:*');
like($vid, qr/^lockext:waitfor:[0-9a-f]{24}$/, "V's edge is out");
$r->stop;
$err = error_of($x, 'SELECT 1');
like($err, qr/Redis is unavailable/, "V's wait ends by the outage");
$r->start;
is($r->cli('EXISTS', $vid), '1', 'the node comes back with the edge');
$x->query_safe("BEGIN; SELECT dlock_acquire('k1') > 0");
is($r->cli('EXISTS', $vid), '0', "V's next command took the delete to the node first");
$err = error_of($w, "BEGIN; SELECT dlock_acquire('k1', 2) > 0");
unlike($err, qr/deadlock detected/, 'W waits for V, which waits for nothing: no 40P01')
  or diag($err);
like($err, qr/could not acquire lock "k1" within 2 seconds/, 'W times out instead');
$w->query_safe('ROLLBACK');
$x->query_safe('COMMIT');
$w->query_safe("SELECT dlock_release('m1')");

$_->quit for ($w, $x);
$_->stop for ($alpha, $beta);
done_testing();
