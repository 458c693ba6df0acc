# A release on its way is not a holder (issue 19, B; found by the torture
# test): session A's COMMIT could not send its release (its connection was
# killed), so Redis still shows A's old value; B waits on Redis for it,
# and A, taking the key again, queues behind B in the local lock manager.
# That is no cycle: A holds nothing.  B must not get 40P01; both get the
# key once the keeper sends A's release again.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('inflight');
my $node = start_lockext_cluster('inflight', $redis->url, '500ms');
$node->append_conf('postgresql.conf', "deadlock_timeout = 300ms\n");
$node->reload;

my $a = $node->background_psql('postgres', on_error_stop => 0);
$a->query_safe('BEGIN');
$a->query_safe("SELECT dlock_acquire('g', 5, 30)");
$redis->cli('CLIENT', 'KILL', 'TYPE', 'normal');
$a->query('COMMIT');
$a->{stderr} = '';
is($redis->cli('EXISTS', 'lockext:lock:g'), '1', "A's release did not reach Redis");

# B waits on Redis for A's old value; then A queues behind B locally
sub start_psql
{
	my ($sql, $out, $err) = @_;
	return IPC::Run::start([ 'psql', '-X', '-v', 'VERBOSITY=verbose', '-h', $node->host,
		'-p', $node->port, '-d', 'postgres', '-c', $sql ], '>', $out, '2>', $err);
}
my ($bo, $be) = ('', '');
my $t0 = time;
my $b = start_psql("BEGIN; SELECT dlock_acquire('g', 20) > 0 AS b_got_it; SELECT pg_sleep(0.2); COMMIT;",
	\$bo, \$be);
usleep(500_000);
$a->query("BEGIN; SELECT dlock_acquire('g', 20) > 0; COMMIT;");
my $a_out = $a->{stdout};
$b->finish;
unlike($be, qr/40P01|deadlock detected/, 'B gets no 40P01: the value it waits for is a release on its way');
like($bo, qr/t/, 'B gets the key once the release goes through');
is($a->{stderr}, '', 'A gets no error');
ok(time - $t0 < 20, sprintf('both within %.1f s', time - $t0));
$a->quit;
$node->stop;
done_testing();
