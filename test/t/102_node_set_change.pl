# Changing lockext.redis_nodes under held locks (issue 19, A7).  The same
# three nodes listed in another order are the same set: the keeper goes on
# renewing a 2 s-lease session lock after the reload, and another cluster
# cannot take it.  Other nodes: holds taken before the change are renewed
# on the nodes they were taken on until released (a transaction across the
# change commits).  A malformed value in postgresql.auto.conf (which the
# server keeps as "invalid") does not stop renewal either.  A keeper that
# restarts and no longer knows the nodes a hold was taken on marks it lost:
# dlock_held() says so, dlock_extend returns false with a WARNING, and a
# transaction holding such a lock fails its COMMIT with 40001.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my @old = map { RedisServer->new("old$_") } 1 .. 3;
my @new = map { RedisServer->new("new$_") } 1 .. 3;
my $old_list = join ',', map { $_->url } @old;
my $new_list = join ',', map { $_->url } @new;
my ($a, $b) = map { start_lockext_cluster($_, $old_list, '500ms') } ('alpha', 'beta');

# alpha's server setting, reloaded (beta keeps the old nodes throughout)
sub set_nodes
{
	my ($list) = @_;
	$a->safe_psql('postgres',
		"ALTER SYSTEM SET lockext.redis_nodes = '$list'; SELECT pg_reload_conf()");
	usleep(300_000);
}

# On how many of these nodes is the key held?
sub held_on
{
	my ($servers, $key) = @_;
	return scalar grep { $_->cli('EXISTS', "lockext:lock:$key") eq '1' } @$servers;
}

$a->safe_psql('postgres', 'CREATE TABLE t (v int)');
# Does query (on alpha) say 't' within secs?
sub poll
{
	my ($query, $secs) = @_;
	for (1 .. $secs * 10)
	{
		return 1 if $a->safe_psql('postgres', $query) eq 't';
		usleep(100_000);
	}
	return 0;
}

my $s = $a->background_psql('postgres', on_error_stop => 0);
my $x = $a->background_psql('postgres', on_error_stop => 0);
$x->query_safe('\set VERBOSITY verbose');

# $s's session hold of key and $x's open transaction's of xkey were marked
# lost: dlock_held says so, dlock_extend returns false with a WARNING, and
# the COMMIT fails with 40001.
sub check_lost
{
	my ($key, $xkey) = @_;
	is($s->query_safe("SELECT state FROM dlock_held() WHERE key = '$key'"), 'lost',
		"$key: dlock_held says lost");
	is($s->query("SELECT dlock_extend('$key')"), 'f', "$key: dlock_extend returns false");
	like($s->{stderr}, qr/WARNING:  lock "$key" was lost/, 'with a WARNING');
	$s->{stderr} = '';
	$x->query('COMMIT');
	like($x->{stderr}, qr/ERROR:  40001: lock "$xkey" was lost before COMMIT/,
		"$xkey: the open transaction's COMMIT fails with 40001");
	$x->{stderr} = '';
}

# 1. The same nodes in reverse order.
$s->query_safe("SELECT dlock_acquire_session('reordered', 5, 2)");
set_nodes(join ',', map { $_->url } reverse @old);
sleep 6;
is($s->query_safe("SELECT state FROM dlock_held() WHERE key = 'reordered'"), 'held',
	'reordered nodes: dlock_held says held 6 s later (lease 2 s)');
cmp_ok(held_on(\@old, 'reordered'), '>=', 2, 'the key is still on a majority of the nodes');
ok(!free_on($b, 'reordered'), 'and another cluster cannot take it');
$s->query_safe("SELECT dlock_acquire_session('after-reorder', 5, 2)");
sleep 3;
ok(!free_on($b, 'after-reorder'), 'a lock taken after the reload is renewed too');
$s->query_safe("SELECT dlock_release('reordered'), dlock_release('after-reorder')");
ok(free_on($b, 'reordered') && free_on($b, 'after-reorder'), 'released: free');

# 2. Other nodes: a session hold and an open transaction's hold taken on the
#    old nodes are still renewed there (or, if not, marked lost: never
#    silently dropped).
$s->query_safe("SELECT dlock_acquire_session('moved', 5, 2)");
$x->query_safe('BEGIN');
$x->query_safe("SELECT dlock_acquire('moved-x', 5, 2)");
set_nodes($new_list);
sleep 6;
my $state = $s->query_safe("SELECT state FROM dlock_held() WHERE key = 'moved'");
if ($state eq 'lost')
{
	check_lost('moved', 'moved-x');
}
else
{
	is($state, 'held', 'moved to other nodes: the earlier hold is still held 6 s later');
	cmp_ok(held_on(\@old, 'moved'), '>=', 2, 'still on a majority of the old nodes');
	ok(!free_on($b, 'moved'), 'a cluster on the old nodes cannot take it');
	ok(!free_on($b, 'moved-x'), 'nor the open transaction\'s lock');
	is($a->safe_psql('postgres', "SELECT state FROM dlock_locks WHERE key = 'moved-x'"), 'held',
		'which dlock_locks shows held');
	is($s->query("SELECT dlock_extend('moved')"), 't', 'dlock_extend works on it');
	$s->{stderr} = '';
	$x->query('COMMIT');
	is($x->{stderr}, '', 'the transaction across the change commits');
	$x->{stderr} = '';
}
$s->query_safe("SELECT dlock_acquire_session('fresh', 5, 2)");
ok(held_on(\@new, 'fresh') >= 2 && held_on(\@old, 'fresh') == 0, 'taken on the new nodes only');
$s->query("SELECT dlock_release_all()");
$s->{stderr} = '';
ok(free_on($b, 'moved'), 'the moved lock, released, is free on the old nodes');
is(held_on(\@new, 'fresh'), 0, 'and the new one on the new nodes');

# 3. A malformed value written into postgresql.auto.conf by hand: the
#    server keeps it as invalid (new locks fail), holds are still renewed.
set_nodes($old_list);
$s->query_safe("SELECT dlock_acquire_session('malformed', 5, 2)");
$x->query_safe('BEGIN');
$x->query_safe("SELECT dlock_acquire('malformed-x', 5, 2)");
$x->query_safe('INSERT INTO t VALUES (1)');
my $log_offset = -s $a->logfile;
$a->append_conf('postgresql.auto.conf', "lockext.redis_nodes = 'nonsense://x'\n");
$a->reload;
usleep(300_000);
ok($a->log_contains(qr/invalid value for parameter "lockext.redis_nodes"/, $log_offset),
	'the malformed value is logged at reload');
my ($ret, $out, $err) = $a->psql('postgres', "BEGIN; SELECT dlock_acquire('new', 1); COMMIT");
like($err, qr/lockext.redis_nodes is invalid/, 'new locks are refused (F0000)');
sleep 6;
is($s->query_safe("SELECT state FROM dlock_held() WHERE key = 'malformed'"), 'held',
	'with the value malformed, the earlier session hold is still held 6 s later');
ok(!free_on($b, 'malformed'), 'and another cluster cannot take it');
ok(!free_on($b, 'malformed-x'), 'nor the open transaction\'s lock');

# 4. The keeper restarts: it no longer knows the nodes those holds were
#    taken on, and marks them lost rather than leaving them to their lease.
my $keeper = $a->safe_psql('postgres', 'SELECT dlock_keeper_pid()');
kill 'TERM', $keeper;
ok(poll("SELECT count(*) = 2 FROM dlock_locks WHERE key LIKE 'malformed%' AND state = 'lost'", 10),
	'the restarted keeper marks holds on nodes it does not know lost');
ok($a->log_contains(qr/lockext lease keeper does not know the Redis nodes of 2 holds/, $log_offset),
	'and logs it');
check_lost('malformed', 'malformed-x');
is($a->safe_psql('postgres', 'SELECT count(*) FROM t'), '0', 'its write is rolled back');

$s->quit;
$x->quit;
$_->stop for ($a, $b);
done_testing();
