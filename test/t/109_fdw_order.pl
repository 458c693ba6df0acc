# The lease check runs before postgres_fdw commits its remote transaction
# (issue 19, E), whatever statement first used the foreign server: a
# foreign partition reached through its parent, COPY FROM into a foreign
# table.  A lock lost before COMMIT (its key deleted in Redis, with
# verify_on_commit = always) fails the COMMIT with 40001 and rolls back
# the remote writes too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('fdw');
my $a = start_lockext_cluster('alpha', $redis->url, '500ms');
my $b = start_lockext_cluster('beta', $redis->url, '500ms');
$b->safe_psql('postgres', 'CREATE TABLE t (v int); CREATE TABLE part_b (k int, v int)');
link_tables($a, $b, t => 'v int', part_b => 'k int, v int');
$a->safe_psql('postgres', q{
CREATE TABLE parted (k int, v int) PARTITION BY LIST (k);
CREATE TABLE part_a PARTITION OF parted FOR VALUES IN (1);
ALTER TABLE parted ATTACH PARTITION part_b FOR VALUES IN (2);
});

my @cases = (
	[ 'COPY FROM into a foreign table', q{COPY t FROM PROGRAM 'echo 42'}, 'SELECT count(*) FROM t' ],
	[ 'an INSERT routed to a foreign partition', 'INSERT INTO parted VALUES (2, 42)',
	  'SELECT count(*) FROM part_b' ],
);
for my $c (@cases)
{
	my ($what, $write, $count) = @$c;
	# a fresh session: the FDW connects (and registers its callbacks) in
	# the transaction, after the lock was taken
	my $s = $a->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('SET lockext.verify_on_commit = always');
	$s->query_safe('BEGIN');
	$s->query_safe("SELECT dlock_acquire('fdw', 5, 30)");
	$s->query_safe($write);
	$redis->cli('DEL', 'lockext:lock:fdw');
	$s->query('COMMIT');
	like($s->{stderr}, qr/lock "fdw" was lost before COMMIT/, "$what: the COMMIT fails with 40001");
	is($b->safe_psql('postgres', $count), '0', "$what: the remote write is rolled back too");
	$s->quit;
}
$_->stop for ($a, $b);
done_testing();
