-- lockext_errors: bad input gives the right SQLSTATE, never a crash, and
-- leaves the session and its lock bookkeeping intact.
CREATE EXTENSION lockext;
-- make installcheck runs against any server: the advisory backend is what
-- is tested, whatever the server's lockext.redis_nodes
SET lockext.redis_nodes = '';

CREATE FUNCTION outcome(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- a lock held throughout, to check bookkeeping survives every error
SELECT dlock_acquire_session('keeper') IS NOT NULL;

SELECT q, outcome(q) FROM (VALUES
  ($$SELECT dlock_acquire(NULL)$$),
  ($$SELECT dlock_try_acquire(NULL)$$),
  ($$SELECT dlock_acquire_session(NULL)$$),
  ($$SELECT dlock_try_acquire_session(NULL)$$),
  ($$SELECT dlock_release(NULL)$$),
  ($$SELECT dlock_extend(NULL)$$),
  ($$SELECT dlock_token(NULL)$$),
  ($$SELECT dlock_holder(NULL)$$),
  ($$SELECT dlock_acquire('')$$),
  ($$SELECT dlock_try_acquire('')$$),
  ($$SELECT dlock_acquire_session('')$$),
  ($$SELECT dlock_release('')$$),
  ($$SELECT dlock_extend('')$$),
  ($$SELECT dlock_token('')$$),
  ($$SELECT dlock_holder('')$$),
  ($$SELECT dlock_acquire(repeat('x', 1025))$$),
  ($$SELECT dlock_acquire_session(repeat('é', 513))$$),
  ($$SELECT dlock_acquire(repeat('x', 1048576))$$),
  ($$SELECT dlock_try_acquire(repeat('x', 1048576))$$),
  ($$SELECT dlock_acquire_session(repeat('x', 1048576))$$),
  ($$SELECT dlock_try_acquire_session(repeat('x', 1048576))$$),
  ($$SELECT dlock_release(repeat('x', 1048576))$$),
  ($$SELECT dlock_extend(repeat('x', 1048576))$$),
  ($$SELECT dlock_token(repeat('x', 1048576))$$),
  ($$SELECT dlock_holder(repeat('x', 1048576))$$),
  ($$SELECT dlock_try_acquire('k', 'NaN')$$),
  ($$SELECT dlock_try_acquire_session('k', 'Infinity')$$),
  ($$SELECT dlock_acquire_session('k', 1, 0)$$),
  ($$SELECT dlock_extend('keeper', -1)$$),
  ($$SELECT dlock_extend('keeper', 'Infinity')$$),
  ($$SELECT dlock_acquire('k', -1)$$),
  ($$SELECT dlock_acquire('k', -0.001)$$),
  ($$SELECT dlock_acquire('k', 'NaN')$$),
  ($$SELECT dlock_acquire('k', '-Infinity')$$),
  ($$SELECT dlock_acquire_session('k', 'NaN')$$),
  ($$SELECT dlock_acquire('k', 1, 0)$$),
  ($$SELECT dlock_acquire('k', 1, -5)$$),
  ($$SELECT dlock_acquire('k', 1, 'NaN')$$),
  ($$SELECT dlock_acquire('k', 1, 'Infinity')$$),
  ($$SELECT dlock_acquire('k', 1, 1e12)$$),
  ($$SELECT dlock_try_acquire('k', 0)$$),
  ($$SELECT dlock_try_acquire_session('k', -1)$$),
  ($$SELECT dlock_extend('keeper', 0)$$),
  ($$SELECT dlock_extend('keeper', 'NaN')$$),
  ($$SELECT dlock_acquire('k', 'Infinity')$$),
  ($$SELECT dlock_acquire('k', 1e300)$$),
  ($$SELECT dlock_acquire('k', 0.0001, 0.0001)$$),
  -- leases under 10 ms cannot outlast the clock-drift allowance
  ($$SELECT dlock_acquire('k', 0, 0.002)$$),
  ($$SELECT dlock_try_acquire('k', 0.0099)$$),
  ($$SELECT dlock_acquire_session('k', 0, 0.001)$$),
  ($$SELECT dlock_try_acquire_session('k', 0.005)$$),
  ($$SELECT dlock_extend('keeper', 0.002)$$),
  ($$SELECT dlock_acquire('k', 0, 0.01)$$),
  ($$SELECT dlock_extend('keeper', 0.01)$$)
) AS t(q);
-- out of range: the SQLSTATE (the message shows units from 16 on)
\set VERBOSITY sqlstate
SET lockext.lease = '9ms';
\set VERBOSITY default
SET lockext.lease = '10ms';
SHOW lockext.lease;
RESET lockext.lease;

-- nothing leaked, nothing lost
SELECT key, scope, holds FROM dlock_held();
SELECT dlock_release('keeper');
SELECT count(*) FROM dlock_held();

-- keys are bytes: look-alikes are locks of their own, never folded together
SELECT count(dlock_acquire_session(k)) AS taken
  FROM (VALUES ('acc:1'), ('acc:1 '), (' acc:1'), ('ACC:1'), ('аcc:1'),
               ('acc:１'), ('acc:01'), (E'acc:1\n'), ('acc:1' || chr(160))) v(k);
SELECT count(*) AS distinct_locks, sum(holds) AS holds FROM dlock_held() WHERE scope = 'session';
SELECT dlock_release_all();

-- NULL timeout and lease mean the GUC defaults
SET lockext.wait_timeout = 0;
BEGIN;
SELECT dlock_acquire('k', NULL, NULL) IS NOT NULL;
COMMIT;
RESET lockext.wait_timeout;

DROP EXTENSION lockext;
