# lockext.verify_on_commit = auto decides on the monotonic clock (issue
# 19, E): a holder's COMMIT skips the check only while the lease the
# keeper renewed to is still ahead by that clock, so a wall clock set back
# (NTP stepping, an operator) cannot stretch a lease.  The wall clock of
# one cluster is moved with libfaketime (Debian's faketime package); its
# keeper is stopped so that nobody renews or marks the lease lost, the
# lease runs out in Redis, another cluster takes the key, and the first
# holder's COMMIT must fail with 40001.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my $lib = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
plan skip_all => "no $lib (Debian's faketime package)" unless -e $lib;

my $redis = RedisServer->new('wallclock');
my $clock = "$PostgreSQL::Test::Utils::tmp_check/faketime";
open my $fh, '>', $clock or die $!;
print $fh "+0\n";
close $fh;
my $a;
{
	local $ENV{LD_PRELOAD} = $lib;
	local $ENV{FAKETIME_TIMESTAMP_FILE} = $clock;
	local $ENV{FAKETIME_DONT_FAKE_MONOTONIC} = '1';
	local $ENV{FAKETIME_CACHE_DURATION} = '1';
	$a = start_lockext_cluster('alpha', $redis->url, '500ms');
}
my $b = start_lockext_cluster('beta', $redis->url, '500ms');

my $s = $a->background_psql('postgres', on_error_stop => 0);
$s->query_safe('CREATE TABLE t (v int)');
$s->query_safe('BEGIN');
$s->query_safe("SELECT dlock_acquire('wall', 5, 3)");
$s->query_safe('INSERT INTO t VALUES (1)');
ok($a->poll_query_until('postgres', "SELECT renewals > 0 FROM dlock_locks WHERE key = 'wall'"),
	'the keeper renewed the lease once');
my $keeper = $a->safe_psql('postgres', 'SELECT dlock_keeper_pid()');
kill 'STOP', $keeper;
# the wall clock of alpha goes back two minutes
open $fh, '>', $clock or die $!;
print $fh "-120\n";
close $fh;
sleep 2;
like($a->safe_psql('postgres', 'SELECT now()::text'), qr/\d/, 'alpha runs with its clock set back');
my $t = time;
usleep(100_000) until free_on($b, 'wall') || time - $t > 10;
my $c = $b->background_psql('postgres', on_error_stop => 0);
$c->query_safe('BEGIN');
is($c->query_safe("SELECT dlock_try_acquire('wall')"), 't', 'the lease ran out: beta takes the key');
$s->query('COMMIT');
like($s->{stderr}, qr/lock "wall" was lost before COMMIT/,
	'alpha\'s COMMIT with verify_on_commit = auto checks and fails with 40001');
is($a->safe_psql('postgres', 'SELECT count(*) FROM t'), '0', 'its write is rolled back');
$c->query_safe('COMMIT');
kill 'CONT', $keeper;
$_->quit for ($s, $c);
$_->stop for ($a, $b);
done_testing();
