# The lease keeper follows the holds one change at a time (the ring of
# changed rows, src/keeper_items.c): holds taken after it started are
# renewed, holds released are not, a changed lease (dlock_extend) is
# followed; one statement taking 40,000 holds (more than the ring holds)
# does not leave it behind, since the backend wakes it when the ring is
# half full; when it does fall behind (it is stopped while 40,000 holds
# are taken), it says so, reads the table whole, and renews them all.  A
# keeper that restarts takes on the lease board slots of the one before
# (src/lease_board.c): what dlock_locks shows of each lease goes on.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('changes');
my $a = start_lockext_cluster('alpha', $redis->url, '2s');
$a->append_conf('postgresql.conf', "max_locks_per_transaction = 2048\n");
$a->restart;
my $keeper = $a->safe_psql('postgres', 'SELECT dlock_keeper_pid()');
ok($keeper =~ /^\d+$/, 'the keeper runs');

# Keys of prefix still in Redis (one SCAN, counted).
sub in_redis
{
	my ($prefix) = @_;
	my $n = 0;
	my $cursor = 0;
	do
	{
		my @out = split /\n/, $redis->cli('SCAN', $cursor, 'MATCH', "lockext:lock:$prefix*", 'COUNT', '10000');
		$cursor = shift @out;
		$n += @out;
	} while ($cursor ne '0');
	return $n;
}

# 1. Taken after the keeper started, with a 2 s lease: renewed.  Half of
#    them released: those go (and are not brought back by a renewal).
my $s = $a->background_psql('postgres', on_error_stop => 0);
$s->query_safe("SELECT count(dlock_acquire_session('c:' || g, 5, 2)) FROM generate_series(1, 2000) g");
sleep 5;
is(in_redis('c:'), 2000, '2,000 holds taken after the keeper started: all alive after 5 s (2 s lease)');
$s->query_safe("SELECT count(dlock_release('c:' || g)) FROM generate_series(1, 1000) g");
sleep 4;
is(in_redis('c:'), 1000, 'half released: 1,000 left, the released ones not renewed back');

# 2. A lease changed by dlock_extend (to 6 s) is followed: renewed by its
#    new length (the row says so).
$s->query_safe("SELECT dlock_extend('c:2000', 6)");
sleep 3;
is($a->safe_psql('postgres', "SELECT lease_expires_at - now() > interval '2.5 s' FROM dlock_locks WHERE key = 'c:2000'"),
	't', 'an extended lease is renewed by its new length');
$s->query_safe('SELECT dlock_release_all()');
is(in_redis('c:'), 0, 'all released');

# 3. One statement takes 40,000 holds while the keeper runs: the keeper,
#    woken whenever the ring is half full, keeps up and never reads whole.
my $log_at = -s $a->logfile;
$s->query_safe("SELECT count(dlock_acquire_session('u:' || g, 5, 12)) FROM generate_series(1, 40000) g");
sleep 2;
unlike(slurp_file($a->logfile, $log_at), qr/lease keeper fell behind/,
	'40,000 holds taken at once: the keeper did not fall behind the ring');
$s->query_safe('SELECT dlock_release_all()');

# 4. The keeper restarts (SIGTERM; the postmaster starts it again) while
#    3,000 holds with a 3 s lease are renewed: the new keeper takes on
#    each row's lease board slot, so dlock_locks shows no renewal count
#    going back, and every lease is renewed on.
$s->query_safe("SELECT count(dlock_acquire_session('b:' || g, 5, 3)) FROM generate_series(1, 3000) g");
sleep 4;
$a->safe_psql('postgres', "CREATE TABLE before_restart AS SELECT key, renewals FROM dlock_locks WHERE key LIKE 'b:%'");
is($a->safe_psql('postgres', 'SELECT count(*), min(renewals) > 1 FROM before_restart'),
	'3000|t', 'every one of 3,000 holds renewed (3 s lease)');
kill 'TERM', $keeper;
my $new_keeper;
foreach (1 .. 100)
{
	$new_keeper = $a->safe_psql('postgres', 'SELECT dlock_keeper_pid()');
	last if $new_keeper =~ /^\d+$/ && $new_keeper != $keeper;
	usleep(100_000);
}
isnt($new_keeper, $keeper, 'the keeper restarted');
$keeper = $new_keeper;
usleep(300_000);
is($a->safe_psql('postgres',
	"SELECT count(*) FROM dlock_locks d JOIN before_restart b USING (key) WHERE d.renewals >= b.renewals"),
	'3000', 'just after the restart, dlock_locks shows every renewal count where it was');
sleep 4;
is(in_redis('b:'), 3000, 'all 3,000 holds alive 4 s after the keeper restarted (3 s lease)');
is($a->safe_psql('postgres',
	"SELECT count(*) FROM dlock_locks d JOIN before_restart b USING (key) "
	  . "WHERE d.renewals > b.renewals AND d.lease_expires_at > now()"),
	'3000', 'and every lease is renewed on: counts up, lease ahead');
$s->query_safe('SELECT dlock_release_all()');

# 5. The keeper stopped while 40,000 holds (more than the ring's 32,768
#    slots) are taken with a 12 s lease: once continued it says it fell
#    behind, reads them whole, and renews every one.
$log_at = -s $a->logfile;
kill 'STOP', $keeper;
$s->query_safe("SELECT count(dlock_acquire_session('r:' || g, 5, 12)) FROM generate_series(1, 40000) g");
kill 'CONT', $keeper;
sleep 16;
is(in_redis('r:'), 40000, 'after the keeper fell behind, all 40,000 holds are still alive 16 s later (12 s lease)');
like(slurp_file($a->logfile, $log_at), qr/lease keeper fell behind the changes of renewable holds, and reads them all again/,
	'the keeper said it fell behind');
is($a->safe_psql('postgres', "SELECT count(*) FROM dlock_locks WHERE key LIKE 'r:%' AND renewals > 0 AND state = 'held'"),
	'40000', 'dlock_locks shows all 40,000 renewed');
$s->query_safe('SELECT dlock_release_all()');
$s->quit;

$a->stop;
$redis->stop;
done_testing();
