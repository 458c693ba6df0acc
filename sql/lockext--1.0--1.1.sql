/* lockext--1.0--1.1.sql: what 1.1 adds to 1.0 */

\echo Use "ALTER EXTENSION lockext UPDATE TO '1.1'" to load this file. \quit

-- Every key of the array in transaction scope, all or none, taken in one
-- canonical order (by bytes) so that two callers never deadlock; on Redis
-- in one round trip per node.  Tokens in the order of the array.
CREATE FUNCTION dlock_acquire_all(keys text[], timeout float8 DEFAULT NULL,
                                  lease float8 DEFAULT NULL)
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'dlock_acquire_all'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_try_acquire_all(keys text[], lease float8 DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dlock_try_acquire_all'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

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

-- Per-database counters of dlock activity since the last
-- dlock_stats_reset() (needs lockext in shared_preload_libraries).  Wait
-- times are in milliseconds; waits_* count the waits that ended (granted
-- or not) by their length.
CREATE FUNCTION dlock_stats_internal(
    OUT datid oid, OUT acquired bigint, OUT acquired_after_wait bigint,
    OUT busy bigint, OUT timeouts bigint, OUT deadlocks bigint,
    OUT canceled bigint, OUT wait_time double precision,
    OUT max_wait_time double precision, OUT waits_10ms bigint,
    OUT waits_100ms bigint, OUT waits_1s bigint, OUT waits_10s bigint,
    OUT waits_longer bigint, OUT lost_at_commit bigint, OUT renewals bigint,
    OUT renewal_failures bigint, OUT releases_left_to_lease bigint,
    OUT redis_errors bigint, OUT fallbacks bigint,
    OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dlock_stats_internal'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- One row per database, like pg_stat_database; stats_reset is NULL where
-- no dlock was ever taken.
CREATE VIEW dlock_stats AS
SELECT d.oid AS datid, d.datname,
       coalesce(s.acquired, 0) AS acquired,
       coalesce(s.acquired_after_wait, 0) AS acquired_after_wait,
       coalesce(s.busy, 0) AS busy,
       coalesce(s.timeouts, 0) AS timeouts,
       coalesce(s.deadlocks, 0) AS deadlocks,
       coalesce(s.canceled, 0) AS canceled,
       coalesce(s.wait_time, 0) AS wait_time,
       coalesce(s.max_wait_time, 0) AS max_wait_time,
       coalesce(s.waits_10ms, 0) AS waits_10ms,
       coalesce(s.waits_100ms, 0) AS waits_100ms,
       coalesce(s.waits_1s, 0) AS waits_1s,
       coalesce(s.waits_10s, 0) AS waits_10s,
       coalesce(s.waits_longer, 0) AS waits_longer,
       coalesce(s.lost_at_commit, 0) AS lost_at_commit,
       coalesce(s.renewals, 0) AS renewals,
       coalesce(s.renewal_failures, 0) AS renewal_failures,
       coalesce(s.releases_left_to_lease, 0) AS releases_left_to_lease,
       coalesce(s.redis_errors, 0) AS redis_errors,
       coalesce(s.fallbacks, 0) AS fallbacks,
       s.stats_reset
FROM pg_catalog.pg_database d
     LEFT JOIN dlock_stats_internal() s ON s.datid OPERATOR(pg_catalog.=) d.oid;

GRANT SELECT ON dlock_stats TO PUBLIC;

-- Zero every database's counters; superusers only unless granted, as
-- pg_stat_reset().
CREATE FUNCTION dlock_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'dlock_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION dlock_stats_reset() FROM PUBLIC;

-- The Redis nodes of the server's lockext.redis_nodes as the lease keeper
-- sees them (it pings each once a second); passwords masked.  For
-- superusers and pg_monitor members, like the setting it shows.
CREATE FUNCTION dlock_redis_nodes_internal(
    OUT node text, OUT state text, OUT last_rtt double precision,
    OUT errors bigint, OUT last_error text, OUT last_error_at timestamptz,
    OUT checked_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dlock_redis_nodes_internal'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION dlock_redis_nodes_internal() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dlock_redis_nodes_internal() TO pg_monitor;

CREATE VIEW dlock_redis_nodes AS
SELECT * FROM dlock_redis_nodes_internal();

REVOKE ALL ON dlock_redis_nodes FROM PUBLIC;
GRANT SELECT ON dlock_redis_nodes TO pg_monitor;

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
