# The invariant under chaos: psql clients on two clusters increment a
# shared counter (on alpha; beta reaches it through postgres_fdw) with a
# racy read-modify-write guarded by dlock_acquire, going on after every
# error, while Redis is paused past the command timeout, killed and
# restarted (appendonly, appendfsync always), and, with a 5-node quorum,
# while members are killed one at a time and restarted after the lease.
#
# After each phase: the counter equals the increments that committed (a
# ledger row written in the same transaction, and the COMMITs the clients
# saw), every error the clients saw is a clean SQL error with a SQLSTATE,
# and the chaos did bite (clients saw errors) without stopping progress.
# An unguarded run first shows that the check catches lost updates.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;
use RedisServer;
use LockextCluster;

my $lease = 3;    # seconds: what a stranded lock costs
my $single = RedisServer->new('single', appendonly => 1);
my @quorum = map { RedisServer->new("q$_", appendonly => 1) } 1 .. 5;
my $quorum_nodes = join(',', map { $_->url } @quorum);

my ($a, $b) = map { start_lockext_cluster($_, $single->url, '500ms') } ('alpha', 'beta');
$a->safe_psql('postgres', 'CREATE TABLE counter (id int PRIMARY KEY, v bigint); '
	. 'CREATE TABLE incs (client text)');
link_tables($b, $a, counter => 'id int, v bigint', incs => 'client text');
$_->safe_psql('postgres', 'CREATE TABLE stopflag (x int)') for ($a, $b);

my $dir = PostgreSQL::Test::Utils::tempdir();

# A psql script of $n increments; each iteration first checks the stop flag.
sub client_script
{
	my ($name, $lock, $nodes) = @_;
	my $path = "$dir/$name.sql";
	open my $fh, '>', $path or die "cannot write $path: $!";
	print $fh "\\set VERBOSITY verbose\n\\set v 0\n";
	print $fh "SET lockext.redis_nodes = '$nodes';\n" if $nodes;
	my $iteration = qq{SELECT EXISTS (SELECT 1 FROM stopflag) AS stop \\gset
\\if :stop
\\q
\\endif
BEGIN;
$lock
SELECT v FROM counter WHERE id = 1 \\gset
SELECT pg_sleep(0.003);
UPDATE counter SET v = :v + 1 WHERE id = 1;
INSERT INTO incs VALUES ('$name');
COMMIT;
};
	print $fh $iteration x 4000;
	close $fh;
	return $path;
}

# Run two clients per cluster while $chaos runs; returns what they saw.
sub run_phase
{
	my ($phase, $lock, $nodes, $chaos) = @_;
	$a->safe_psql('postgres', 'TRUNCATE incs; DELETE FROM counter; INSERT INTO counter VALUES (1, 0)');
	$_->safe_psql('postgres', 'TRUNCATE stopflag') for ($a, $b);
	my @clients;
	for my $node ($a, $b)
	{
		for my $i (1 .. 2)
		{
			my $name = $node->name . $i;
			my ($out, $err) = ('', '');
			my $h = IPC::Run::start(
				[ 'psql', '-X', '-At', '-h', $node->host, '-p', $node->port,
				  '-f', client_script($name, $lock, $nodes), 'postgres' ],
				'<', \undef, '>', \$out, '2>', \$err);
			push @clients, { name => $name, h => $h, out => \$out, err => \$err };
		}
	}
	$chaos->();
	$_->safe_psql('postgres', 'INSERT INTO stopflag VALUES (1)') for ($a, $b);
	for my $c (@clients)
	{
		$c->{h}->finish;
	}

	my %seen = (committed => 0, errors => 0, unclean => [], codes => {});
	for my $c (@clients)
	{
		$seen{committed} += () = ${ $c->{out} } =~ /^COMMIT$/mg;
		for my $line (split /\n/, ${ $c->{err} })
		{
			if ($line =~ /(?:ERROR|FATAL|PANIC):  ([0-9A-Z]{5}): /)
			{
				$seen{errors}++;
				$seen{codes}{$1}++;
				push @{ $seen{unclean} }, "$c->{name}: $line" if $line =~ /FATAL|PANIC/;
			}
			elsif ($line =~ /ERROR:|FATAL|PANIC|server closed the connection|connection to server was lost|no connection to the server|could not (?:send|receive) data/)
			{
				# an error without a SQLSTATE, or the connection gone
				push @{ $seen{unclean} }, "$c->{name}: $line";
			}
		}
	}
	my ($ledger, $counter) = split /\|/, $a->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM incs), (SELECT v FROM counter WHERE id = 1)');
	note sprintf('%s: %d committed (clients saw %d), counter %d, errors: %s', $phase, $ledger,
		$seen{committed}, $counter,
		join(', ', map { "$_ x$seen{codes}{$_}" } sort keys %{ $seen{codes} }) || 'none');
	return ($ledger, $counter, \%seen);
}

sub check_phase
{
	my ($phase, $ledger, $counter, $seen) = @_;
	cmp_ok($ledger, '>', 20, "$phase: increments kept committing ($ledger)");
	is($counter, $ledger, "$phase: the counter equals the increments that committed");
	is($seen->{committed}, $ledger, "$phase: and the COMMITs the clients saw");
	is_deeply($seen->{unclean}, [], "$phase: every failure was a clean SQL error");
	cmp_ok($seen->{errors}, '>', 0, "$phase: the chaos showed (clients saw $seen->{errors} errors)");
}

my $guarded = "SELECT dlock_acquire('counter', 5, $lease);";

# 0. Without the lock the same clients lose updates: the check can fail.
my ($ledger, $counter, $seen) = run_phase('unguarded', '', '', sub { sleep 3 });
cmp_ok($counter, '<', $ledger, "unguarded: updates are lost ($counter of $ledger survive)");

# (a) and (b): one Redis, paused past the command timeout three times, then
#     killed and restarted twice.
($ledger, $counter, $seen) = run_phase('pause and kill', $guarded, '', sub {
	sleep 2;
	for (1 .. 3)
	{
		$single->pause;
		usleep(1_500_000);    # command timeout 500 ms
		$single->resume;
		sleep 2;
	}
	for (1 .. 2)
	{
		$single->kill9;
		usleep(300_000);
		$single->start;
		sleep 3;
	}
});
check_phase('pause and kill', $ledger, $counter, $seen);

# (c): a 5-node quorum, members killed one at a time and restarted after
#      the lease.
($ledger, $counter, $seen) = run_phase('quorum members killed', $guarded, $quorum_nodes, sub {
	sleep 2;
	for my $member (@quorum[ 0 .. 2 ])
	{
		$member->kill9;
		sleep $lease + 1;
		$member->start;
		sleep 1;
	}
	# two at once, a minority still: then three, no quorum for a moment
	$quorum[3]->kill9;
	$quorum[4]->kill9;
	$quorum[0]->kill9;
	sleep $lease + 1;
	$_->start for @quorum[ 3, 4, 0 ];
	sleep 2;
});
check_phase('quorum members killed', $ledger, $counter, $seen);
ok(($seen->{codes}{'08006'} // 0) > 0, 'without a quorum the clients saw 08006');

$_->stop for ($a, $b);
done_testing();
