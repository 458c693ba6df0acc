# Quorum over five independent redis-servers, shared by two clusters:
# exclusion, per-node detail in errors, losing two nodes, failing closed
# without a majority, a paused node, tokens, and a shared counter kept
# exact while members are killed and restarted (after the lease).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

# appendonly + appendfsync always: a restarted member keeps its keys; the
# test still keeps a killed member out for longer than the longest lease.
my @redis = map { RedisServer->new("q$_", appendonly => 1) } 1 .. 5;
my $nodes = join(',', map { $_->url } @redis);
my $lease = 2;    # seconds, for the chaos part

my @pg = map { start_lockext_cluster($_, $nodes, '300ms') } ('east', 'west');
my ($east, $west) = @pg;

# 1. Exclusion across clusters; a busy key's 55P03 names who holds it where.
my $se = $east->background_psql('postgres', on_error_stop => 0);
$se->query_safe("BEGIN");
$se->query_safe("SELECT dlock_acquire('x', 5, 30)");
ok(!free_on($west, 'x'), 'a lock held by east excludes west');
my ($ret, $out, $err) = $west->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT dlock_acquire('x', 0.2)");
like($err, qr/ERROR:  55P03: could not acquire lock "x" within 0.2 seconds/, '55P03 on a held key');
my $held_by = () = $err =~ /held by pid \d+ on east/g;
cmp_ok($held_by, '>=', 3, "the detail lists the nodes holding it for east ($held_by)");
$se->query_safe("COMMIT");
ok(free_on($west, 'x'), 'released on every node at COMMIT');

# 2. Tokens increase across clusters.
my @tokens = map { $pg[ $_ % 2 ]->safe_psql('postgres', "SELECT dlock_acquire('fence')") } 1 .. 8;
my $increasing = 1;
$increasing &&= $tokens[$_] > $tokens[ $_ - 1 ] for 1 .. $#tokens;
ok($increasing, "tokens strictly increase across clusters: @tokens");

# 3. Two members down: a majority of three still grants and excludes.
$redis[0]->kill9;
$redis[1]->kill9;
$se->query_safe("BEGIN");
is($se->query_safe("SELECT dlock_acquire('two-down', 2) > 0"), 't',
	'with two of five members down locks still work');
ok(!free_on($west, 'two-down'), 'and still exclude the other cluster');
$se->query_safe("COMMIT");
ok(free_on($west, 'two-down'), 'and are released');

# 4. Three members down: no majority, acquire fails closed with 08006 within
#    the timeouts, the detail gives each node's outcome, nothing stays held.
$redis[2]->kill9;
my $t0 = time;
($ret, $out, $err) = $east->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT dlock_acquire('three-down', 5)");
my $elapsed = time - $t0;
like($err, qr/ERROR:  08006: could not acquire lock "three-down": Redis is unavailable/,
	'three of five down: fails closed with 08006');
like($err, qr/granted.*granted/s, 'the detail shows the two granting nodes');
my $unreachable = () = $err =~ /unreachable/g;
is($unreachable, 3, 'and the three unreachable ones');
cmp_ok($elapsed, '<', 2, "within the timeouts (${elapsed}s)");
is(join('', map { $_->cli('EXISTS', 'lockext:lock:three-down') } @redis[3, 4]), '00',
	'the partial grants were given back');
$_->start for @redis[0 .. 2];
sleep $lease + 1;

# 5. A paused member costs at most the command timeout, and the others
#    carry on.
$redis[4]->pause;
$t0 = time;
is($east->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('paused', 2) > 0; COMMIT;"), 't',
	'with one member paused the lock is granted');
$elapsed = time - $t0;
cmp_ok($elapsed, '<', 1, "paused member: acquire and release took ${elapsed}s (command timeout 300 ms)");
$redis[4]->resume;

# 6. A shared counter on east, incremented from both clusters (west through
#    postgres_fdw), while members are killed and restarted one at a time,
#    each staying out longer than the lease: nothing lost, nothing doubled.
$east->safe_psql('postgres', 'CREATE TABLE counter (v bigint); INSERT INTO counter VALUES (0); CREATE TABLE incs (n int)');
link_tables($west, $east, counter => 'v bigint', incs => 'n int');
my $dir = PostgreSQL::Test::Utils::tempdir();
open my $fh, '>', "$dir/inc.sql" or die;
print $fh qq{BEGIN;
SELECT dlock_acquire('counter', 30, $lease);
SELECT v FROM counter \\gset
UPDATE counter SET v = :v + 1;
INSERT INTO incs VALUES (1);
COMMIT;
};
close $fh;
my @bench;
for my $node ($east, $west)
{
	my ($o, $e) = ('', '');
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	push @bench, [ IPC::Run::start([ 'pgbench', '-n', '-c', '3', '-j', '1', '-T', '9',
		'-f', "$dir/inc.sql", 'postgres' ], '>', \$o, '2>', \$e), \$o, \$e ];
}
for my $victim (0, 3)
{
	sleep 1;
	$redis[$victim]->kill9;
	sleep $lease + 1;    # out for longer than the lease
	$redis[$victim]->start;
}
for my $b (@bench)
{
	$b->[0]->finish;
	note "pgbench: ${ $b->[1] }${ $b->[2] }";
}
my ($incs, $value) = split /\|/, $east->safe_psql('postgres',
	'SELECT (SELECT count(*) FROM incs), (SELECT v FROM counter)');
note "committed increments: $incs, counter: $value";
cmp_ok($incs, '>', 50, "increments committed while members came and went ($incs)");
is($value, $incs, 'the counter equals the committed increments: nothing lost, nothing doubled');

$se->quit;
$_->stop for @pg;
done_testing();
