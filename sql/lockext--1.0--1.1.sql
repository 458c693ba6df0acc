/* lockext--1.0--1.1.sql: what 1.1 adds to 1.0 */

\echo Use "ALTER EXTENSION lockext UPDATE TO '1.1'" to load this file. \quit

-- Every hold and wait on this instance, from shared memory (needs lockext
-- in shared_preload_libraries).  Other roles' rows only for superusers and
-- members of pg_read_all_stats, as pg_stat_activity does with query text.
CREATE FUNCTION dlock_locks_internal(
    OUT key text, OUT scope text, OUT backend text, OUT state text,
    OUT pid integer, OUT database text, OUT usename text,
    OUT application_name text, OUT token bigint,
    OUT acquired_at timestamptz, OUT wait_start timestamptz,
    OUT lease_expires_at timestamptz, OUT renewals bigint,
    OUT blocked_by_instance text, OUT blocked_by_remote_pid integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dlock_locks_internal'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- A waiter's blocker: the remote holder Redis named, else the session
-- ahead of it in this instance's lock manager.
CREATE VIEW dlock_locks AS
SELECT l.key, l.scope, l.backend, l.state, l.pid, l.database, l.usename,
       l.application_name, l.token, l.acquired_at, l.wait_start,
       l.lease_expires_at, l.renewals,
       l.blocked_by_instance,
       CASE WHEN l.state OPERATOR(pg_catalog.=) 'waiting'
            THEN coalesce(l.blocked_by_remote_pid,
                          (pg_catalog.pg_blocking_pids(l.pid))[1])
       END AS blocked_by_pid
FROM dlock_locks_internal() l;

GRANT SELECT ON dlock_locks TO PUBLIC;

-- The lease keeper's pid, NULL when it is not running (then leases are
-- not renewed: they behave as in 1.0).
CREATE FUNCTION dlock_keeper_pid()
RETURNS integer
AS 'MODULE_PATHNAME', 'dlock_keeper_pid'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- dlock_held() says whether the lease keeper found a lock lost (and shows
-- the lease end it renewed to): one more result column.
DROP FUNCTION dlock_held();
CREATE FUNCTION dlock_held(OUT key text, OUT scope text, OUT backend text,
                           OUT token bigint, OUT holds integer,
                           OUT acquired_at timestamptz,
                           OUT lease_expires_at timestamptz,
                           OUT state text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dlock_held'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 10;
