# The torture test's first finding, reduced to two sessions (issue 19, B):
# a wait on Redis that ends in an ERROR (statement_timeout here;
# pg_cancel_backend alike) used to leave its wait-for edge in Redis for its
# time to live (2 x deadlock_timeout + 2 s), as deadlock_watch_end() ran
# only when the wait loop returned.  A later wait of the session it pointed
# to then followed the stale edge, saw a cycle that did not exist and got
# 40P01.  Failed on f1ebe3e (tests 2 and 3); the edge now goes with its wait.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('r');
my ($c1, $c2) = map { start_lockext_cluster($_, $redis->url, '1s') } qw(c1 c2);
my $a = $c1->background_psql('postgres', on_error_stop => 0);
my $b = $c2->background_psql('postgres', on_error_stop => 0);

$b->query_safe("BEGIN; SELECT dlock_acquire('x', 5, 30)");
# A waits for x past deadlock_timeout (1 s), which publishes its edge
# A -> B; statement_timeout then ends the wait
$a->query("BEGIN; SET LOCAL statement_timeout = '1500ms'; SELECT dlock_acquire('x', 10, 30)");
like($a->{stderr}, qr/statement timeout/, 'A: the wait for x ended by statement_timeout');
$a->{stderr} = '';
$a->query_safe('ROLLBACK');
is($redis->cli('--scan', '--pattern', 'lockext:waitfor:*'), '',
	"A's wait-for edge went with its wait");
$a->query_safe("BEGIN; SELECT dlock_acquire('y', 5, 30)");

# B, still holding x, waits for y, which A holds while waiting for nothing
$b->{stderr} = '';
$b->query_until(qr/started/, "\\echo started\nSELECT dlock_acquire('y', 10, 30);\n\\echo done\n");
sleep 3;
$a->query_safe('COMMIT');
$b->{run}->pump until $b->{stdout} =~ /done/;
unlike($b->{stderr}, qr/deadlock detected/, 'B waits for y until A commits: no deadlock')
  or diag($b->{stderr});
$a->quit;
$b->quit;
done_testing();
