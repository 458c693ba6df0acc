# COMMIT verification of many keys (issue 19, D): with
# lockext.verify_on_commit = always, a transaction holding 2,500 Redis
# locks is checked in pipelined batches (1,000 keys per command), not one
# round trip per key; a key lost among them still fails the COMMIT with
# 40001 naming it, and rolls the transaction back.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('verify');
my $node = start_lockext_cluster('verify', $redis->url, '1s');
$node->append_conf('postgresql.conf', "max_locks_per_transaction = 400\n");
$node->restart;
$node->safe_psql('postgres', 'CREATE TABLE t (v int)');

sub scripts_run
{
	my $calls = 0;
	my $stats = $redis->cli('INFO', 'commandstats');
	$calls += $2 while $stats =~ /cmdstat_(evalsha|eval):calls=(\d+)/g;
	return $calls;
}
my $s = $node->background_psql('postgres', on_error_stop => 0);
$s->query_safe('SET lockext.verify_on_commit = always');
$s->query_safe('BEGIN');
$s->query_safe(q{SELECT count(*) FROM unnest(dlock_acquire_all(ARRAY(SELECT 'v' || g FROM generate_series(1, 2500) g)))});
$redis->cli('CONFIG', 'RESETSTAT');
$s->query_safe('COMMIT');
my $calls = scripts_run();
ok($calls <= 8, "COMMIT checked 2,500 keys and released them with $calls scripts");

$s->query_safe('BEGIN');
$s->query_safe(q{SELECT count(*) FROM unnest(dlock_acquire_all(ARRAY(SELECT 'w' || g FROM generate_series(1, 2500) g)))});
$s->query_safe('INSERT INTO t VALUES (1)');
$redis->cli('DEL', 'lockext:lock:w1234');
$s->query('COMMIT');
like($s->{stderr}, qr/lock "w1234" was lost before COMMIT/, 'a lost key among them fails the COMMIT, named');
$s->{stderr} = '';
is($node->safe_psql('postgres', 'SELECT count(*) FROM t'), '0', 'and the transaction rolls back');
is($redis->cli('EVAL', "return #redis.call('KEYS', 'lockext:lock:w*')", '0'), '0', 'and its locks are released');
$s->quit;
$node->stop;
done_testing();
