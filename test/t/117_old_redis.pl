# A Redis older than 6.2 (a real 6.0.16, Debian bullseye's, which test/lib.sh
# fetches; LOCKEXT_OLD_REDIS_SERVER names it) is refused at connect: an
# acquire on it fails with 55000 naming the node (password masked) and the
# version, also with lockext.fallback = advisory (a wrong setup, not an
# outage), and the session's next acquires are refused without connecting;
# a quorum of two 7.0 nodes and the 6.0 one still grants, and the keeper
# renews on the two only, logging the refusal once; a quorum that the old
# node leaves short fails with 55000 (not 08006); the same session on a 7.0
# node works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RedisServer;
use LockextCluster;

my $server = $ENV{LOCKEXT_OLD_REDIS_SERVER};
my $default = '/var/cache/lockext-test/redis6.0/redis-server';
if (!defined $server)
{
	# a local run: test/lib.sh's install step did not run here
	plan skip_all => "no Redis 6.0: run test/run.sh as root once (it fetches one into $default), or set LOCKEXT_OLD_REDIS_SERVER"
	  unless -x $default;
	$server = $default;
}
# test/run.sh fetched it (or tried to): missing is a failure, not a skip
if (!-x $server)
{
	fail("LOCKEXT_OLD_REDIS_SERVER=$server is an executable file (test/lib.sh fetches it)");
	done_testing();
	exit;
}

# two: one in the cluster's node list (the keeper's), one the keeper never
# connects to (for 1, which counts its connections)
my ($old, $lone) = map { RedisServer->new($_, server => $server, requirepass => 'oldsecret') }
  ('old60', 'lone60');
my ($version) = $old->cli('INFO', 'server') =~ /redis_version:(\S+)/;
like($version, qr/^6\.0\./, "the old nodes run Redis $version");
my @new = map { RedisServer->new("new$_") } 1 .. 2;
my $oport = $old->port;
my $lport = $lone->port;
my $new1 = $new[0]->url;

my $pg = start_lockext_cluster('old', join(',', map { $_->url } @new, $old), '500ms');

# SQLSTATE, message, detail and hint of a statement, or "ok: <output>".
sub outcome
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $pg->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return "ok: $out" if $ret == 0;
	return $err;
}

# Connections the old node has taken (the count includes the one asking).
sub connections { return ($lone->cli('INFO', 'stats') =~ /total_connections_received:(\d+)/)[0] }

# 1. A single old node: 55000 naming it and its version, the password
#    masked.  The session's next acquires are refused without connecting:
#    only the first contact's acquire, pipelined behind the check, ran
#    there (its key expires with its lease, see 2).
my $s = $pg->background_psql('postgres', on_error_stop => 0);
$s->query("\\set VERBOSITY verbose");
$s->query("SET lockext.redis_nodes = '" . $lone->url . "'");    # warns of the password
$s->{stderr} = '';
$s->query("SELECT dlock_acquire_session('k', 1)");
my $r = $s->{stderr};
like($r, qr/ERROR:  55000: Redis node \S*127\.0\.0\.1:$lport runs a version of Redis lockext does not support/,
	'an acquire on Redis 6.0 fails with 55000 naming the node');
like($r, qr/DETAIL:  It runs Redis \Q$version\E\./, 'the detail gives the version found');
like($r, qr/HINT:  lockext needs Redis 6\.2 or later\./, 'the hint says which version is needed');
unlike($r, qr/oldsecret/, 'the password is not shown');
my $conns = connections();
$s->{stderr} = '';
$s->query("SELECT dlock_try_acquire_session('k2')") for 1 .. 3;
my $refused = () = $s->{stderr} =~ /ERROR:  55000: Redis node \S*:$lport runs a version/g;
is($refused, 3, 'the next acquires are refused too');
is(connections() - $conns, 1, '... without connecting to the node again');
is($lone->cli('EXISTS', 'lockext:lock:k2'), '0', 'so nothing of theirs is there');
$s->quit;
like(outcome("SET lockext.redis_nodes = '" . $lone->url . "'; SET lockext.fallback = 'advisory'; "
	  . "SELECT dlock_try_acquire_session('k')"),
	qr/ERROR:  55000: Redis node \S*127\.0\.0\.1:$lport runs/,
	'with lockext.fallback = advisory too: an old node is a wrong setup, not an outage');

# 2. Two 7.0 nodes and the 6.0 one (the configured list): a majority
#    grants; the keeper renews on the two, and logs the refusal once.
$s = $pg->background_psql('postgres');
ok($s->query_safe("SELECT dlock_acquire_session('q', 5, 2)") > 0,
	'a quorum of two 7.0 nodes and a 6.0 node grants');
sleep 4;    # twice the lease: only the keeper's renewals keep it
is(join(',', map { $_->cli('EXISTS', 'lockext:lock:q') } @new, $old), '1,1,0',
	'the keeper renews it on the 7.0 nodes (2 s lease, 4 s later), not on the 6.0 one');
my $kpid = $pg->safe_psql('postgres', 'SELECT dlock_keeper_pid()');
my $log = slurp_file($pg->logfile);
my $logged = () = $log =~ /\[$kpid\] LOG:  Redis node \S*127\.0\.0\.1:$oport runs a version of Redis lockext does not support/g;
is($logged, 1, 'the keeper logged the refusal once, though it pinged the node every second');
like($pg->safe_psql('postgres',
		"SELECT last_error FROM dlock_redis_nodes WHERE node LIKE '%:$oport'"),
	qr/Redis \Q$version\E/, 'dlock_redis_nodes shows the refusal with the version');
$s->query_safe("SELECT dlock_release('q')");
$s->quit;

# 3. A quorum the old node leaves short fails with 55000 (not 08006), and
#    the detail gives each node's outcome.
my $dead = PostgreSQL::Test::Cluster::get_free_port();
$r = outcome("SET lockext.redis_nodes = '$new1," . $old->url . ",redis://127.0.0.1:$dead'; SELECT dlock_acquire_session('s', 1)");
like($r, qr/ERROR:  55000: Redis node \S*127\.0\.0\.1:$oport runs/,
	'a 7.0, a 6.0 and an unreachable node: 55000 naming the old node');
like($r, qr/DETAIL: .*granted.*127\.0\.0\.1:$dead: unreachable/s, 'the detail lists every node');
is($new[0]->cli('EXISTS', 'lockext:lock:s'), '0', 'the grant on the 7.0 node was given back');

# 4. The same session, refused on the 6.0 node, works on a 7.0 node.
$s = $pg->background_psql('postgres', on_error_stop => 0);
$s->query("SET lockext.redis_nodes = '" . $lone->url . "'");    # warns of the password
$s->{stderr} = '';
$s->query("SELECT dlock_acquire_session('k', 1)");
like($s->{stderr}, qr/runs a version of Redis lockext does not support/, 'first refused on 6.0 ...');
$s->{stderr} = '';
$s->query_safe("SET lockext.redis_nodes = '$new1'");
is($s->query_safe("SELECT dlock_acquire_session('k', 1) > 0"), 't', '... then granted on a 7.0 node');
$s->quit;

$pg->stop;
done_testing();
