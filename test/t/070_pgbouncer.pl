# Session locks behind a transaction-pooling PgBouncer (Debian's pgbouncer,
# really started): clients share a server backend, so a session lock taken
# by one client is held by whichever client gets that backend next.
# Transaction-scoped locks are unaffected.  lockext.session_locks = off (per
# database, superuser) refuses session locks with 55000.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LockextCluster;

my $node = PostgreSQL::Test::Cluster->new('pooled');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'lockext'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE DATABASE pooled;
CREATE DATABASE pooled_off;
ALTER DATABASE pooled_off SET lockext.session_locks = off;
});
$node->safe_psql($_, 'CREATE EXTENSION lockext') for ('pooled', 'pooled_off');

# PgBouncer in transaction mode, one server connection per database.
my $via = start_pgbouncer($node, 'transaction', [ 'pooled', 'pooled_off' ],
	'default_pool_size = 1');
ok(1, 'pgbouncer listens');

# 1. lockext.session_locks = on (the default): the leak, documented.
my $c1 = $via->background_psql('pooled', on_error_stop => 0);
my $c2 = $via->background_psql('pooled', on_error_stop => 0);
is($c1->query_safe('SELECT pg_backend_pid()'), $c2->query_safe('SELECT pg_backend_pid()'),
	'both clients run on one server backend');
is($c1->query_safe("SELECT dlock_try_acquire_session('job')"), 't', 'client 1 takes a session lock');
is($c2->query_safe("SELECT dlock_try_acquire_session('job')"), 't',
	'session_locks = on: client 2 "takes" it too, while client 1 holds it (the leak)');
is($c2->query_safe('SELECT dlock_release_all()'), '1',
	'and client 2 releases what client 1 took');
is($c1->query_safe("SELECT count(*) FROM dlock_held()"), '0', 'client 1 lost its lock');

# 2. Transaction-scoped locks exclude properly through the pooler.
$c1->query_safe('BEGIN');
$c1->query_safe("SELECT dlock_acquire('acct')");
is($node->safe_psql('pooled', "SELECT dlock_try_acquire('acct')"), 'f',
	'a transaction lock taken through pgbouncer excludes others');
$c1->query_safe('COMMIT');
is($c2->query_safe("BEGIN; SELECT count(*) FROM dlock_held(); COMMIT"), '0',
	'nothing of it is left on the shared backend after COMMIT');
is($c2->query_safe("BEGIN; SELECT dlock_try_acquire('acct'); COMMIT"), 't',
	'the next client takes it');
$c1->quit;
$c2->quit;

# 3. ALTER DATABASE ... SET lockext.session_locks = off: session locks are
#    refused with 55000, transaction locks still work.
my $d1 = $via->background_psql('pooled_off', on_error_stop => 0);
my $d2 = $via->background_psql('pooled_off', on_error_stop => 0);
$d1->query_safe('\set VERBOSITY verbose');
is($d1->query_safe('SHOW lockext.session_locks'), 'off', 'the database setting applies');
for my $call ("dlock_try_acquire_session('job')", "dlock_acquire_session('job', 1)")
{
	$d1->{stderr} = '';
	$d1->query("SELECT $call");
	like($d1->{stderr}, qr/ERROR:  55000: session-scoped locks are disabled/,
		"session_locks = off: $call is refused with 55000");
	like($d1->{stderr}, qr/HINT:  .*transaction/, 'with a hint about transaction-scoped locks');
}
$d1->{stderr} = '';
$d1->query_safe('BEGIN');
is($d1->query_safe("SELECT dlock_acquire('acct') > 0"), 't', 'a transaction lock works');
is($node->safe_psql('pooled_off', "SELECT dlock_try_acquire('acct')"), 'f', 'and excludes others');
$d1->query_safe('COMMIT');
is($d2->query_safe("BEGIN; SELECT dlock_try_acquire('acct'); COMMIT"), 't',
	'and is released at COMMIT');
$d1->quit;
$d2->quit;

$node->stop;
done_testing();
