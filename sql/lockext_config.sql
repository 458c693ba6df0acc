-- lockext_config: the Redis-related settings are validated when set, and
-- a redis backend without nodes is a clear error.  (No Redis needed.)
CREATE EXTENSION lockext;
-- make installcheck runs against any server: the advisory backend is what
-- is tested, whatever the server's lockext.redis_nodes
SET lockext.redis_nodes = '';

SHOW lockext.redis_nodes;
-- the defaults (pg_settings' boot_val: the server may set its own)
SELECT name, boot_val, unit FROM pg_settings
 WHERE name IN ('lockext.namespace', 'lockext.fallback', 'lockext.connect_timeout',
                'lockext.command_timeout', 'lockext.verify_on_commit',
                'lockext.session_locks')
 ORDER BY name;

-- malformed node lists are rejected with what is wrong
SET lockext.redis_nodes = 'redis://';
SET lockext.redis_nodes = 'redis://127.0.0.1:0';
SET lockext.redis_nodes = 'redis://127.0.0.1:99999';
SET lockext.redis_nodes = 'http://127.0.0.1';
SET lockext.redis_nodes = 'rediss://127.0.0.1?sslmode=disable';
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
SELECT current_setting('lockext.redis_nodes') = '' AS nodes_still_empty;
-- pg_settings has no row for the nodes, not even for superusers: its
-- reset_val and boot_val columns would show a password unmasked
SELECT count(*) AS no_row FROM pg_settings WHERE name = 'lockext.redis_nodes';

-- well-formed ones are accepted (nothing connects until a lock is taken)
SET lockext.redis_nodes = ' redis://127.0.0.1:6390 , unix:///tmp/x.sock?db=2 ';
SHOW lockext.redis_nodes;
RESET lockext.redis_nodes;
-- (RESET brings back the server's nodes)
SET lockext.redis_nodes = '';
-- role, database and function settings are readable by every role: no
-- password there (the passfile is the place)
CREATE ROLE lockext_pw_role;
ALTER ROLE lockext_pw_role SET lockext.redis_nodes = 'redis://:secret@127.0.0.1:6390';
ALTER DATABASE postgres SET lockext.redis_nodes = 'redis://u:secret@127.0.0.1:6390';
CREATE FUNCTION lockext_pw_f() RETURNS int LANGUAGE sql
  SET lockext.redis_nodes = 'redis://:secret@127.0.0.1:6390' AS 'SELECT 1';
ALTER ROLE lockext_pw_role SET lockext.redis_nodes = 'redis://127.0.0.1:6390';
SELECT rolconfig FROM pg_roles WHERE rolname = 'lockext_pw_role';
DROP ROLE lockext_pw_role;

SET lockext.namespace = '';
SET lockext.namespace = 'has space';
-- "<ns>:lock:<key>": a colon in the namespace could alias another's keys
SET lockext.namespace = 'a:lock:b';
SET lockext.namespace = 'app1';
SHOW lockext.namespace;
RESET lockext.namespace;
SET lockext.fallback = 'sometimes';
SET lockext.verify_on_commit = 'never';
-- out of range: the SQLSTATE (the message shows units from 16 on)
\set VERBOSITY sqlstate
SET lockext.command_timeout = 0;
\set VERBOSITY default

-- the redis backend needs nodes
SET lockext.backend = 'redis';
SELECT dlock_acquire('k');
SELECT dlock_holder('k');
RESET lockext.backend;
BEGIN;
SELECT dlock_acquire('k') > 0 AS advisory_again;
COMMIT;

-- lockext.session_locks = off (transaction-pooling poolers): session locks
-- are refused with 55000, transaction-scoped ones work as before
SET lockext.session_locks = off;
SELECT dlock_acquire_session('s');
\set VERBOSITY sqlstate
SELECT dlock_try_acquire_session('s');
\set VERBOSITY default
BEGIN;
SELECT dlock_acquire('s') > 0 AS xact_lock_works;
SELECT dlock_try_acquire('s2') AS xact_try_works;
COMMIT;
SELECT count(*) AS nothing_held FROM dlock_held();
RESET lockext.session_locks;
SELECT dlock_try_acquire_session('s') AS session_lock_again;
SELECT dlock_release('s');
CREATE ROLE lockext_pooled;
SET ROLE lockext_pooled;
SET lockext.session_locks = off;
RESET ROLE;
DROP ROLE lockext_pooled;

DROP EXTENSION lockext;
