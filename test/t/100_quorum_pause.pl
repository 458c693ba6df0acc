# A paused quorum member does not cost the keeper its locks: 10,000
# session locks with a 3 s lease stay held while one of three Redis nodes
# is stopped (SIGSTOP) for 10 s: every hold stays 'held' in dlock_locks,
# both live nodes keep every key with this cluster's value (so no other
# cluster can reach a majority), another cluster cannot take them, and
# after SIGCONT all is still well and releases work.  The keeper's
# renewal round must finish on the majority, without waiting for the
# stopped node once per batch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $nlocks = 10_000;
my $lease = 3;

my @redis = map { RedisServer->new("pause$_") } 1 .. 3;
my $nodes = join(',', map { $_->url } @redis);
my ($a, $b) = map { start_lockext_cluster($_, $nodes, '500ms') } ('alpha', 'beta');
# each Redis hold also takes a local lock (the local queue)
for my $pg ($a, $b)
{
	$pg->append_conf('postgresql.conf', 'max_locks_per_transaction = 1000');
	$pg->restart;
}

# How many of our keys a node holds with alpha's value and a lease left.
sub alpha_keys_on
{
	my ($r) = @_;
	return $r->cli('EVAL', q{
local n = 0
for _, k in ipairs(redis.call('KEYS', ARGV[1])) do
  local v = redis.pcall('GET', k)
  if type(v) == 'string' and string.find(v, '|alpha|', 1, true)
     and redis.call('PTTL', k) > 0 then n = n + 1 end
end
return n}, 0, 'lockext:lock:p*');
}

sub states
{
	return $a->safe_psql('postgres',
		"SELECT coalesce(string_agg(state || '=' || n, ',' ORDER BY state), 'none') FROM "
		  . "(SELECT state, count(*) AS n FROM dlock_locks GROUP BY state) s");
}

my $s = $a->background_psql('postgres', on_error_stop => 0);

# 0. A grant that did not wait for a paused member still reaches it once
#    the member is back, also the first one after the servers started:
#    a script goes by EVAL until the connection has had it (an EVALSHA's
#    NOSCRIPT from a node nobody waits for was lost, and the key with it).
$s->query_safe("SELECT dlock_holder('warm')");    # connected to all three
$redis[2]->pause;
$s->query_safe("SELECT dlock_acquire_session('first', 5, 30)");
$redis[2]->resume;
my $on_third = 0;
for (1 .. 50)
{
	last if ($on_third = $redis[2]->cli('EXISTS', 'lockext:lock:first')) eq '1';
	usleep(100_000);
}
is($on_third, '1', 'a grant made while a member was stopped reaches it when it is back');
$s->query_safe("SELECT dlock_release('first')");

my $t0 = time;
is($s->query_safe("SELECT count(dlock_acquire_session('p' || g, 5, $lease)) "
	  . "FROM generate_series(1, $nlocks) g"), $nlocks, "$nlocks session locks taken");
note sprintf('taking them took %.1f s', time - $t0);
sleep 2;    # the keeper has renewed all of them at least once
is(states(), "held=$nlocks", 'all held before the pause');
is(alpha_keys_on($redis[0]), $nlocks, 'node 1 holds every key');

# Stop one member for 10 s: more than three leases.
$redis[2]->pause;
$t0 = time;
sleep 5;
is(states(), "held=$nlocks", '5 s into the pause, all still held');
sleep 5;
is(states(), "held=$nlocks", '10 s into the pause, all still held');
is($s->query_safe('SELECT count(*) FROM dlock_held() WHERE state = \'held\''), $nlocks,
	'dlock_held agrees');
is(alpha_keys_on($redis[0]), $nlocks, 'live node 1 still holds every key for alpha');
is(alpha_keys_on($redis[1]), $nlocks, 'live node 2 still holds every key for alpha');
is($b->safe_psql('postgres', "BEGIN; SELECT count(*) FROM "
	  . "unnest(ARRAY['p1', 'p5000', 'p$nlocks']) k WHERE dlock_try_acquire(k); COMMIT"),
	'0', 'another cluster cannot take them (a sample: each try waits for the stopped node)');
note sprintf('checks done %.1f s after the pause began', time - $t0);
$redis[2]->resume;

# After SIGCONT: the late answers are skipped, renewal goes on.
sleep 2 * $lease;
is(states(), "held=$nlocks", "$lease s after SIGCONT, all still held");
is(alpha_keys_on($redis[0]) . '/' . alpha_keys_on($redis[1]), "$nlocks/$nlocks",
	'and held on both nodes that stayed up');
is($b->safe_psql('postgres', "BEGIN; SELECT count(*) FROM "
	  . "generate_series(1, $nlocks) g WHERE dlock_try_acquire('p' || g); COMMIT"),
	'0', 'another cluster cannot take any of them');
is($s->query_safe('SELECT dlock_release_all()'), $nlocks, 'all released');
is(join('/', map { $_->cli('EVAL', "return #redis.call('KEYS', 'lockext:lock:p*')", 0) } @redis),
	'0/0/0', 'and gone from every node');

$s->quit;
$_->stop for ($a, $b);
done_testing();
