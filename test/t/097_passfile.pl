# Passwords out of settings (issue 13, its first part): lockext.redis_passfile
# with libpq's .pgpass rules (wildcards, escapes, refused when others may
# read it), a Redis ACL user that may run only lockext's commands on its
# keys (the README's minimal rule) doing all lockext does, the keeper
# included, and a WARNING for a password left in lockext.redis_nodes.  No
# password appears in any log line, setting or error.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my $secret = 'Top:Secret-Pass';    # a colon: escaped in the file
my $appsecret = 'app-pw-7d1e';
my $redis = RedisServer->new('passfile', requirepass => $secret);
my $port = $redis->port;
# the minimal ACL rule of the README
$redis->cli('ACL', 'SETUSER', 'app', 'on', ">$appsecret", 'resetkeys', '~lockext:*', 'resetchannels',
	'-@all', '+eval', '+evalsha', '+blpop', '+info', '+ping', '+del', '+get', '+set', '+pexpire',
	'+pttl', '+time', '+exists', '+lpush', '+ltrim');

my $a = start_lockext_cluster('alpha', "redis://127.0.0.1:$port", '1s');
my $b = start_lockext_cluster('beta', "redis://app\@127.0.0.1:$port", '1s');

sub write_passfile
{
	my ($node, $mode, @lines) = @_;
	my $path = $node->data_dir . '/lockext_redis.pass';
	open my $fh, '>', $path or die "cannot write $path: $!";
	print $fh "$_\n" for @lines;
	close $fh;
	chmod $mode, $path;
}

(my $escaped = $secret) =~ s/([:\\])/\\$1/g;
write_passfile($a, 0600, '# the default user of the test server', "127.0.0.1:$port:default:$escaped");
write_passfile($b, 0600, 'otherhost:*:app:wrong', "*:*:app:$appsecret");

# 1. The passfile gives the password; the ACL user does everything.
is($a->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('pf') > 0; COMMIT"), 't',
	'the password of the default user comes from the passfile (escapes)');
my $s = $b->background_psql('postgres', on_error_stop => 0);
is($s->query_safe("SELECT dlock_acquire_session('acl', 5, 2) > 0"), 't',
	'the ACL user takes a lock with the password from the passfile (wildcards)');
ok(!free_on($a, 'acl'), 'and excludes the other cluster');
sleep 3;
is($b->safe_psql('postgres', "SELECT renewals > 0 FROM dlock_locks WHERE key = 'acl'"), 't',
	'the keeper renews as the ACL user (2 s lease, 3 s later)');
my $w = $a->background_psql('postgres', on_error_stop => 0);
$w->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire_session('acl', 30) > 0;\n");
usleep(300_000);
$s->query_safe("SELECT dlock_extend('acl')");
is($s->query_safe("SELECT (dlock_holder('acl')).pid IS NOT NULL"), 't', 'dlock_holder as the ACL user');
$s->query_safe("SELECT dlock_release('acl')");
is($w->query_safe("SELECT dlock_release('acl')"), "t\nt", 'a waiter is woken by its release (BLPOP, LPUSH)');
is($s->query_safe("BEGIN; SELECT array_length(dlock_acquire_all(ARRAY['x1', 'x2']), 1); COMMIT"), '2',
	'dlock_acquire_all as the ACL user');

# 2. A passfile others may read is ignored, with a WARNING.
chmod 0644, $b->data_dir . '/lockext_redis.pass';
my ($ret, $out, $err) = $b->psql('postgres', "BEGIN; SELECT dlock_acquire('open'); COMMIT");
like($err, qr/WARNING:  lockext.redis_passfile "lockext_redis.pass" is ignored: it has group or world access/,
	'a passfile with group or world access is ignored, with a WARNING');
like($err, qr/08006|Redis is unavailable/, 'and the node refuses the connection (08006)');
like($err, qr/authentication required \(no password in the URL or lockext.redis_passfile\)/,
	'saying why');
chmod 0600, $b->data_dir . '/lockext_redis.pass';
is($b->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('open') > 0; COMMIT"), 't',
	'mode 0600 again: it is used');

# 3. A password in lockext.redis_nodes: a WARNING at load.
$a->append_conf('postgresql.conf', "lockext.redis_nodes = 'redis://:inline-pw-93\@127.0.0.1:$port'");
$a->restart;
like(slurp_file($a->logfile), qr/WARNING:  lockext.redis_nodes contains a password/,
	'a password in lockext.redis_nodes gets a WARNING at load');

# 4. The passfile's passwords appear nowhere.
my $settings = $b->safe_psql('postgres', "SELECT string_agg(setting, ' ') FROM pg_settings WHERE name LIKE 'lockext.%'");
my $logs = slurp_file($a->logfile) . slurp_file($b->logfile);
for my $pw ($secret, $appsecret)
{
	unlike($logs, qr/\Q$pw\E/, 'no log line shows a passfile password');
	unlike($settings, qr/\Q$pw\E/, 'no setting shows it');
	unlike($err, qr/\Q$pw\E/, 'no error shows it');
}

$_->quit for ($s, $w);
$_->stop for ($a, $b);
done_testing();
