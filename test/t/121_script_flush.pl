# A quorum member whose script cache was flushed (SCRIPT FLUSH, a restart)
# and that is slow, so that its answers are not waited for once a majority
# answered: a session must not go on sending it EVALSHA for ever (each one
# refused with NOSCRIPT, unseen), but send EVAL, so that the member holds
# the locks again and the quorum keeps its redundancy.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my @q = map { RedisServer->new("f$_") } (1 .. 3);
my $a = start_lockext_cluster('alpha', join(',', map { $_->url } @q), '2s');
my $s = $a->background_psql('postgres', on_error_stop => 0);

# The session's connections know the scripts on every node.
$s->query_safe("BEGIN; SELECT dlock_acquire('warm'); COMMIT");
$s->query_safe("BEGIN; SELECT dlock_acquire('warm'); COMMIT");
$_->cli('SCRIPT', 'FLUSH') for @q;
$_->cli('CONFIG', 'RESETSTAT') for @q;

# Three acquires, each while the third node is stopped (SIGSTOP): the
# acquire returns on the first two nodes' answers, and the third node's
# (NOSCRIPT, for an EVALSHA, once it is continued) is not waited for.
for my $round (1 .. 3)
{
	$q[2]->pause;
	is($s->query_safe("BEGIN; SELECT dlock_acquire('k$round') > 0; COMMIT"), 't',
		"round $round: granted by the majority while the third node is stopped");
	$q[2]->resume;
	usleep(300_000);
}
# A fourth acquire while it is stopped again: once continued, the slow node runs
# it too (EVAL), and holds the lock with the others.
$q[2]->pause;
$s->query_safe("BEGIN; SELECT dlock_acquire('after')");
$q[2]->resume;
my $on = 0;
for (1 .. 40)
{
	$on = $q[2]->cli('EXISTS', 'lockext:lock:after');
	last if $on;
	usleep(50_000);
}
is($on, '1', 'the slow node runs the acquires too, and holds the lock');
$s->query_safe('COMMIT');

$s->quit;
$a->stop;
$_->stop for @q;
done_testing();
