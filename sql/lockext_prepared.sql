-- lockext_prepared: PREPARE TRANSACTION while holding dlocks.  Needs
-- max_prepared_transactions > 0 (PostgreSQL's default is 0); on a server
-- without it the test says so and stops, matching
-- expected/lockext_prepared_1.out.
SELECT current_setting('max_prepared_transactions')::int > 0 AS prepared_xacts_enabled \gset
\if :prepared_xacts_enabled
\else
\echo 'skipped: needs max_prepared_transactions > 0'
\quit
\endif
CREATE EXTENSION lockext;
-- make installcheck runs against any server: the advisory backend is what
-- is tested, whatever the server's lockext.redis_nodes
SET lockext.redis_nodes = '';

-- a session lock, held throughout
SELECT dlock_acquire_session('sess') IS NOT NULL;

-- PREPARE TRANSACTION is refused while holding transaction-scoped dlocks
BEGIN;
SELECT dlock_acquire('prep') IS NOT NULL;
PREPARE TRANSACTION 'lockext_p1';
SELECT key || '/' || scope || '/' || holds AS held FROM dlock_held();
SELECT count(*) FROM pg_prepared_xacts;
-- ... also when they were taken in a released savepoint
BEGIN;
SAVEPOINT p;
SELECT dlock_acquire('prep') IS NOT NULL;
RELEASE SAVEPOINT p;
PREPARE TRANSACTION 'lockext_p2';
-- but not after the savepoint that took them rolled back
BEGIN;
SAVEPOINT p;
SELECT dlock_acquire('prep') IS NOT NULL;
ROLLBACK TO SAVEPOINT p;
PREPARE TRANSACTION 'lockext_p3';
ROLLBACK PREPARED 'lockext_p3';
-- session locks are not part of the transaction: PREPARE is allowed
BEGIN;
SELECT key || '/' || scope || '/' || holds AS held FROM dlock_held();
PREPARE TRANSACTION 'lockext_p4';
COMMIT PREPARED 'lockext_p4';
SELECT key || '/' || scope || '/' || holds AS held FROM dlock_held();
SELECT dlock_release_all();

DROP EXTENSION lockext;
