# Field-trial defects (issue 10) with real clusters and a real Redis:
#  a. the Redis password shows to no monitoring role (pg_settings, SHOW,
#     current_setting(), the server log);
#  b. a configuration reload that leaves the nodes alone keeps the Redis
#     connections;
#  c. a hot standby: Redis locks exclude the primary's sessions and carry a
#     token; advisory locks on a standby are local to it, without a token;
#  d. a busy advisory lock names the holding process;
#  e. a malformed lockext.redis_nodes in postgresql.conf fails closed;
#  f. a non-superuser database owner dumps and restores a database that
#     uses lockext, and tokens in the restored database continue above.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my $secret = 'Trial-Pw-58e1';
my $redis = RedisServer->new('trial', requirepass => $secret);
my $url = $redis->url;

my $primary = start_lockext_cluster('trial', $url, '500ms', allows_streaming => 1);
$primary->safe_psql('postgres', 'CREATE ROLE mon LOGIN IN ROLE pg_monitor');

# a. Monitoring roles never see the password.
is($primary->safe_psql('postgres',
	"SET ROLE mon; SELECT count(*) FROM pg_settings WHERE name = 'lockext.redis_nodes'"),
	'0', 'pg_monitor: pg_settings has no row for the nodes');
is($primary->safe_psql('postgres',
	# (split, so that the statement in the log does not contain it)
	"SET ROLE mon; SELECT count(*) FROM pg_settings s WHERE s::text LIKE '%"
	  . join("-' || '", split(/-/, $secret)) . "%'"),
	'0', 'pg_monitor: no column of pg_settings shows the password');
my $shown = $primary->safe_psql('postgres', 'SET ROLE mon; SHOW lockext.redis_nodes');
unlike($shown, qr/\Q$secret\E/, 'pg_monitor: SHOW masks the password');
like($shown, qr/\*\*\*/, "pg_monitor: SHOW gives the masked URL ($shown)");
unlike($primary->safe_psql('postgres',
	"SET ROLE mon; SELECT current_setting('lockext.redis_nodes')"),
	qr/\Q$secret\E/, 'pg_monitor: current_setting() masks the password');
is($primary->safe_psql('postgres', 'SHOW lockext.redis_nodes'), $url,
	'a superuser sees the URL as configured');

# b. A reload that leaves the nodes alone keeps the session's connection.
sub redis_connections
{
	my ($stats) = $redis->cli('INFO', 'stats') =~ /total_connections_received:(\d+)/;
	return $stats;
}
my $s = $primary->background_psql('postgres', on_error_stop => 0);
is($s->query_safe("BEGIN; SELECT dlock_acquire('reload') > 0; COMMIT"), 't',
	'a session locks on Redis');
my $before = redis_connections();
$primary->safe_psql('postgres',
	"ALTER SYSTEM SET lockext.wait_timeout = '29s'; SELECT pg_reload_conf()");
for (1 .. 100)
{
	last if $s->query_safe('SHOW lockext.wait_timeout') eq '29s';
	usleep(50_000);
}
is($s->query_safe("BEGIN; SELECT dlock_acquire('reload') > 0; COMMIT"), 't',
	'and locks again after a reload');
# (each redis-cli call is one connection of its own)
is(redis_connections() - $before, 1, 'over the connection it had: no reconnect');
$s->quit;

# c. A streaming standby sharing the Redis server.
$primary->backup('trial_backup');
my $standby = PostgreSQL::Test::Cluster->new('trial_standby');
$standby->init_from_backup($primary, 'trial_backup', has_streaming => 1);
$standby->append_conf('postgresql.conf', "cluster_name = 'trial_standby'\n");
$standby->start;
$primary->wait_for_catchup($standby);
my $sb = $standby->background_psql('postgres', on_error_stop => 0);
$sb->query_safe('BEGIN');
like($sb->query_safe("SELECT dlock_acquire('on-standby')"), qr/^\d+$/,
	'standby, redis backend: a lock with a real token');
is($primary->safe_psql('postgres', "SELECT dlock_try_acquire('on-standby')"), 'f',
	'which excludes a session of the primary');
$sb->query_safe('COMMIT');
is($primary->safe_psql('postgres', "SELECT dlock_try_acquire('on-standby')"), 't',
	'until the standby commits');
$sb->query_safe("SET lockext.backend = 'advisory'");
$sb->query_safe('BEGIN');
is($sb->query_safe("SELECT dlock_acquire('standby-local') IS NULL"), 't',
	'standby, advisory backend: no token (the sequence cannot advance)');
is($primary->safe_psql('postgres',
	"SET lockext.backend = 'advisory'; SELECT dlock_try_acquire('standby-local')"), 't',
	'and no exclusion of the primary\'s sessions');
is($standby->safe_psql('postgres',
	"SET lockext.backend = 'advisory'; SELECT dlock_try_acquire('standby-local')"), 'f',
	'only of the standby\'s own');
$sb->query_safe('COMMIT');
$sb->quit;
$standby->stop;

# d. A busy advisory lock names its holder, as pg_locks would.
my $h = $primary->background_psql('postgres', on_error_stop => 0);
my $hpid = $h->query_safe('SELECT pg_backend_pid()');
$h->query_safe("SET lockext.backend = 'advisory'; BEGIN; SELECT dlock_acquire('busy')");
my ($ret, $out, $err) = $primary->psql('postgres',
	"SET lockext.backend = 'advisory'; SELECT dlock_acquire('busy', 0)");
like($err, qr/ERROR:  could not acquire lock "busy"\n/, 'try once: no "within 0 seconds"');
like($err, qr/DETAIL:  Lock "busy" is held by process $hpid\./, 'the detail names the holder');
($ret, $out, $err) = $primary->psql('postgres',
	"SET lockext.backend = 'advisory'; SELECT dlock_acquire('busy', 0.2)");
like($err, qr/within 0\.2 seconds\nDETAIL:  Lock "busy" is held by process $hpid\./,
	'after a wait too');
$h->query_safe('COMMIT');
$h->quit;

# e. A malformed node list in postgresql.conf fails closed (and names no
#    password), until it is fixed and the configuration reloaded.
my $bad_secret = 'Bad-Pw-77c0';
$primary->append_conf('postgresql.conf',
	"lockext.redis_nodes = 'redis://:$bad_secret\@127.0.0.1:575020'\n");
$primary->restart;
for my $q ("SELECT dlock_acquire('x')", "SELECT dlock_try_acquire_session('x')",
	"SELECT dlock_holder('x')")
{
	($ret, $out, $err) = $primary->psql('postgres', "\\set VERBOSITY verbose\n$q");
	like($err, qr/ERROR:  F0000: lockext.redis_nodes is invalid: node 1: invalid port/,
		"broken nodes: $q fails with F0000 saying what is wrong");
	unlike($err, qr/\Q$bad_secret\E/, 'without the password');
}
is($primary->safe_psql('postgres', "SET lockext.backend = 'advisory'; "
	. "SELECT dlock_try_acquire('x')"), 't', 'an explicit advisory backend still works');
unlike($primary->safe_psql('postgres', 'SET ROLE mon; SHOW lockext.redis_nodes'),
	qr/\Q$bad_secret\E/, 'SHOW masks even a malformed value');
($ret, $out, $err) = $primary->psql('postgres',
	"ALTER SYSTEM SET lockext.redis_nodes = 'redis://127.0.0.1:0'");
like($err, qr/invalid value for parameter "lockext.redis_nodes"/,
	'ALTER SYSTEM still refuses a malformed value');
$primary->append_conf('postgresql.conf', "lockext.redis_nodes = ''\n");
$primary->reload;
$primary->poll_query_until('postgres', "BEGIN; SELECT dlock_try_acquire('x'); COMMIT",
	"BEGIN\nt\nCOMMIT")
  or die 'still failing after the fix';
is($primary->safe_psql('postgres',
	"SELECT backend FROM (SELECT dlock_acquire_session('x')) s, dlock_held()"),
	'advisory', 'fixed and reloaded: locks work again');

# f. pg_dump and restore by a database owner who is not a superuser.
$primary->safe_psql('postgres', q{
CREATE ROLE owner1 LOGIN;
CREATE DATABASE src OWNER owner1;
CREATE DATABASE dst OWNER owner1;
});
$primary->safe_psql('src', 'CREATE EXTENSION lockext');
my $src_token = $primary->safe_psql('src',
	"SET ROLE owner1; SELECT max(t) FROM (SELECT dlock_acquire('k' || g) t FROM generate_series(1, 5) g) s");
my $dump = "$PostgreSQL::Test::Utils::tmp_check/src.sql";
($out, $err) = run_command([ 'pg_dump', '-h', $primary->host, '-p', $primary->port,
	'-U', 'owner1', '-f', $dump, 'src' ]);
ok($err eq '' && -s $dump, 'the owner dumps the database') or diag($err);
($ret, $out, $err) = $primary->psql('dst', slurp_file($dump),
	extra_params => [ '-U', 'owner1' ], on_error_stop => 1);
is($ret, 0, 'and restores it as itself with ON_ERROR_STOP') or diag($err);
is($primary->safe_psql('dst', q{SELECT extowner::regrole FROM pg_extension WHERE extname = 'lockext'}),
	'owner1', 'owning the restored extension (trusted)');
ok($primary->safe_psql('dst', "SET ROLE owner1; SELECT dlock_acquire('k1')") > $src_token,
	'tokens in the restored database continue above the source\'s');

# No log line of either server shows a password.
for my $n ($primary, $standby)
{
	my $log = slurp_file($n->logfile);
	unlike($log, qr/\Q$secret\E|\Q$bad_secret\E/, $n->name . ': no password in the server log');
}

$primary->stop;
done_testing();
