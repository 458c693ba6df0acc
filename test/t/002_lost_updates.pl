# The race dlock_acquire exists for: concurrent read-modify-write of a
# counter.  Without the lock increments are lost; with it none are.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('race');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 40\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION lockext;
	CREATE TABLE counters (id int PRIMARY KEY, value bigint NOT NULL);
	CREATE TABLE increments (id int NOT NULL);
});

# Read, pause to widen the window, write back the value read plus one.
my $racy = q{
\set id random(1, 2)
BEGIN;
%LOCK%
SELECT value AS v FROM counters WHERE id = :id \gset
SELECT pg_sleep(0.001);
UPDATE counters SET value = :v + 1 WHERE id = :id;
INSERT INTO increments VALUES (:id);
COMMIT;
};

# Run the script from 8 clients; returns increments made and lost.
sub run_race
{
	my ($name, $lock) = @_;
	(my $script = $racy) =~ s/%LOCK%/$lock/;
	$node->safe_psql('postgres', q{
		TRUNCATE increments;
		DELETE FROM counters;
		INSERT INTO counters VALUES (1, 0), (2, 0);
	});
	$node->pgbench('--no-vacuum --client=8 --jobs=2 --transactions=60',
		0, [qr/processed: 480\/480/], [qr/^$/], "pgbench $name",
		{ "race_$name" => $script });
	my ($made, $lost) = split /\|/, $node->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM increments), '
		  . '(SELECT count(*) FROM increments) - (SELECT sum(value) FROM counters)');
	note "$name: $made increments committed, $lost lost";
	return ($made, $lost);
}

my ($made, $lost) = run_race('unguarded', '');
is($made, 480, 'unguarded: every transaction committed');
cmp_ok($lost, '>', 0, "unguarded: the race loses updates ($lost of $made)");

($made, $lost) = run_race('guarded',
	"SELECT dlock_acquire('counter:' || :id, 30);");
is($made, 480, 'guarded: every transaction committed');
is($lost, 0, 'guarded: no update is lost');

$node->stop;
done_testing();
