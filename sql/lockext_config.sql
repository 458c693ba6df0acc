-- lockext_config: the Redis-related settings are validated when set, and
-- a redis backend without nodes is a clear error.  (No Redis needed.)
CREATE EXTENSION lockext;

SHOW lockext.redis_nodes;
SHOW lockext.namespace;
SHOW lockext.fallback;
SHOW lockext.connect_timeout;
SHOW lockext.command_timeout;
SHOW lockext.verify_on_commit;

-- malformed node lists are rejected with what is wrong
SET lockext.redis_nodes = 'redis://';
SET lockext.redis_nodes = 'redis://127.0.0.1:0';
SET lockext.redis_nodes = 'redis://127.0.0.1:99999';
SET lockext.redis_nodes = 'http://127.0.0.1';
SET lockext.redis_nodes = 'rediss://127.0.0.1';
SET lockext.redis_nodes = 'redis://a:1,,redis://b:2';
SET lockext.redis_nodes = 'redis://a:1,redis://a:1';
SET lockext.redis_nodes = E'redis://a:1\nredis://b:2';
SET lockext.redis_nodes = 'unix://relative.sock';
SET lockext.redis_nodes = 'redis://app:Sekr1t%zz@127.0.0.1:1';
SET lockext.redis_nodes = 'redis://127.0.0.1 :1';
SET lockext.redis_nodes = 'redis://127.0.0.1:1/ 0';
SET lockext.redis_nodes = 'unix:///tmp/x.sock?db=1&timeout=5';
SET lockext.redis_nodes = 'redis://127.0.0.1:1, ,redis://127.0.0.1:2';
SELECT set_config('lockext.redis_nodes',
       string_agg('redis://127.0.0.1:' || (1000 + g), ','), false)
  FROM generate_series(1, 300) g;
SELECT count(*) AS nodes_still_empty FROM pg_settings
 WHERE name = 'lockext.redis_nodes' AND setting = '';

-- well-formed ones are accepted (nothing connects until a lock is taken)
SET lockext.redis_nodes = ' redis://127.0.0.1:6390 , unix:///tmp/x.sock?db=2 ';
SHOW lockext.redis_nodes;
RESET lockext.redis_nodes;

SET lockext.namespace = '';
SET lockext.namespace = 'has space';
SET lockext.namespace = 'app1';
SHOW lockext.namespace;
RESET lockext.namespace;
SET lockext.fallback = 'sometimes';
SET lockext.verify_on_commit = 'never';
SET lockext.command_timeout = 0;

-- the redis backend needs nodes
SET lockext.backend = 'redis';
SELECT dlock_acquire('k');
SELECT dlock_holder('k');
RESET lockext.backend;
SELECT dlock_acquire('k') > 0 AS advisory_again;

DROP EXTENSION lockext;
