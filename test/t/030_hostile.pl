# Hostile input against the redis backend, with a real redis-server: keys
# that look like Redis syntax, injections or each other; Redis answering
# with errors (ACL denial, out of memory, a key of another type, NOSCRIPT).
# Every case is a clear error with the right SQLSTATE, and the session
# stays usable with its lock bookkeeping intact: a session lock held
# throughout is still held, in the registry and in Redis, at the end.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RedisServer;
use LockextCluster;

my $redis = RedisServer->new('hostile');
my $a = start_lockext_cluster('alpha', $redis->url, '500ms');

# SQLSTATE and message of a statement, or 'ok: <result>'
$a->safe_psql('postgres', q{
CREATE FUNCTION outcome(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE q INTO r;
  RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
});

my $s = $a->background_psql('postgres', on_error_stop => 0);
sub outcome
{
	my ($q) = @_;
	$q =~ s/'/''/g;
	return $s->query_safe("SELECT outcome('$q')");
}

# Is Redis key lockext:lock:<key> there?  ($key as raw bytes)
sub in_redis { return $redis->cli('EXISTS', "lockext:lock:$_[0]") eq '1' }

$s->query_safe("SELECT dlock_acquire_session('keeper')");
ok(in_redis('keeper'), 'a session lock is held throughout');

# 1. Keys are bytes to Redis: no quoting, no injection, no normalisation.
my %keys = (
	'spaces' => [ q{'with  two  spaces'}, 'with  two  spaces' ],
	'newline' => [ q{E'new\nline'}, "new\nline" ],
	'RESP injection' => [ q{E'x\r\n*3\r\n$3\r\nSET\r\n$7\r\ninjectd\r\n$1\r\n1\r\n'},
		"x\r\n*3\r\n\$3\r\nSET\r\n\$7\r\ninjectd\r\n\$1\r\n1\r\n" ],
	'glob characters' => [ q{'acc:*?[a-z]'}, 'acc:*?[a-z]' ],
	'hash tag and separators' => [ q{'{tag}:lock:fence'}, '{tag}:lock:fence' ],
	'printf directives' => [ q{'%s%n%x%%'}, '%s%n%x%%' ],
	'backslashes and quotes' => [ q{E'\\\\x00\\'"'}, "\\x00'\"" ],
	'non-ASCII' => [ q{'ключ-üñí-鍵'}, 'ключ-üñí-鍵' ],
	'1024 bytes' => [ q{repeat('k', 1024)}, 'k' x 1024 ],
);
for my $name (sort keys %keys)
{
	my ($sql, $bytes) = @{ $keys{$name} };
	like(outcome("SELECT dlock_acquire_session($sql)"), qr/^ok: \d+$/, "key with $name: acquired");
	ok(in_redis($bytes), "key with $name: stored in Redis byte for byte");
	like(outcome("SELECT dlock_release($sql)"), qr/^ok: true$/, "key with $name: released");
	ok(!in_redis($bytes), "key with $name: gone from Redis");
}
is($redis->cli('EXISTS', 'injectd'), '0', 'a key cannot inject a Redis command');

# Bytes that are not UTF-8 at all, in a SQL_ASCII database, on both
# backends: stored and compared byte for byte.
$a->safe_psql('postgres', "CREATE DATABASE ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
$a->safe_psql('ascii', 'CREATE EXTENSION lockext');
my $raw = "k\xff\xfe\x80\x01";
my $s2 = $a->background_psql('ascii', on_error_stop => 0);
$s2->query_safe("SELECT dlock_acquire_session(E'k\\377\\376\\200\\001')");
ok(in_redis($raw), 'a key of non-UTF-8 bytes is stored in Redis byte for byte');
is($a->safe_psql('ascii', "SELECT dlock_try_acquire(E'k\\377\\376\\200\\001')"), 'f',
	'and is the same lock for another session');
is($a->safe_psql('ascii', "SELECT dlock_try_acquire(E'k\\377\\376\\200\\002')"), 't',
	'while a key one byte off is another');
is($s2->query_safe("SELECT dlock_release(E'k\\377\\376\\200\\001')"), 't', 'and it releases');
ok(!in_redis($raw), 'gone from Redis');
$s2->query_safe("SET lockext.backend = 'advisory'");
$s2->query_safe("SELECT dlock_acquire_session(E'k\\377\\376\\200\\001')");
is($a->safe_psql('ascii', "SET lockext.backend = 'advisory'; SELECT dlock_try_acquire(E'k\\377\\376\\200\\001')"), 'f',
	'advisory backend: the same bytes are the same lock');
like($s2->query_safe("SELECT key FROM dlock_held()"), qr/^k/, 'and dlock_held() returns the key');
$s2->quit;

# Look-alikes are different locks: held 'acc:1' blocks none of them.
$s->query_safe("SELECT dlock_acquire_session('acc:1')");
for my $lookalike ('acc:1 ', ' acc:1', 'ACC:1', "\x{430}cc:1", "acc:\x{ff11}", 'acc:01')
{
	my $sql = $lookalike;
	utf8::encode($sql);
	is($a->safe_psql('postgres', "SELECT dlock_try_acquire('$sql')"), 't',
		"look-alike key '$sql' is a lock of its own");
}
is($a->safe_psql('postgres', "SELECT dlock_try_acquire('acc:1')"), 'f', 'while acc:1 itself is held');
$s->query_safe("SELECT dlock_release('acc:1')");

# 2. Redis refuses: ACL denial (42501).  The user may connect but not run
#    scripts; then one that may run scripts but not SET inside them.
$redis->cli('ACL', 'SETUSER', 'noscript', 'on', '>pw1', '~*', '&*', '+@all', '-eval', '-evalsha');
$redis->cli('ACL', 'SETUSER', 'noset', 'on', '>pw2', '~*', '&*', '+@all', '-set');
my $port = $redis->port;
for my $user ('noscript:pw1', 'noset:pw2')
{
	$s->query("SET lockext.redis_nodes = 'redis://$user\@127.0.0.1:$port'");
	like($s->{stderr}, qr/WARNING:  lockext.redis_nodes contains a password/,
		'a password in the setting gets a WARNING pointing to the passfile');
	unlike($s->{stderr}, qr/pw[12]/, 'which does not contain the password');
	$s->{stderr} = '';
	my $r = outcome("SELECT dlock_acquire('acl', 1)");
	like($r, qr/^42501: Redis denied the commands of lock "acl"/, "ACL denial ($user): 42501");
	unlike($r, qr/pw[12]/, 'the message does not contain the password');
}
$s->query_safe("RESET lockext.redis_nodes");
is(outcome("SELECT dlock_acquire('acl', 1) > 0"), 'ok: true', 'with the configured user it works again');

# 3. Out of memory (53200): maxmemory too small for any write.
$redis->cli('CONFIG', 'SET', 'maxmemory', '1');
like(outcome("SELECT dlock_acquire('oom', 1)"),
	qr/^53200: Redis is out of memory and cannot grant lock "oom"/, 'Redis OOM: 53200');
$redis->cli('CONFIG', 'SET', 'maxmemory', '0');
is(outcome("SELECT dlock_acquire('oom', 1) > 0"), 'ok: true', 'after memory is freed it works again');

# 4. The lock key holds another Redis type (42809), for acquire and holder.
$redis->cli('HSET', 'lockext:lock:typed', 'f', 'v');
like(outcome("SELECT dlock_acquire('typed', 1)"), qr/^42809: Redis key of lock "typed" holds a value of another type/,
	'a lock key of another type: 42809');
like(outcome("SELECT (dlock_holder('typed')).pid"), qr/^42809: /, 'dlock_holder too');
$redis->cli('DEL', 'lockext:lock:typed');

# 5. NOSCRIPT after SCRIPT FLUSH: the scripts are sent again, nothing fails.
$redis->cli('SCRIPT', 'FLUSH');
is(outcome("SELECT dlock_acquire_session('flushed') > 0"), 'ok: true', 'acquire after SCRIPT FLUSH');
$redis->cli('SCRIPT', 'FLUSH');
is(outcome("SELECT dlock_release('flushed')"), 'ok: true', 'release after SCRIPT FLUSH');
ok(!in_redis('flushed'), 'and the key is gone');

# 5b. A lock key overwritten in Redis by someone else: whatever it holds,
#     dlock_holder() and the 55P03 detail stay sane.
my %values = (
	'not lockext' => [ 'just a value', qr/^ok: \(not lockext: just a value\)\|0$/ ],
	'pid overflow' => [ 'x|i|99999999999999999999|d|5|a', qr/^ok: \(not lockext: x\|i\|9+\|d\|5\|a\)\|0$/ ],
	'not valid text' => [ "x|\xff\xfe|1|d|5|a", qr/^ok: \(not lockext: not valid text\)\|0$|^ok: \xff\xfe\|1$/ ],    # the latter in SQL_ASCII
	'well formed' => [ 'u|elsewhere:5432|77|db|0|app|with|bars', qr/^ok: elsewhere:5432\|77$/ ],
);
for my $name (sort keys %values)
{
	my ($value, $expect) = @{ $values{$name} };
	$redis->cli('SET', 'lockext:lock:foreign', $value, 'PX', '60000');
	like(outcome("SELECT (h).instance || '|' || coalesce((h).pid, 0) FROM (SELECT dlock_holder('foreign') h) s"),
		$expect, "a foreign lock value ($name): dlock_holder copes");
	like(outcome("SELECT dlock_acquire('foreign', 0)"), qr/^55P03: /, "and the key is busy (55P03)");
}
$redis->cli('DEL', 'lockext:lock:foreign');

# 6. Bad arguments on the redis backend, before anything is sent.
like(outcome("SELECT dlock_acquire('k', 1, 'NaN')"), qr/^22023: /, 'NaN lease: 22023');
like(outcome("SELECT dlock_acquire('k', 'NaN')"), qr/^22023: /, 'NaN timeout: 22023');
like(outcome("SELECT dlock_acquire('k', 1, 1e12)"), qr/^22023: /, 'huge lease: 22023');
like(outcome("SELECT dlock_acquire(repeat('k', 1048576))"), qr/^22023: /, '1 MB key: 22023');
like(outcome("SELECT dlock_acquire(NULL)"), qr/^22004: /, 'NULL key: 22004');

# Nothing leaked, nothing lost.
is($s->query_safe("SELECT string_agg(key || '/' || scope || '/' || holds, ',') FROM dlock_held()"),
	'keeper/session/1', 'after all of that only the keeper is held, once');
ok(in_redis('keeper'), 'and it is still held in Redis');
is($s->query_safe("SELECT dlock_release('keeper')"), 't', 'and releases normally');
ok(!in_redis('keeper'), 'gone from Redis');

$s->quit;
$a->stop;
done_testing();
