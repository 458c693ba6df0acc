# Who holds what, and to whom it is shown (issue 19, E): dlock_holder()
# follows dlock_locks' rule (a holder's instance, pid, database and
# application_name to superusers, pg_read_all_stats and roles with the
# holder's privileges; that a key is held, and for how long, to anyone),
# and dlock_locks shows the keys of a database with another encoding as
# escaped bytes rather than as invalid text.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('visibility');
my $a = start_lockext_cluster('alpha', $redis->url, '500ms');
my $b = start_lockext_cluster('beta', $redis->url, '500ms');
$a->safe_psql('postgres', q{
CREATE ROLE plain LOGIN;
CREATE ROLE reader LOGIN IN ROLE pg_read_all_stats;
CREATE DATABASE latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
});
$a->safe_psql('latin1', 'CREATE EXTENSION lockext');

my $su = $a->background_psql('postgres', on_error_stop => 0);
$su->query_safe("SELECT dlock_acquire_session('su_key', 5, 30)");
my $pl = $a->background_psql('postgres', on_error_stop => 0, extra_params => [ '-U', 'plain' ]);
$pl->query_safe("SELECT dlock_acquire_session('plain_key', 5, 30)");
my $remote = $b->background_psql('postgres', on_error_stop => 0);
$remote->query_safe("SELECT dlock_acquire_session('remote_key', 5, 30)");

my $cols = 'instance IS NULL, pid IS NULL, database IS NULL, application_name IS NULL, lease_left IS NOT NULL';
sub holder_as
{
	my ($user, $key) = @_;
	return $a->safe_psql('postgres', "SELECT $cols FROM dlock_holder('$key')", extra_params => [ '-U', $user ]);
}
is(holder_as('plain', 'su_key'), 't|t|t|t|t',
	'a plain role sees that a superuser\'s key is held and for how long, not by whom');
is(holder_as('plain', 'remote_key'), 't|t|t|t|t', 'nor who holds it on another instance');
is(holder_as('plain', 'plain_key'), 'f|f|f|f|t', 'a plain role sees its own role\'s holder');
is(holder_as('reader', 'su_key'), 'f|f|f|f|t', 'pg_read_all_stats sees every holder');
is(holder_as('reader', 'remote_key'), 'f|f|f|f|t',
	'and remote ones');
my $superuser = $a->safe_psql('postgres', 'SELECT current_user');
is(holder_as($superuser, 'remote_key'), 'f|f|f|f|t', 'so does a superuser');

# A LATIN1 database's key, seen from a UTF8 database.
my $l1 = $a->background_psql('latin1', on_error_stop => 0);
$l1->query_safe("SET client_encoding = 'UTF8'");
$l1->query_safe("SELECT dlock_acquire_session('café', 5, 30)");
$l1->query_safe("SELECT dlock_acquire_session('plain ascii', 5, 30)");
is($a->safe_psql('postgres', q{SELECT string_agg(key, ',' ORDER BY key) FROM dlock_locks WHERE database = 'latin1'}),
	'\x636166e9,plain ascii', 'dlock_locks shows a LATIN1 key as escaped bytes in a UTF8 database, ASCII as text');
is($l1->query_safe(q{SELECT string_agg(key, ',' ORDER BY key) FROM dlock_locks WHERE database = 'latin1'}),
	'café,plain ascii', 'and as text in its own database');
$_->quit for ($su, $pl, $remote, $l1);
$_->stop for ($a, $b);
done_testing();
