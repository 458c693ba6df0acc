# Deadlocks across instances: a cycle of waits on Redis (two clusters, on
# one node or a quorum; three clusters), or one that passes through a
# cluster's local queue, ends with exactly one 40P01 within
# 2 x deadlock_timeout + 1 s, naming the cycle; the others commit.  Random transfers: with dlock_acquire_all no 40P01
# and no lost update; with single dlock_acquire calls in random order
# every deadlock is resolved by 40P01 (and the retry), none by a timeout,
# and no update is lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('deadlock');
my ($a, $b, $c) = map { start_lockext_cluster($_, $redis->url, '1s') } ('alpha', 'beta', 'gamma');
my $bound = 2 * 1 + 1;    # deadlock_timeout is 1 s

sub session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->{pid} = $s->query_safe('SELECT pg_backend_pid()');
	return $s;
}

# Wait until the session waits (on Redis, or in the lock manager).
sub waiting
{
	my ($node, $s) = @_;
	return $node->poll_query_until('postgres',
		"SELECT wait_event_type IN ('Extension', 'Lock') FROM pg_stat_activity WHERE pid = $s->{pid}");
}

# Sessions in a cycle: each holds its key, then waits for the next one's.
# Returns (victims, survivors that got their lock, seconds from closing
# the cycle to the end of the last wait, the victims' messages).
sub cycle
{
	my (@members) = @_;    # [node, session, held key, wanted key]
	for my $m (@members)
	{
		my ($node, $s, $held) = @$m;
		$s->query_safe("BEGIN; SELECT dlock_acquire('$held') > 0");
	}
	for my $i (0 .. $#members)
	{
		my ($node, $s, undef, $wanted) = @{ $members[$i] };
		# the one that gets its lock commits at once, so the next can go on
		$s->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire('$wanted', 60) > 0 AS got;\nCOMMIT;\n");
		ok(waiting($node, $s), "member $i waits for $wanted");
	}
	my $t0 = time;
	my ($victims, $got, @msgs) = (0, 0);
	for my $m (@members)
	{
		my ($node, $s) = @$m;
		my $out = $s->query('SELECT 1');
		if ($s->{stderr} =~ /deadlock detected/)
		{
			$victims++;
			push @msgs, $s->{stderr};
		}
		$got++ if $out =~ /^t$/m;
		$s->{stderr} = '';
	}
	my $took = time - $t0;
	return ($victims, $got, $took, @msgs);
}

# 1. Two clusters lock a pair in opposite orders.
my ($sa, $sb, $sc) = (session($a), session($b), session($c));
my ($victims, $got, $took, @msgs) = cycle([ $a, $sa, 'p1', 'p2' ], [ $b, $sb, 'p2', 'p1' ]);
is($victims, 1, 'two clusters: exactly one 40P01');
is($got, 1, 'the other gets its lock');
cmp_ok($took, '<', $bound, "within 2 x deadlock_timeout + 1 s ($took s)");
like($msgs[0], qr/Process \d+ on (alpha|beta) waits for lock "p[12]"; blocked by process \d+ on (alpha|beta)\.\n.*Process \d+ on (alpha|beta) waits for lock "p[12]"/,
	'the DETAIL names the cycle: keys, instances, pids');
ok(free_on($c, 'p1') && free_on($c, 'p2'), 'both keys free after the COMMIT');

# 1b. The same on a quorum of three nodes: a cycle a majority sees.
my @q = map { RedisServer->new("q$_") } (1 .. 3);
my $qurl = join(',', map { $_->url } @q);
$_->query_safe("SET lockext.redis_nodes = '$qurl'") for ($sa, $sb);
($victims, $got, $took) = cycle([ $a, $sa, 'q1', 'q2' ], [ $b, $sb, 'q2', 'q1' ]);
is($victims, 1, 'quorum: exactly one 40P01');
is($got, 1, 'quorum: the other gets its lock');
cmp_ok($took, '<', $bound, "quorum: within the bound ($took s)");
$_->query_safe("RESET lockext.redis_nodes") for ($sa, $sb);
$_->stop for @q;

# 2. Three clusters in a 3-cycle.
($victims, $got, $took) = cycle([ $a, $sa, 't1', 't2' ], [ $b, $sb, 't2', 't3' ], [ $c, $sc, 't3', 't1' ]);
is($victims, 1, 'three clusters: exactly one 40P01');
is($got, 2, 'the other two get their locks');
cmp_ok($took, '<', $bound, "within the bound ($took s)");

# 3. A cycle through a local queue: two sessions on alpha, one on beta.
#    a1 waits on Redis for m3 (beta's), beta waits on Redis for m2 (a2's),
#    a2 waits in alpha's lock manager for m1 (a1's).
my $sa2 = session($a);
($victims, $got, $took, @msgs) = cycle([ $a, $sa, 'm1', 'm3' ], [ $b, $sb, 'm3', 'm2' ], [ $a, $sa2, 'm2', 'm1' ]);
is($victims, 1, 'through a local queue: exactly one 40P01');
is($got, 2, 'the other two get their locks');
cmp_ok($took, '<', $bound, "within the bound ($took s)");
unlike($msgs[0] // '', qr/^$/, 'with a report');
$sa2->quit;

# 4. No false positives, no lost updates: random transfers among 20
#    accounts from two clusters, 8 clients each, for 60 s.  The accounts
#    live on alpha; beta reaches them through postgres_fdw.
$a->safe_psql('postgres', q{
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 20) g;
CREATE TABLE ledger (src int, dst int, amount int);
});
link_tables($b, $a, accounts => 'id int, balance bigint', ledger => 'src int, dst int, amount int');

my $transfer = <<'EOS';
\set from random(1, 20)
\set to random(1, 20)
BEGIN;
%LOCK%
SELECT balance AS fb FROM accounts WHERE id = :from \gset
UPDATE accounts SET balance = :fb - 1 WHERE id = :from;
SELECT balance AS tb FROM accounts WHERE id = :to \gset
UPDATE accounts SET balance = :tb + 1 WHERE id = :to;
INSERT INTO ledger VALUES (:from, :to, 1);
COMMIT;
EOS

# Run the transfers on alpha and beta at once; returns (transactions,
# lost updates, retried, failed, pgbench outputs).
sub transfers
{
	my ($lock, $seconds) = @_;
	(my $script = $transfer) =~ s/%LOCK%/$lock/;
	$a->safe_psql('postgres', 'TRUNCATE ledger; UPDATE accounts SET balance = 1000');
	my ($retried, $failed, $out) = (0, 0, '');
	for my $r (pgbench_on([ $a, $b ], $script, '-c', '8', '-j', '2', '-T', $seconds, '--max-tries=1000'))
	{
		my ($o, $e) = @$r;
		$out .= $o . $e;
		$retried += $1 if $o =~ /number of transactions retried: (\d+)/;
		$failed += $1 if $o =~ /number of failed transactions: (\d+)/;
		$failed++ if $e =~ /aborted|ERROR/;
	}
	my ($made, $lost) = split /\|/, $a->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM ledger),
       (SELECT count(*) FROM accounts a
         WHERE balance <> 1000 + coalesce((SELECT sum(amount) FROM ledger WHERE dst = a.id), 0)
                               - coalesce((SELECT sum(amount) FROM ledger WHERE src = a.id), 0))});
	return ($made, $lost, $retried, $failed, $out);
}

my $seconds = $ENV{LOCKEXT_TRANSFER_SECONDS} // 60;
my ($made, $lost, $retried, $failed, $out) = transfers('', 5);
cmp_ok($lost, '>', 0, "without locks, transfers lose updates ($lost of 20 accounts wrong after $made)");
($made, $lost, $retried, $failed, $out) =
  transfers(q{SELECT dlock_acquire_all(ARRAY['acct:' || :from, 'acct:' || :to], 30) IS NOT NULL AS locked \gset}, $seconds);
note $out;
cmp_ok($made, '>', 100, "dlock_acquire_all: $made transfers in $seconds s");
is($retried, 0, 'dlock_acquire_all: no 40P01 (nothing retried)');
is($failed, 0, 'dlock_acquire_all: no failed transaction');
is($lost, 0, 'dlock_acquire_all: the ledger equals the balances');

# 5. The same with two dlock_acquire calls in random order (for half as
#    long): deadlocks happen, each ends by 40P01 and its retry, none by a
#    timeout.
($made, $lost, $retried, $failed, $out) =
  transfers(q{SELECT dlock_acquire('acct:' || :from, 30) > 0 AND dlock_acquire('acct:' || :to, 30) > 0 AS locked \gset}, $seconds / 2);
note $out;
cmp_ok($made, '>', $seconds / 2, "single calls: $made transfers in " . ($seconds / 2) . " s");
cmp_ok($retried, '>', 0, "single calls: deadlocks happened and were retried ($retried)");
is($failed, 0, 'single calls: none failed, none ended by a timeout');
is($lost, 0, 'single calls: the ledger equals the balances');

$_->quit for ($sa, $sb, $sc);
$_->stop for ($a, $b, $c);
done_testing();
