# A lease shorter than Redis takes to answer (issue 19, E): the grant comes
# back with its lease already over.  A try-once call says so (22023, with
# the time the grant took) instead of "busy", and a wait that runs out on
# such grants says so instead of 55P03 for a lock "another session held",
# which nobody did.  Redis is paused while the acquire (50 ms lease) is on
# its way; a wait retries while time is left.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('slow');
my $node = start_lockext_cluster('slow', $redis->url, '2s');
$node->safe_psql('postgres', "SELECT dlock_try_acquire_session('warm'), dlock_release('warm')");
# Redis paused for $pause s around an acquire call; its stderr and duration
sub slow_acquire
{
	my ($call, $pause) = @_;
	my ($out, $err) = ('', '');
	$redis->pause;
	my $t0 = time;
	my $h = IPC::Run::start([ 'psql', '-X', '-v', 'VERBOSITY=verbose', '-h', $node->host,
		'-p', $node->port, '-d', 'postgres', '-c', "BEGIN; SELECT $call; COMMIT;" ],
		'>', \$out, '2>', \$err);
	usleep($pause * 1_000_000);
	$redis->resume;
	$h->finish;
	return ($out, $err, time - $t0);
}
my ($out, $err, $took) = slow_acquire("dlock_try_acquire('short', 0.05)", 0.3);
like($err, qr/ERROR:  22023: the lease of lock "short" was over before Redis's grant arrived/,
	'try once, the grant arrives after its 50 ms lease: 22023, not "busy"');
like($err, qr/DETAIL:  The grant took \d+ ms; the lease is 50 ms/, 'saying how long the grant took');
is($redis->cli('EXISTS', 'lockext:lock:short'), '0', 'nothing is left held');
($out, $err, $took) = slow_acquire("dlock_acquire('short', 0.5, 0.05)", 1);
like($err, qr/ERROR:  22023: the lease of lock "short" was over before Redis's grant arrived/,
	'a 0.5 s wait that ends on such a grant: 22023, not 55P03');
($out, $err, $took) = slow_acquire("dlock_acquire('short', 5, 0.05) > 0", 0.3);
is($err, '', 'a longer wait retries once Redis answers quickly again');
like($out, qr/t/, 'and gets the lock');
$node->stop;
done_testing();
