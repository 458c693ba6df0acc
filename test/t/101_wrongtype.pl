# One lock key of the wrong type in Redis (a list where our string was)
# costs only that lock: the keeper's batched renewal marks that one hold
# lost and goes on renewing the others of the batch, and a batched release
# (COMMIT, dlock_release_all()) releases the others.  Before, the scripts'
# GET raised WRONGTYPE and failed the whole batch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('wrongtype');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '500ms') } ('alpha', 'beta');

# Make the Redis key of lock $key a list.
sub spoil
{
	my ($key) = @_;
	$redis->cli('DEL', "lockext:lock:$key");
	$redis->cli('RPUSH', "lockext:lock:$key", 'x');
	is($redis->cli('TYPE', "lockext:lock:$key"), 'list', "the key of '$key' is now a list");
}

sub state_of
{
	my ($key) = @_;
	return $a->safe_psql('postgres', "SELECT state FROM dlock_locks WHERE key = '$key'");
}

# Which of the keys prefix1..prefixN another cluster could take now.
sub free_of
{
	my ($prefix, $n, $except) = @_;
	return join(',', map { "$prefix$_" } grep { $_ != $except && free_on($b, "$prefix$_") } 1 .. $n);
}

# ... and which another cluster could not take.
sub taken_of
{
	my ($prefix, $n, $except) = @_;
	return join(',', map { "$prefix$_" } grep { $_ != $except && !free_on($b, "$prefix$_") } 1 .. $n);
}

# 1. Renewal: ten session locks with a 2 s lease (renewed in one batch),
#    one of them spoiled.
my $s = $a->background_psql('postgres', on_error_stop => 0);
$s->query_safe("SELECT dlock_acquire_session('w' || g, 5, 2) FROM generate_series(1, 10) g");
spoil('w3');
sleep 5;    # several renewal periods, more than two leases
is(state_of('w3'), 'lost', 'the spoiled lock is marked lost');
is($a->safe_psql('postgres', "SELECT string_agg(key, ',' ORDER BY key) FROM dlock_locks WHERE state <> 'held'"),
	'w3', 'the others of its batch stay held');
is(free_of('w', 10, 3), '', 'and still exclude another cluster');
is($s->query_safe("SELECT string_agg(key, ',') FROM dlock_held() WHERE state = 'lost'"),
	'w3', 'dlock_held agrees');

# 2. dlock_release_all(): the spoiled one is not ours, the others are
#    released.
$s->query_safe("SELECT dlock_acquire_session('s' || g, 5, 30) FROM generate_series(1, 10) g");
spoil('s2');
$s->query("SELECT dlock_release_all()");
$s->{stderr} = '';
is(taken_of('s', 10, 2), '', 'dlock_release_all() releases the others at once (lease 30 s)');
is(taken_of('w', 10, 3), '', 'including the renewed ones');

# 3. COMMIT of a transaction with several locks, one spoiled.
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('t' || g, 5, 30) FROM generate_series(1, 10) g");
spoil('t5');
$s->query_safe("SET LOCAL lockext.verify_on_commit = off");
$s->query('COMMIT');
$s->{stderr} = '';
is(taken_of('t', 10, 5), '', 'COMMIT releases the others at once (lease 30 s)');
is($redis->cli('TYPE', 'lockext:lock:t5'), 'list', 'and leaves the list alone');

$s->quit;
$_->stop for ($a, $b);
done_testing();
