# Redis state lost or in doubt, with real servers: fence tokens keep
# increasing across FLUSHALL and a restart without data; nodes that may
# evict keys are refused; verify_on_commit = always catches a lock flushed
# behind the holder's back (auto does not); an acquire whose answer never
# came (stalled Redis, terminated backend) leaves no ghost lock and does not
# block the session's own retry; waits that fail at once back off instead
# of spinning; a quorum waiter wakes on the first node that signals; an
# infinite wait with an unknown holder lease neither overflows nor spins;
# the wait loop frees its memory per attempt; the sockets are close-on-exec
# and waited on with one WaitEventSet per backend; the redis backend needs
# the library preloaded.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('state', conf => ['enable-debug-command local']);
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '300ms') } ('alpha', 'beta');

# SQLSTATE and message of a statement run by psql, or "ok: <output>".
sub outcome
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return "ok: $out" if $ret == 0;
	return $err =~ /ERROR:  (\w{5}): ([^\n]*)/ ? "$1: $2" : $err;
}

sub exists_key { return $redis->cli('EXISTS', "lockext:lock:$_[0]") }

# 1. Fence tokens across FLUSHALL and a restart without data.
my $s = $a->background_psql('postgres', on_error_stop => 0);
$s->query_safe('BEGIN');
my $t1 = $s->query_safe("SELECT dlock_acquire('f1', 5, 30)");
$redis->cli('FLUSHALL');
my $t2 = $b->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('f1', 0); COMMIT");
cmp_ok($t2, '>', $t1, "after FLUSHALL the next token ($t2) is still above the last one ($t1)");
$s->query("COMMIT");
is($s->{stderr}, '', 'verify_on_commit = auto does not notice the flushed lock (it checks leases only)');
$s->{stderr} = '';
$s->query_safe("SET lockext.verify_on_commit = 'always'");
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('f2', 5, 30)");
$redis->cli('FLUSHALL');
$s->query("COMMIT");
like($s->{stderr}, qr/lock "f2" was lost before COMMIT/,
	'verify_on_commit = always fails the COMMIT of a lock flushed behind its back');
$s->{stderr} = '';
$s->query_safe("RESET lockext.verify_on_commit");
my $t3 = $b->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('f3', 0); COMMIT");
$redis->kill9;
$redis->start;
my $t4 = $b->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('f3', 0); COMMIT");
cmp_ok($t4, '>', $t3, "after a restart without data too ($t4 > $t3)");

# 2. Nodes that may evict keys are refused; maxmemory 0 or noeviction are fine.
my %policy = (
	'allkeys-lru' => RedisServer->new('lru', conf => ['maxmemory 100mb', 'maxmemory-policy allkeys-lru']),
	'volatile-lru' => RedisServer->new('vlru', conf => ['maxmemory 100mb', 'maxmemory-policy volatile-lru']),
	'noeviction' => RedisServer->new('noev', conf => ['maxmemory 100mb', 'maxmemory-policy noeviction']),
	'unlimited' => RedisServer->new('unlim', conf => ['maxmemory 0', 'maxmemory-policy allkeys-lru']));
for my $p ('allkeys-lru', 'volatile-lru')
{
	my $url = $policy{$p}->url;
	my $r = outcome($a, "SET lockext.redis_nodes = '$url'; BEGIN; SELECT dlock_acquire('ev', 1); COMMIT");
	like($r, qr/^55000: Redis may evict lock "ev"/, "a node with maxmemory-policy $p is refused: 55000");
	my ($ret, $out, $err) = $a->psql('postgres', "SET lockext.redis_nodes = '$url'; BEGIN; SELECT dlock_acquire('ev', 1); COMMIT");
	like($err, qr/DETAIL:  .*127\.0\.0\.1:\d+.*maxmemory-policy is $p/, 'the detail names the node and its policy');
	like($err, qr/HINT:  Set maxmemory-policy to noeviction/, 'the hint names the setting');
}
for my $p ('noeviction', 'unlimited')
{
	my $url = $policy{$p}->url;
	like(outcome($a, "SET lockext.redis_nodes = '$url'; BEGIN; SELECT dlock_acquire('ev', 1) > 0; COMMIT"),
		qr/^ok: t/, "a node with $p takes locks");
}
$_->stop for values %policy;

# 3. A ghost acquire: Redis stalls past the command timeout with our
#    acquire in flight (DEBUG SLEEP, then SIGSTOP).  The acquire fails with
#    08006; when Redis runs it later, the give-back behind it removes it.
my $sleeper = IPC::Run::start([ 'redis-cli', '-h', '127.0.0.1', '-p', $redis->port,
	'DEBUG', 'SLEEP', '1.5' ], '>', \my $o1, '2>', \my $e1);
usleep(100_000);
my $sg = $a->background_psql('postgres', on_error_stop => 0);
$sg->query('\set VERBOSITY verbose');
$sg->query("SELECT dlock_acquire_session('ghost', 5, 30)");
like($sg->{stderr}, qr/08006/, 'an acquire stalled past the command timeout fails with 08006');
$sg->{stderr} = '';
$sleeper->finish;
usleep(100_000);
is(exists_key('ghost'), '0', 'once Redis ran it, the acquire left no ghost lock (lease was 30 s)');
is($sg->query_safe("SELECT dlock_acquire_session('ghost', 0.5) > 0"), 't',
	'the session\'s retry gets the lock');
ok(!free_on($b, 'ghost'), 'and holds it against the other cluster');
$sg->query_safe("SELECT dlock_release('ghost')");

$redis->pause;
$sg->query("SELECT dlock_acquire_session('ghost2', 5, 30)");
like($sg->{stderr}, qr/08006/, 'SIGSTOP: 08006 too');
$sg->{stderr} = '';
$redis->resume;
usleep(100_000);
is(exists_key('ghost2'), '0', 'and no ghost lock once it runs again');
is($sg->query_safe("SELECT dlock_acquire_session('ghost2', 0.5) > 0"), 't', 'the retry gets it');
$sg->query_safe("SELECT dlock_release('ghost2')");

# 3b. A backend terminated with its acquire in flight.
my $victim = $a->background_psql('postgres', on_error_stop => 0);
my $vpid = $victim->query_safe('SELECT pg_backend_pid()');
$victim->query_safe("SET lockext.command_timeout = '20s'");
$redis->pause;
$victim->query_until(qr/sent/, "\\echo sent\nSELECT dlock_acquire_session('ghost3', 5, 30);\n");
$a->poll_query_until('postgres',
	"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $vpid")
  or die 'the victim does not wait on Redis';
$a->safe_psql('postgres', "SELECT pg_terminate_backend($vpid)");
usleep(300_000);
$redis->resume;
my $t0 = time;
usleep(20_000) while exists_key('ghost3') ne '0' && time - $t0 < 5;
is(exists_key('ghost3'), '0', 'terminated in flight, the backend left no ghost lock');

# 4. Item 7 lives in 090; here a wait whose BLPOP fails at once (the wake key
#    has another type) backs off rather than spinning.
$s->query_safe("SELECT dlock_acquire_session('wt', 5, 3)");
$redis->cli('SET', 'lockext:wake:wt', 'not a list');
$redis->cli('CONFIG', 'RESETSTAT');
my $r = outcome($b, "BEGIN; SELECT dlock_acquire('wt', 1.5); COMMIT");
like($r, qr/^55P03/, 'the waiter times out as usual');
my $stats = $redis->cli('INFO', 'commandstats');
my $calls = 0;
$calls += $1 while $stats =~ /cmdstat_(?:evalsha|eval|blpop):calls=(\d+)/g;
cmp_ok($calls, '<', 40, "in $calls Redis commands over 1.5 s, not a busy loop");
$s->query_safe("SELECT dlock_release('wt')");
$redis->cli('DEL', 'lockext:wake:wt');

my $got;
# 5. An infinite wait on a holder without a known lease (a foreign value
#    without TTL): no overflow, no reconnect loop; statement_timeout ends it.
$redis->cli('SET', 'lockext:lock:inf', 'not lockext');
$redis->cli('CONFIG', 'RESETSTAT');
my $conns = ($redis->cli('INFO', 'stats') =~ /total_connections_received:(\d+)/)[0];
$r = outcome($b, "SET statement_timeout = '1.5s'; BEGIN; SELECT dlock_acquire('inf', 'Infinity'); COMMIT");
like($r, qr/^57014/, 'an infinite wait ends by statement_timeout (57014)');
my $conns2 = ($redis->cli('INFO', 'stats') =~ /total_connections_received:(\d+)/)[0];
cmp_ok($conns2 - $conns, '<', 5, 'with ' . ($conns2 - $conns) . ' new Redis connections (no reconnect loop)');
$stats = $redis->cli('INFO', 'commandstats');
$calls = 0;
$calls += $1 while $stats =~ /cmdstat_(?:evalsha|eval|blpop):calls=(\d+)/g;
cmp_ok($calls, '<', 10, "and $calls lock commands");
# The holder vanishes without a wake-up (its key deleted): an infinite wait
# rechecks within 10 s rather than sleeping on forever.
my $inf = $b->background_psql('postgres', on_error_stop => 0);
$inf->query_safe("SET statement_timeout = '30s'");
$inf->query_until(qr/queued/, "\\echo queued\nBEGIN; SELECT dlock_acquire('inf', 'Infinity') > 0;\n");
usleep(500_000);
$redis->cli('DEL', 'lockext:lock:inf');
$t0 = time;
$got = $inf->query("SELECT 'got it'");
my $took = time - $t0;
like($got, qr/^t\ngot it$/m, 'an infinite wait whose holder vanished without a wake-up gets the lock');
cmp_ok($took, '<', 12, "within the 10 s wake-up cap (${took}s)");
$inf->query_safe('COMMIT');
$inf->quit;

# 6. A quorum waiter wakes on the first node that signals: a paused
#    minority member must not hold every handoff up for the holder's lease.
my @q = map { RedisServer->new("q$_") } (1 .. 3);
my $qnodes = join(',', map { $_->url } @q);
my $qa = $a->background_psql('postgres', on_error_stop => 0);
my $qb = $b->background_psql('postgres', on_error_stop => 0);
$qa->query_safe("SET lockext.redis_nodes = '$qnodes'");
$qb->query_safe("SET lockext.redis_nodes = '$qnodes'");
$qa->query_safe("SELECT dlock_acquire_session('qk', 5, 20)");
$q[2]->pause;
$qb->query_until(qr/queued/, "\\echo queued\nBEGIN; SELECT dlock_acquire('qk', 15) > 0;\n");
# the waiter blocks in BLPOP on the live members
$t0 = time;
usleep(20_000) while $q[0]->cli('INFO', 'clients') !~ /blocked_clients:1/ && time - $t0 < 10;
like($q[0]->cli('INFO', 'clients'), qr/blocked_clients:1/, 'the quorum waiter waits for a wake-up');
$t0 = time;
$qa->query_safe("SELECT dlock_release('qk')");
$got = $qb->query("SELECT 'woken'");
my $handoff = time - $t0;
like($got, qr/^t\nwoken$/m, 'the quorum waiter got the lock');
cmp_ok($handoff, '<', 2, "${handoff}s after the release, with a paused member (lease 20 s)");
$qb->query_safe('COMMIT');
$q[2]->resume;
$qa->quit;
$qb->quit;
$_->stop for @q;

# 7. The wait loop frees each attempt's memory: 5,000 wake-ups of a waiter
#    that finds the key still held.
$s->query_safe("SELECT dlock_acquire_session('mem', 5, 30)");
my $w = $b->background_psql('postgres', on_error_stop => 0);
my $wpid = $w->query_safe('SELECT pg_backend_pid()');
$w->query_until(qr/queued/, "\\echo queued\nBEGIN; SELECT dlock_acquire('mem', 60) > 0;\n");
$b->poll_query_until('postgres', "SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $wpid")
  or die 'no waiter';
$redis->cli('EVAL', "for i = 1, 5000 do redis.call('RPUSH', KEYS[1], '1') end", '1', 'lockext:wake:mem');
$t0 = time;
usleep(50_000) while $redis->cli('LLEN', 'lockext:wake:mem') > 0 && time - $t0 < 30;
is($redis->cli('LLEN', 'lockext:wake:mem'), '0', 'the waiter went through 5,000 wake-ups');
my $logpos = -s $b->logfile;
$b->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($wpid)");
my $total;
for (1 .. 100)
{
	my $log = slurp_file($b->logfile, $logpos);
	if ($log =~ /Grand total: (\d+) bytes/) { $total = $1; last; }
	usleep(50_000);
}
cmp_ok($total, '<', 2_000_000, "its memory stayed small: $total bytes in all contexts");
$s->query_safe("SELECT dlock_release('mem')");
$w->query_safe('COMMIT');
$w->quit;

# 8. Sockets: close-on-exec (COPY ... TO PROGRAM), and one wait set kept
#    across transactions.
my $c = $a->background_psql('postgres', on_error_stop => 0);
my $cpid = $c->query_safe('SELECT pg_backend_pid()');
my $epolls = sub {
	my @e;
	for my $fd (glob("/proc/$cpid/fd/*"))
	{
		my $l = readlink($fd) // next;
		push @e, $l if $l =~ /eventpoll/;
	}
	return join(',', sort @e);
};
# inodes of the backend's sockets that are TCP connections to Redis
my $redis_inodes = sub {
	my %mine;
	for my $fd (glob("/proc/$cpid/fd/*"))
	{
		my $l = readlink($fd) // next;
		$mine{$1} = 1 if $l =~ /^socket:\[(\d+)\]/;
	}
	my @hits;
	open my $fh, '<', '/proc/net/tcp' or die;
	my $port = sprintf('%04X', $redis->port);
	while (<$fh>)
	{
		my @f = split ' ';
		push @hits, $f[9] if defined $f[2] && $f[2] =~ /:$port$/ && $mine{ $f[9] // '' };
	}
	return @hits;
};
my $before = $epolls->();
$c->query_safe("BEGIN; SELECT dlock_acquire('ws') > 0; COMMIT");
my $first = $epolls->();
$c->query_safe("BEGIN; SELECT dlock_acquire('ws' || i) > 0 FROM generate_series(1, 20) i; COMMIT") for 1 .. 5;
is($epolls->(), $first, 'the same wait set serves transaction after transaction');
my @e1 = split /,/, $before;
my @e2 = split /,/, $first;
is(scalar(@e2), scalar(@e1) + 1, 'one wait set for Redis, kept by the backend');
my @ri = $redis_inodes->();
is(scalar(@ri), 1, 'the backend has one connection to Redis');
my $dir = PostgreSQL::Test::Utils::tempdir();
$c->query_safe("COPY (SELECT 1) TO PROGRAM 'ls -l /proc/self/fd/ > $dir/fds.txt'");
my $fds = slurp_file("$dir/fds.txt");
unlike($fds, qr/socket:\[$ri[0]\]/, 'a program run by COPY TO PROGRAM does not inherit the Redis socket');
$c->quit;

# 9. Without shared_preload_libraries the redis backend refuses (55000);
#    the advisory backend works with zero setup.
my $np = PostgreSQL::Test::Cluster->new('nopreload');
$np->init;
$np->start;
$np->safe_psql('postgres', 'CREATE EXTENSION lockext');
my $url = $redis->url;
like(outcome($np, "SET lockext.redis_nodes = '$url'; BEGIN; SELECT dlock_acquire('np'); COMMIT"),
	qr/^55000: the redis backend of lockext requires the library to be preloaded/,
	'not preloaded: an acquire on Redis fails with 55000');
my ($ret, $out, $err) = $np->psql('postgres', "SET lockext.redis_nodes = '$url'; BEGIN; SELECT dlock_acquire('np'); COMMIT");
like($err, qr/HINT:  Add lockext to shared_preload_libraries/, 'with a hint naming shared_preload_libraries');
is(exists_key('np'), '0', 'and nothing was taken in Redis');
like(outcome($np, "BEGIN; SELECT dlock_acquire('np') > 0; COMMIT"), qr/^ok: t/,
	'the advisory backend works without preloading');
$np->stop;

$s->quit;
$sg->quit;
$_->stop for ($a, $b);
done_testing();
