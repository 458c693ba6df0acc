# What pg_stat_activity shows while lockext waits.  On PostgreSQL 17 and
# later named custom wait events (type Extension): DlockRedisWait for an
# acquire waiting for a Redis lock another instance holds, DlockRedisIO
# for one waiting for a Redis node's reply, DlockKeeperMain for the lease
# keeper between rounds (listed in pg_wait_events).  Before 17 each is
# plain Extension.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('waits');
my ($a, $b) = map { start_lockext_cluster($_, $redis->url, '500ms') } ('alpha', 'beta');
my $named = $a->safe_psql('postgres', 'SHOW server_version_num') >= 170000;
my %event = map { $_ => $named ? $_ : 'Extension' } qw(DlockRedisWait DlockRedisIO DlockKeeperMain);

# Wait until pid shows type Extension and the event; true when it does.
sub waits_on
{
	my ($node, $pid, $event) = @_;
	return $node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Extension' AND wait_event = '$event' "
		  . "FROM pg_stat_activity WHERE pid = $pid");
}

# 1. A lock held on alpha, wanted on beta: beta's session waits in Redis.
my $h = $a->background_psql('postgres', on_error_stop => 0);
$h->query_safe("SELECT dlock_acquire_session('we:1') > 0");
my $w = $b->background_psql('postgres', on_error_stop => 0);
my $wpid = $w->query_safe('SELECT pg_backend_pid()');
$w->query_until(qr/queued/, "\\echo queued\nSELECT dlock_acquire_session('we:1', 60) > 0;\n");
ok(waits_on($b, $wpid, $event{DlockRedisWait}),
	"an acquire waiting for a Redis lock shows $event{DlockRedisWait}");
$h->query_safe("SELECT dlock_release('we:1')");
ok($b->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM dlock_locks WHERE pid = $wpid AND state = 'held'"),
	'and is granted once it is released');

# 2. A node that does not answer: the session waits for its reply.
my $s = $b->background_psql('postgres', on_error_stop => 0);
my $spid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_safe("SET lockext.command_timeout = '60s'");
$redis->pause;
$s->query_until(qr/sent/, "\\echo sent\nSELECT dlock_try_acquire_session('we:2');\n");
ok(waits_on($b, $spid, $event{DlockRedisIO}),
	"a session waiting for a Redis reply shows $event{DlockRedisIO}");
$redis->resume;
ok($b->poll_query_until('postgres', "SELECT state = 'idle' FROM pg_stat_activity WHERE pid = $spid"),
	'and goes on once the node answers');

# 3. The three names are known to the server.  (The lease keeper, with no
#    database connection, has no pg_stat_activity row: its DlockKeeperMain
#    shows to tools that sample the processes' wait events directly.)
is($a->safe_psql('postgres',
	"SELECT string_agg(name, ' ' ORDER BY name) FROM pg_wait_events WHERE name LIKE 'Dlock%'"),
	'DlockKeeperMain DlockRedisIO DlockRedisWait', '17+: pg_wait_events lists them')
  if $named;

$_->quit for ($h, $w, $s);
$_->stop for ($a, $b);
done_testing();
