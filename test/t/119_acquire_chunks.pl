# dlock_acquire_all of many keys in chunks (issue 19, D): 2,500 keys are
# taken by three scripts of at most 1,000 locks each, pipelined on the
# node's one connection, rather than one script of 2,500 locks (5,001
# keys) that stalls Redis for every instance; still all or none
# across the chunks: with a key of the second chunk busy, nothing of the
# first chunk (or, on a quorum, of a node that granted them all) stays
# behind; the first busy key in canonical order is the one named and
# waited for; granted once the busy keys are released; COMMIT frees all.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('chunk');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '2s') } ('alpha', 'beta');
$a->append_conf('postgresql.conf', "max_locks_per_transaction = 400\n");
$a->restart;

# keys c0001 .. c2500: their canonical order is their numeric one
my $all = q{ARRAY(SELECT 'c' || lpad(g::text, 4, '0') FROM generate_series(1, 2500) g)};

# The acquire scripts Redis ran since the last SLOWLOG RESET, oldest
# first: "locks@client" each (ACQUIRE_MANY's keys: the fence, a lock and
# its waiting flag per lock, and, after the first chunk, the lock before).
my $slowlog_acquires = q{
local r = {}
local log = redis.call('SLOWLOG', 'GET', -1)
for i = #log, 1, -1 do
  local a = log[i][4]
  if (a[1] == 'EVAL' or a[1] == 'EVALSHA') and a[4] == 'lockext:fence' and
     a[6] and string.sub(a[6], 1, 13) == 'lockext:lock:' then
    r[#r + 1] = math.floor((tonumber(a[3]) - 1) / 2) .. '@' .. log[i][5]
  end
end
return table.concat(r, ',')
};

sub start_counting
{
	for my $r (@_)
	{
		$r->cli('CONFIG', 'SET', 'slowlog-max-len', '100000');
		$r->cli('CONFIG', 'SET', 'slowlog-log-slower-than', '0');
		$r->cli('SLOWLOG', 'RESET');
	}
}

# "locks,locks,..." of the acquire scripts, and how many connections
# sent them
sub acquires
{
	my ($r) = @_;
	my @calls = split /,/, $r->cli('EVAL', $slowlog_acquires, '0');
	my %clients = map { (split /@/)[1] => 1 } @calls;
	return (join(',', map { (split /@/)[0] } @calls), scalar keys %clients);
}

sub locks_on
{
	my ($r) = @_;
	return $r->cli('EVAL', "return #redis.call('KEYS', 'lockext:lock:c*')", '0');
}

# the releases after COMMIT may reach a node a moment later
sub wait_for_locks
{
	my ($want, @rs) = @_;
	my $on;
	for (1 .. 50)
	{
		$on = join(',', map { locks_on($_) } @rs);
		return $on if $on eq $want;
		usleep(100_000);
	}
	return $on;
}

# 1. 2,500 keys: three scripts of at most 1,000 locks, one connection.
my $s = $a->background_psql('postgres', on_error_stop => 0);
my $spid = $s->query_safe('SELECT pg_backend_pid()');
start_counting($redis);
$s->query_safe('BEGIN');
my $t0 = time;
is($s->query_safe("SELECT count(DISTINCT t) FROM unnest(dlock_acquire_all($all)) t"),
	'2500', 'dlock_acquire_all of 2,500 keys: a token each');
my $took = time - $t0;
my ($calls, $clients) = acquires($redis);
is($calls, '1000,1000,500', 'three acquire scripts of 1,000, 1,000 and 500 locks');
is($clients, 1, 'sent on one connection');
is(locks_on($redis), '2500', "all 2,500 held in Redis (taken in $took s)");
is($s->query_safe('SELECT count(*) FROM dlock_held()'), '2500', 'and in dlock_held()');
$s->query_safe('COMMIT');
is(wait_for_locks('0', $redis), '0', 'COMMIT releases them all');

# 2. c1700 (second chunk) and c2400 (third) held by another instance: all
#    or none across the chunks (a chunk refused on a node stops those behind
#    it there), the first busy key in canonical order named.
my $hb = $b->background_psql('postgres', on_error_stop => 0);
$hb->query_safe("SELECT dlock_acquire_session('c1700'), dlock_acquire_session('c2400')");
start_counting($redis);
$s->query_safe('BEGIN');
is($s->query_safe("SELECT dlock_try_acquire_all($all)"), 'f', 'try: false with c1700 busy');
is(locks_on($redis), '2', 'none of the 2,500 left in Redis (the first chunk given back)');
is($redis->cli('EXISTS', 'lockext:waiting:c1700', 'lockext:waiting:c2400'), '1',
	'the chunk behind the refused one took nothing (c2400 not even flagged as waited for)');
($calls) = acquires($redis);
is($calls, '1000,1000,500', 'still three acquire scripts');
is($s->query_safe('SELECT count(*) FROM dlock_held()'), '0', 'and nothing held');
$s->query_safe('ROLLBACK');

$s->query_safe('BEGIN');
$s->query("SELECT dlock_acquire_all($all, 0.5)");
like($s->{stderr}, qr/could not acquire lock "c1700" within 0.5 seconds/,
	'the waiting form names the first busy key, c1700');
$s->{stderr} = '';
$s->query_safe('ROLLBACK');
is(locks_on($redis), '2', 'none of the 2,500 left after the timeout');

# 3. Granted once the busy keys are released, within the one timeout.
$s->query_safe('BEGIN');
$s->query_until(qr/go/, "\\echo go\nSELECT array_length(dlock_acquire_all($all, 60), 1);\n");
ok($a->poll_query_until('postgres', "SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $spid"),
	'waiting for c1700');
$hb->query_safe("SELECT dlock_release('c1700')");
usleep(500_000);
is($a->safe_psql('postgres', "SELECT state FROM pg_stat_activity WHERE pid = $spid"), 'active',
	'still waiting, now for c2400');
$t0 = time;
$hb->query_safe("SELECT dlock_release('c2400')");
is($s->query_safe('SELECT 1'), "2500\n1", 'granted all 2,500 after the releases');
$took = time - $t0;
cmp_ok($took, '<', 10, "soon after the last release ($took s)");
is(locks_on($redis), '2500', 'all held in Redis');
$s->query_safe('COMMIT');
is(wait_for_locks('0', $redis), '0', 'COMMIT releases them all');

# 4. The node stops answering mid-acquire (command timeout 2 s): what its
#    chunks may still take is followed by their give-back.
$redis->pause;
$s->query('BEGIN');
$s->query("SELECT dlock_try_acquire_all($all)");
like($s->{stderr}, qr/Redis is unavailable/, 'a paused node: the acquire fails as an outage');
$s->{stderr} = '';
$s->query_safe('ROLLBACK');
$redis->resume;
$s->query_safe("BEGIN; SELECT dlock_try_acquire('other'); COMMIT");
is(wait_for_locks('0', $redis), '0', 'and none of the 2,500 stays taken once the node resumes');

# 5. On a quorum of three: c1700 busy on two nodes; the third grants every
#    chunk, and must give them all back (also when it was paused and
#    grants them late); then granted on all three.
my @q = map { RedisServer->new("q$_") } (1 .. 3);
$s->query_safe("SET lockext.redis_nodes = '" . join(',', map { $_->url } @q) . "'");
$q[$_]->cli('SET', 'lockext:lock:c1700', 'ffffffffffffffffffffffff0000000000000001|other|1|postgres|0|x',
	'PX', '60000') for (0, 1);
start_counting(@q);
$s->query_safe('BEGIN');
is($s->query_safe("SELECT dlock_try_acquire_all($all)"), 'f', 'quorum: false with c1700 busy on a majority');
is(wait_for_locks('1,1,0', @q), '1,1,0', 'quorum: none of the 2,500 left on any node');
is(join(' ', map { (acquires($_))[0] } @q), join(' ', ('1000,1000,500') x 3),
	'quorum: three acquire scripts on each node');
$s->query_safe('ROLLBACK');
# a paused node is not waited for: it grants every chunk late, and gets
# the give-back behind them (with c0001 busy too, nobody else granted any)
$q[$_]->cli('SET', 'lockext:lock:c0001', 'ffffffffffffffffffffffff0000000000000001|other|1|postgres|0|x',
	'PX', '60000') for (0, 1);
$q[2]->pause;
$s->query_safe('BEGIN');
is($s->query_safe("SELECT dlock_try_acquire_all($all)"), 'f', 'quorum, a node paused: false');
$s->query_safe('ROLLBACK');
$q[2]->resume;
is(wait_for_locks('2,2,0', @q), '2,2,0', 'quorum: what the paused node granted late is given back');
$q[$_]->cli('DEL', 'lockext:lock:c0001', 'lockext:lock:c1700') for (0, 1);
$s->query_safe('BEGIN');
is($s->query_safe("SELECT array_length(dlock_acquire_all($all), 1)"), '2500', 'quorum: granted');
is(wait_for_locks('2500,2500,2500', @q), '2500,2500,2500', 'quorum: all held on every node');
$s->query_safe('COMMIT');
is(wait_for_locks('0,0,0', @q), '0,0,0', 'quorum: COMMIT releases them all');

$_->quit for ($s, $hb);
$_->stop for ($a, $b);
done_testing();
