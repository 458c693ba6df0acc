# A session that ends right after releasing many Redis locks (issue 19,
# A8).  COMMIT sends its release batches without waiting for the replies;
# the session then exits at once.  Every one of 3,000 locks (30 s lease)
# must be free within a few seconds: the exit waits for the replies of what
# was sent (or hands it to the keeper), so closing the socket never
# discards releases Redis had not read yet.  Checked after COMMIT (five
# rounds: the old bug showed in most runs), after ROLLBACK TO SAVEPOINT,
# and for a session terminated right after its COMMIT.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('exit');
my $a = start_lockext_cluster('alpha', $redis->url, '1s');

# Lock keys of round $r in Redis now.
sub locked
{
	my ($r) = @_;
	return $redis->cli('EVAL', "return #redis.call('KEYS', ARGV[1])", '0',
		"lockext:lock:round $r:*");
}

# Run sql with KEYS standing for 3,000 keys of this round's own (so that a
# round left to the lease does not hold up the next), in one session that
# then ends; all its keys must be free within a few seconds.
my $round = 0;
sub round
{
	my ($what, $sql, $may_fail) = @_;
	my $r = ++$round;
	my $keys = "array(SELECT 'round $r: order ' || i FROM generate_series(1, 3000) i)";
	$sql =~ s/KEYS/$keys/;
	my ($ret, $out, $err) = $a->psql('postgres', $sql);
	is($ret, 0, "$what: psql succeeds") unless $may_fail;
	my $t0 = time;
	my $left;
	usleep(100_000) while ($left = locked($r)) > 0 && time - $t0 < 4;
	is($left, 0, sprintf("%s: all 3,000 keys free %.1f s after the session ended",
			$what, time - $t0));
}

# The same while Redis is slow to read (stopped for pause seconds from
# just before the COMMIT): what the session sent must still be carried out,
# by the session, or by the keeper once the session gave up waiting.
sub slow_round
{
	my ($what, $pause) = @_;
	my $r = ++$round;
	my $s = $a->background_psql('postgres');
	$s->query_safe('BEGIN');
	$s->query_safe("SELECT dlock_acquire_all(array(SELECT 'round $r: order ' || i "
		  . "FROM generate_series(1, 3000) i), 30, 30) IS NOT NULL");
	$redis->pause;
	$s->query('COMMIT');
	$s->quit;
	usleep($pause * 1_000_000);
	$redis->resume;
	my $t0 = time;
	my $left;
	usleep(100_000) while ($left = locked($r)) > 0 && time - $t0 < 4;
	is($left, 0, sprintf("%s: all 3,000 keys free %.1f s after Redis resumed",
			$what, time - $t0));
}

slow_round("Redis slow to read, round $_", 0.3) for 1 .. 3;
for my $r (1 .. 5)
{
	round("COMMIT and exit, round $r",
		'BEGIN; SELECT dlock_acquire_all(KEYS, 30, 30) IS NOT NULL; COMMIT;');
}
for my $r (1 .. 2)
{
	round("ROLLBACK TO SAVEPOINT and exit, round $r",
		'BEGIN; SAVEPOINT s; SELECT dlock_acquire_all(KEYS, 30, 30) IS NOT NULL; '
		  . 'ROLLBACK TO SAVEPOINT s; COMMIT;');
	round("terminated after COMMIT, round $r",
		'BEGIN; SELECT dlock_acquire_all(KEYS, 30, 30) IS NOT NULL; COMMIT; '
		  . 'SELECT pg_terminate_backend(pg_backend_pid());', 1);
}
is($a->safe_psql('postgres', 'SELECT sum(releases_left_to_lease) FROM dlock_stats'), '0',
	'no release was left to the lease');

# Stopped for longer than the session waits at exit (the command and the
# connect timeout, 2 s): the keeper finishes the releases.
slow_round('Redis stopped for 3 s', 3);

$a->stop;
done_testing();
