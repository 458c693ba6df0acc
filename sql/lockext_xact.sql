-- lockext_xact: transaction semantics through PostgreSQL's callbacks:
-- savepoints, PL/pgSQL exception blocks, procedures that COMMIT.
-- PREPARE TRANSACTION: lockext_prepared.
CREATE EXTENSION lockext;
-- make installcheck runs against any server: the advisory backend is what
-- is tested, whatever the server's lockext.redis_nodes
SET lockext.redis_nodes = '';

CREATE FUNCTION held() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(key || '/' || scope || '/' || holds, ', '
                             ORDER BY key, scope), '-')
    FROM dlock_held()
$$;

-- ROLLBACK TO SAVEPOINT releases what the savepoint took, and only that
BEGIN;
SELECT dlock_acquire('outer') IS NOT NULL;
SAVEPOINT s1;
SELECT dlock_acquire('inner') IS NOT NULL;
SELECT dlock_acquire('outer') IS NOT NULL;
SELECT held();
ROLLBACK TO SAVEPOINT s1;
SELECT held();
-- RELEASE SAVEPOINT passes holds to the parent
SAVEPOINT s2;
SELECT dlock_acquire('inner') IS NOT NULL;
SAVEPOINT s3;
SELECT dlock_acquire('inner') IS NOT NULL;
SELECT dlock_acquire('deep') IS NOT NULL;
RELEASE SAVEPOINT s3;
SELECT held();
SAVEPOINT s4;
SELECT dlock_acquire('inner') IS NOT NULL;
ROLLBACK TO SAVEPOINT s4;
SELECT held();
RELEASE SAVEPOINT s2;
SELECT held();
-- a savepoint rolled back after its parent's holds moved up keeps them
SAVEPOINT s5;
ROLLBACK TO SAVEPOINT s5;
SELECT held();
COMMIT;
SELECT held();

-- the lock manager agrees: nothing of ours left in pg_locks
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 27768 AND pid = pg_backend_pid();

-- a failed statement aborts the transaction: everything is released
BEGIN;
SELECT dlock_acquire('doomed') IS NOT NULL;
SELECT 1 / 0;
ROLLBACK;
SELECT held();

-- PL/pgSQL EXCEPTION blocks are subtransactions
CREATE FUNCTION guarded(fail boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM dlock_acquire('fn-outer');
  BEGIN
    PERFORM dlock_acquire('fn-inner');
    IF fail THEN
      RAISE EXCEPTION 'boom';
    END IF;
  EXCEPTION WHEN raise_exception THEN
    RETURN 'caught: ' || held();
  END;
  RETURN 'ok: ' || held();
END $$;
BEGIN;
SELECT guarded(true);
SELECT held();
COMMIT;
BEGIN;
SELECT guarded(false);
SELECT held();
COMMIT;
SELECT held();

-- an error inside a subtransaction that the caller catches keeps outer holds
DO $$
BEGIN
  PERFORM dlock_acquire('do-outer');
  BEGIN
    PERFORM dlock_acquire('do-inner');
    PERFORM dlock_acquire(NULL);
  EXCEPTION WHEN null_value_not_allowed THEN
    RAISE NOTICE 'after error: %', held();
  END;
END $$;
SELECT held();

-- procedures that COMMIT inside release at each COMMIT
CREATE PROCEDURE batches() LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..3 LOOP
    PERFORM dlock_acquire('batch');
    PERFORM dlock_acquire('batch:' || i);
    RAISE NOTICE 'batch %: %', i, held();
    COMMIT;
    RAISE NOTICE 'after commit %: %', i, held();
  END LOOP;
  PERFORM dlock_acquire('batch');
  ROLLBACK;
  RAISE NOTICE 'after rollback: %', held();
END $$;
CALL batches();
SELECT held();

-- session locks survive ROLLBACK, also when taken in an aborted savepoint
BEGIN;
SAVEPOINT a;
SELECT dlock_acquire_session('sess') IS NOT NULL;
ROLLBACK TO SAVEPOINT a;
SELECT held();
ROLLBACK;
SELECT held();

SELECT dlock_release_all();

-- outside a transaction block a transaction-scoped lock of the statement
-- itself ends with it: a WARNING (25P01), as for SET LOCAL
SELECT dlock_acquire('auto') > 0 AS autocommit;
SELECT dlock_try_acquire('auto') AS autocommit_try;
\set VERBOSITY sqlstate
SELECT dlock_acquire('auto') > 0 AS autocommit;
\set VERBOSITY default
-- no warning inside BEGIN, in an implicit block, or inside a function or
-- procedure called in autocommit mode (the lock covers their work)
BEGIN;
SELECT dlock_acquire('auto') > 0 AS in_block;
COMMIT;
SELECT 1 AS first \; SELECT dlock_acquire('auto') > 0 AS implicit_block;
CREATE FUNCTION locked_work() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE t bigint;
BEGIN
  t := dlock_acquire('auto');               -- a simple expression
  PERFORM dlock_try_acquire('auto2');        -- a query
  RETURN t > 0 AND (SELECT count(*) FROM dlock_held()) = 2;
END $$;
SELECT locked_work();
CREATE PROCEDURE locked_proc() LANGUAGE plpgsql AS $$
BEGIN
  PERFORM dlock_acquire('auto');
  COMMIT;
  PERFORM dlock_acquire('auto');
END $$;
CALL locked_proc();
DO $$ BEGIN PERFORM dlock_acquire('auto'); END $$;
SELECT count(*) AS none_left FROM dlock_held();
DROP PROCEDURE locked_proc();
DROP FUNCTION locked_work();

DROP FUNCTION held();
DROP EXTENSION lockext;
