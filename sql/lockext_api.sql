-- lockext_api: the SQL API on the advisory backend (one session).
CREATE EXTENSION lockext;
-- make installcheck runs against any server: the advisory backend is what
-- is tested, whatever the server's lockext.redis_nodes
SET lockext.redis_nodes = '';

-- transaction scope: token, reentrancy, release at COMMIT
BEGIN;
SELECT dlock_acquire('acct:1') AS t1 \gset
SELECT dlock_acquire('acct:1') = :t1 AS reentrant_same_token;
SELECT dlock_token('acct:1') = :t1 AS token_matches;
SELECT key, scope, backend, holds, token = :t1 AS tok,
       acquired_at <= now() + interval '1 min' AS has_time, lease_expires_at
  FROM dlock_held();
SELECT mode, granted, objsubid FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;
SELECT count(*) AS held_after_commit FROM dlock_held();
SELECT dlock_token('acct:1') IS NULL AS no_token_after_commit;

-- the next holder of the key gets a larger token
SELECT dlock_acquire('acct:1') > :t1 AS token_increases;

-- try-acquire
BEGIN;
SELECT dlock_try_acquire('acct:2');
SELECT dlock_try_acquire('acct:2');
SELECT key, scope, holds FROM dlock_held();
ROLLBACK;
SELECT count(*) AS held_after_rollback FROM dlock_held();

-- session scope: counted holds, survives COMMIT and ROLLBACK
SELECT dlock_acquire_session('job') AS s1 \gset
SELECT dlock_acquire_session('job') = :s1 AS reentrant_same_token;
BEGIN; SELECT dlock_try_acquire_session('job'); ROLLBACK;
SELECT key, scope, holds FROM dlock_held();
SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT dlock_release('job');
SELECT dlock_release('job');
SELECT key, scope, holds FROM dlock_held();
SELECT dlock_release('job');
SELECT count(*) FROM dlock_held();
SELECT dlock_release('job');
SELECT dlock_release('never-taken');

-- one key in both scopes: one token, two rows, each scope ends on its own
BEGIN;
SELECT dlock_acquire_session('both') AS b \gset
SELECT dlock_acquire('both') = :b AS same_token;
SELECT key, scope, holds FROM dlock_held() ORDER BY scope;
SELECT dlock_release('both');
SELECT key, scope, holds FROM dlock_held() ORDER BY scope;
COMMIT;
SELECT count(*) FROM dlock_held();
BEGIN;
SELECT dlock_acquire('both') IS NOT NULL;
SELECT dlock_release('both');
COMMIT;

-- release_all counts keys, not holds
SELECT dlock_acquire_session('r1') IS NOT NULL AS a,
       dlock_acquire_session('r1') IS NOT NULL AS b,
       dlock_acquire_session('r2') IS NOT NULL AS c;
SELECT dlock_release_all();
SELECT dlock_release_all();
SELECT count(*) FROM dlock_held();

-- extend: a local lock has no lease; held -> true, not held -> false
BEGIN;
SELECT dlock_acquire('ext') IS NOT NULL;
SELECT dlock_extend('ext');
SELECT dlock_extend('ext', 5);
COMMIT;
SELECT dlock_extend('ext');

-- holder
SELECT * FROM dlock_holder('free-key');
BEGIN;
SELECT dlock_acquire('held-key') IS NOT NULL;
SELECT pid = pg_backend_pid() AS me, database = current_database() AS db,
       application_name, since IS NOT NULL AS has_since, lease_left,
       instance IS NOT NULL AS has_instance
  FROM dlock_holder('held-key');
COMMIT;

-- keys are arbitrary text; distinct keys stay distinct
BEGIN;
SELECT dlock_acquire(k) IS NOT NULL
  FROM unnest(ARRAY['a', 'A', 'a ', ' a', E'a\nb', 'a b', 'ключ', '鍵',
                    '🔒', repeat('x', 1024), '42']) AS k;
SELECT count(*) AS distinct_keys, count(DISTINCT key) FROM dlock_held();
SELECT key FROM dlock_held() WHERE key = E'a\nb';
COMMIT;

-- dlocks live in a tag space of their own: pg_advisory_* never meets them
SELECT pg_advisory_lock(42);
SELECT dlock_acquire_session('42') IS NOT NULL;
SELECT objsubid, mode FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY objsubid;
SELECT pg_advisory_unlock(42);
SELECT key, scope FROM dlock_held();

-- pg_advisory_unlock_all() and DISCARD ALL drop session locks: dlock_held follows
SELECT pg_advisory_unlock_all();
SELECT count(*) AS held_after_unlock_all FROM dlock_held();
SELECT dlock_acquire_session('d') IS NOT NULL;
DISCARD ALL;
SELECT count(*) AS held_after_discard FROM dlock_held();
-- (and the nodes, to the server's)
SET lockext.redis_nodes = '';
SELECT dlock_acquire_session('d') IS NOT NULL;
SELECT dlock_release('d');

-- a read-only transaction cannot advance the token sequence: token is NULL
BEGIN READ ONLY;
SELECT dlock_acquire('ro') IS NULL AS no_token;
SELECT key, token FROM dlock_held();
COMMIT;

-- GUCs
SHOW lockext.wait_timeout;
SHOW lockext.lease;
SHOW lockext.backend;
SET lockext.wait_timeout = '1500ms';
SHOW lockext.wait_timeout;
SET lockext.lease = '2min';
SHOW lockext.lease;
-- out of range: the SQLSTATE (the message shows units from 16 on)
\set VERBOSITY sqlstate
SET lockext.wait_timeout = -1;
SET lockext.lease = 0;
\set VERBOSITY default
SET lockext.backend = 'nosuch';
SET lockext.nosuch = 1;
RESET lockext.wait_timeout;
RESET lockext.lease;
CREATE ROLE lockext_plain;
SET ROLE lockext_plain;
SET lockext.backend = 'advisory';
SET lockext.wait_timeout = '5s';
SELECT dlock_acquire('as-plain-user', 0) IS NOT NULL;
RESET ROLE;
DROP ROLE lockext_plain;

-- a re-created extension continues above every token issued before: the
-- sequence starts at the clock in microseconds
BEGIN;
SELECT dlock_acquire('fence') AS before_drop \gset
COMMIT;
DROP EXTENSION lockext;
CREATE EXTENSION lockext;
BEGIN;
SELECT dlock_acquire('fence') > :before_drop AS above_after_recreate;
COMMIT;

DROP EXTENSION lockext;
