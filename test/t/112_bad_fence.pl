# A fencing counter that is not a number (issue 19, E): someone wrote the
# key <ns>:fence.  The acquire names the key (XX001) instead of calling
# Redis unavailable (08006), takes nothing, and works again once the key
# is deleted (a missing counter starts from the clock).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('fence');
my $node = start_lockext_cluster('fence', $redis->url, '500ms');
$redis->cli('SET', 'lockext:fence', 'not a number');
for my $call ("dlock_try_acquire('k1')", "dlock_acquire('k1', 1)",
	"dlock_try_acquire_all(ARRAY['k1', 'k2'])")
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nBEGIN; SELECT $call; COMMIT;");
	like($err, qr/ERROR:  XX001: the fencing counter lockext:fence in Redis is not a number/,
		"$call: XX001 naming the counter");
	like($err, qr/HINT:  Delete the key in Redis/, 'with a hint');
	is($redis->cli('EXISTS', 'lockext:lock:k1'), '0', 'and nothing is taken');
}
$redis->cli('DEL', 'lockext:fence');
is($node->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('k1') > 0; COMMIT"), 't',
	'with the key deleted, locks work again');
$node->stop;
done_testing();
