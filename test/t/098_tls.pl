# TLS to Redis (issue 13): rediss:// URLs with libpq's sslmode,
# sslrootcert, sslcert/sslkey and sslsni, against real redis-servers that
# listen on a TLS port only, with certificates this test makes with the
# openssl command.  A single TLS node and a TLS quorum behave as on plain
# TCP (exclusion across clusters, handoff, COMMIT verification, the
# keeper's renewals); each verification failure is 08006 naming the node
# and the reason; a server paused in the middle of the handshake costs
# no more than the connect timeout, and pg_cancel_backend ends the wait.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use File::Copy;
use RedisServer;
use LockextCluster;
use TlsCerts;

my $certs = make_test_certs(PostgreSQL::Test::Utils::tempdir());
my %tls = (dir => $certs);
my $r1 = RedisServer->new('tls1', tls => {%tls});
my $r2 = RedisServer->new('tls2', tls => {%tls});
my $r3 = RedisServer->new('tls3', tls => {%tls});
my $rother = RedisServer->new('tlsother', tls => { %tls, cert => 'other' });
my $rexpired = RedisServer->new('tlsexpired', tls => { %tls, cert => 'expired' });
my $rmutual = RedisServer->new('tlsmutual', tls => { %tls, auth_clients => 'yes' });
my $plain = RedisServer->new('plain');

my $ca = "sslrootcert=$certs/ca.crt";
my $one = $r1->url . "?$ca";
my $quorum = join(',', map { $_->url . "?$ca" } $r1, $r2, $r3);

my $a = start_lockext_cluster('alpha', $one, '1s');
my $b = start_lockext_cluster('beta', $one, '1s');

# Run sql in a new session of $node with lockext.redis_nodes = $nodes;
# returns (stdout, stderr).
sub with_nodes
{
	my ($node, $nodes, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET lockext.redis_nodes = '$nodes';\n\\set VERBOSITY verbose\n$sql");
	return ($out, $err);
}

# 1. One TLS node: exclusion, handoff, COMMIT verification, the keeper.
is($a->safe_psql('postgres', "BEGIN; SELECT dlock_acquire('t1') > 0; COMMIT"), 't',
	'a lock over TLS (verify-full against 127.0.0.1 in the certificate)');
my $sa = $a->background_psql('postgres', on_error_stop => 0);
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('x')");
ok(!free_on($b, 'x'), 'a lock held on alpha over TLS excludes beta');
my $wb = $b->background_psql('postgres', on_error_stop => 0);
$wb->query_until(qr/go/, "BEGIN;\n\\echo go\nSELECT dlock_acquire('x', 30) > 0 AS got;\n");
usleep(300_000);
my $t0 = time;
$sa->query_safe("COMMIT");
$wb->query_until(qr/^t$/m, '');
my $handoff = time - $t0;
cmp_ok($handoff, '<', 1, sprintf('beta\'s waiter gets the lock after alpha\'s COMMIT (%.3f s)', $handoff));
$wb->query_safe("COMMIT");

$sa->query_safe("SET lockext.verify_on_commit = always");
$sa->query_safe("BEGIN");
$sa->query_safe("SELECT dlock_acquire('flushed')");
$r1->cli('DEL', 'lockext:lock:flushed');
$sa->query("COMMIT");
like($sa->{stderr}, qr/lock "flushed" was lost before COMMIT/, 'COMMIT over TLS notices a lock deleted in Redis');
$sa->{stderr} = '';

is($sa->query_safe("SELECT dlock_acquire_session('kept', 5, 2) > 0"), 't', 'a session lock, 2 s lease, over TLS');
sleep 3;
is($a->safe_psql('postgres', "SELECT renewals > 0 FROM dlock_locks WHERE key = 'kept'"), 't',
	'the keeper renews it over its own TLS connection (3 s later)');
ok(!free_on($b, 'kept'), 'and it still excludes beta');
$sa->query_safe("SELECT dlock_release('kept')");
ok(free_on($b, 'kept'), 'released over TLS');

# 2. A TLS quorum of three.
my ($out, $err) = with_nodes($a, $quorum, "BEGIN; SELECT dlock_acquire('q') > 0; COMMIT;");
is($out, 't', 'a quorum of three TLS nodes grants a lock');
my $qa = $a->background_psql('postgres', on_error_stop => 0);
$qa->query_safe("SET lockext.redis_nodes = '$quorum'");
$qa->query_safe("BEGIN");
$qa->query_safe("SELECT dlock_acquire('q')");
# a majority: the third node is not waited for (its handshake may be slower)
cmp_ok($r1->cli('EXISTS', 'lockext:lock:q') + $r2->cli('EXISTS', 'lockext:lock:q')
	  + $r3->cli('EXISTS', 'lockext:lock:q'), '>=', 2, 'the quorum lock is on a majority of the nodes');
($out, $err) = with_nodes($b, $quorum, "BEGIN; SELECT dlock_try_acquire('q'); COMMIT;");
is($out, 'f', 'a TLS quorum lock excludes the other cluster');
my $qb = $b->background_psql('postgres', on_error_stop => 0);
$qb->query_safe("SET lockext.redis_nodes = '$quorum'");
$qb->query_until(qr/go/, "BEGIN;\n\\echo go\nSELECT dlock_acquire('q', 30) > 0 AS got;\n");
usleep(300_000);
$t0 = time;
$qa->query_safe("COMMIT");
$qb->query_until(qr/^t$/m, '');
$handoff = time - $t0;
cmp_ok($handoff, '<', 1, sprintf('a TLS quorum hands the lock over to the other cluster (%.3f s)', $handoff));
$qb->query_safe("COMMIT");
($out, $err) = with_nodes($b, $quorum, "BEGIN; SELECT dlock_try_acquire('q'); COMMIT;");
is($out, 't', 'and it is free after that COMMIT');

# 3. Verification, as libpq does it.
my $other = $rother->url;
($out, $err) = with_nodes($a, "$other?$ca", "SELECT dlock_acquire_session('v', 0);");
like($err, qr/ERROR:  08006/, 'verify-full with a certificate for another host: 08006');
like($err, qr/TLS handshake failed: server certificate is not for host "127\.0\.0\.1"/,
	'and the reason names the host name');
like($err, qr/rediss:\/\/127\.0\.0\.1:${\ $rother->port}/, 'and the node');
($out, $err) = with_nodes($a, "$other?$ca&sslmode=verify-ca",
	"SELECT dlock_acquire_session('v', 0) > 0; SELECT dlock_release('v');");
is($out, "t\nt", 'verify-ca accepts it (the CA is right)');
($out, $err) = with_nodes($a, "$other?sslmode=require",
	"SELECT dlock_acquire_session('v', 0) > 0; SELECT dlock_release('v');");
is($out, "t\nt", 'require without sslrootcert encrypts without verifying');
($out, $err) = with_nodes($a, "$other?sslmode=require&sslrootcert=$certs/ca2.crt",
	"SELECT dlock_acquire_session('v', 0);");
like($err, qr/unknown certificate authority/, 'require with an sslrootcert verifies the chain (libpq)');

($out, $err) = with_nodes($a, $r1->url . "?sslrootcert=$certs/ca2.crt", "SELECT dlock_acquire_session('v', 0);");
like($err, qr/ERROR:  08006.*\n.*server certificate is signed by an unknown certificate authority/,
	'a wrong CA: 08006, unknown certificate authority');
($out, $err) = with_nodes($a, $r1->url, "SELECT dlock_acquire_session('v', 0);");
like($err, qr/unknown certificate authority \(.*sslrootcert is the system's CAs\)/,
	'without sslrootcert the system CAs are used, which do not know the test CA');
($out, $err) = with_nodes($a, $rexpired->url . "?$ca", "SELECT dlock_acquire_session('v', 0);");
like($err, qr/ERROR:  08006.*\n.*server certificate has expired/, 'an expired certificate: 08006, expired');

# a password in a failing TLS URL stays masked
($out, $err) = with_nodes($a, ($other =~ s{//}{//:Sekr1t\@}r) . "?$ca", "SELECT dlock_acquire_session('v', 0);");
like($err, qr{rediss://:\*\*\*\@127\.0\.0\.1}, 'a TLS failure names the node with its password masked');
unlike($err, qr/Sekr1t/, 'and never shows the password');

# a relative file name is in the data directory
copy("$certs/ca.crt", $a->data_dir . '/redis_ca.crt') or die "copy: $!";
($out, $err) = with_nodes($a, $r1->url . '?sslrootcert=redis_ca.crt',
	"SELECT dlock_acquire_session('v', 0) > 0; SELECT dlock_release('v');");
is($out, "t\nt", 'sslrootcert relative to the data directory');

# 4. Client certificates (mutual TLS).
my $mutual = $rmutual->url . "?$ca";
($out, $err) = with_nodes($a, "$mutual&sslcert=$certs/client.crt&sslkey=$certs/client.key",
	"SELECT dlock_acquire_session('m', 0) > 0; SELECT dlock_release('m');");
is($out, "t\nt", 'a server that wants a client certificate, given one: works');
($out, $err) = with_nodes($a, $mutual, "SELECT dlock_acquire_session('m', 0);");
like($err, qr/ERROR:  08006.*\n.*requires a client certificate/, 'not given one: 08006, and why');
chmod 0644, "$certs/client.key";
($out, $err) = with_nodes($a, "$mutual&sslcert=$certs/client.crt&sslkey=$certs/client.key",
	"SELECT dlock_acquire_session('m', 0);");
like($err, qr/private key file ".*client\.key" has group or world access/,
	'a key file others may read is refused, as libpq does');
chmod 0600, "$certs/client.key";

# 4b. The managed-Redis recipe: TLS, an ACL user, its password from the
#     passfile (none in the URL).
$r1->cli('ACL', 'SETUSER', 'app', 'on', '>tls-app-pw', 'resetkeys', '~lockext:*', '+@all');
my $pass = $a->data_dir . '/lockext_redis.pass';
open my $pf, '>', $pass or die "cannot write $pass: $!";
print $pf "127.0.0.1:*:app:tls-app-pw\n";
close $pf;
chmod 0600, $pass;
($out, $err) = with_nodes($a, ($r1->url =~ s{//}{//app\@}r) . "?$ca",
	"SELECT dlock_acquire_session('acl', 0) > 0; SELECT dlock_release('acl');");
is($out, "t\nt", 'TLS with an ACL user whose password comes from the passfile');
unlink $pass;

# 5. The wrong kind of port, either way: a TLS server drops a client
#    that speaks plain Redis; a plain server waits for a line end the
#    ClientHello never sends, so the handshake times out.
($out, $err) = with_nodes($a, $r1->url =~ s/^rediss:/redis:/r, "SELECT dlock_acquire_session('p', 0);");
like($err, qr/ERROR:  08006.*\n.*connection lost/, 'redis:// to a TLS port: 08006, connection lost');
($out, $err) = with_nodes($a, $plain->url =~ s/^redis:/rediss:/r . "?sslmode=require",
	"SELECT dlock_acquire_session('p', 0);");
like($err, qr/ERROR:  08006.*\n.*TLS handshake timed out/, 'rediss:// to a plain port: 08006, handshake timed out');

# 6. A server paused in the middle of the handshake: TCP connects (the
#    kernel accepts), the TLS handshake gets no answer.
$r1->pause;
$t0 = time;
($out, $err) = with_nodes($a, $one, "SELECT dlock_acquire_session('h', 0);");
my $took = time - $t0;
like($err, qr/TLS handshake timed out/, 'a paused server: the handshake times out');
cmp_ok($took, '<', 2.5, sprintf('within the connect timeout of 1 s (%.2f s)', $took));

my $c = $a->background_psql('postgres', on_error_stop => 0);
$c->query_safe("SET lockext.connect_timeout = '60s'");
my $cpid = $c->query_safe('SELECT pg_backend_pid()');
$c->query_until(qr/go/, "\\echo go\nSELECT dlock_acquire_session('h', 60);\n");
usleep(700_000);
is($a->safe_psql('postgres', "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $cpid"),
	'Extension', 'the session waits in the handshake, on the latch and the socket');
$t0 = time;
$a->safe_psql('postgres', "SELECT pg_cancel_backend($cpid)");
$c->query('SELECT 1');
$took = time - $t0;
like($c->{stderr}, qr/canceling statement due to user request/, 'pg_cancel_backend ends a wait in the handshake');
cmp_ok($took, '<', 2, sprintf('at once (%.2f s)', $took));
$c->{stderr} = '';
$r1->resume;
is($c->query_safe("SELECT dlock_acquire_session('h', 5) > 0"), 't', 'the session works again once the server does');
$c->quit;

# 7. No secret and no file content in the logs; the node names are masked.
$_->quit for ($sa, $wb, $qa, $qb);
my $log = slurp_file($a->logfile);
unlike($log, qr/BEGIN (EC )?PRIVATE KEY/, 'no key material in the server log');
# (the test's own SET statements are logged by log_statement = all)
unlike(join("\n", grep { !/LOG:  statement: / } split /\n/, $log), qr/Sekr1t/,
	'and no password in any line of lockext (WARNING, ERROR, DETAIL, LOG)');

$a->stop;
$b->stop;
done_testing();
