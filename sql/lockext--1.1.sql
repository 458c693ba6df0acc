/* lockext--1.1.sql: the SQL interface of lockext 1.1 */

\echo Use "CREATE EXTENSION lockext" to load this file. \quit

-- Fencing tokens of the advisory backend.  CACHE 1 keeps values strictly
-- increasing across sessions.  The sequence starts at the clock in
-- microseconds, so a re-created extension (DROP and CREATE, or a restore,
-- which is why pg_dump need not keep its position) continues above every
-- token issued before.  Names are qualified: the extension is trusted, so
-- this runs as a superuser in a schema the caller may own.
CREATE SEQUENCE dlock_fence_seq AS bigint NO CYCLE CACHE 1;
SELECT pg_catalog.setval('dlock_fence_seq',
       pg_catalog.int8(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())
                       OPERATOR(pg_catalog.*) 1000000));
REVOKE ALL ON SEQUENCE dlock_fence_seq FROM PUBLIC;

-- Non-strict on purpose: a NULL key is an error (22004), not a NULL result.
CREATE FUNCTION dlock_acquire(key text, timeout float8 DEFAULT NULL,
                              lease float8 DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'dlock_acquire'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_try_acquire(key text, lease float8 DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dlock_try_acquire'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_acquire_session(key text, timeout float8 DEFAULT NULL,
                                      lease float8 DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'dlock_acquire_session'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_try_acquire_session(key text, lease float8 DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dlock_try_acquire_session'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_release(key text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dlock_release'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_release_all()
RETURNS integer
AS 'MODULE_PATHNAME', 'dlock_release_all'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_extend(key text, lease float8 DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dlock_extend'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_token(key text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'dlock_token'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION dlock_held(OUT key text, OUT scope text, OUT backend text,
                           OUT token bigint, OUT holds integer,
                           OUT acquired_at timestamptz,
                           OUT lease_expires_at timestamptz,
                           OUT state text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dlock_held'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 10;

CREATE FUNCTION dlock_holder(key text, OUT instance text, OUT pid integer,
                             OUT database text, OUT application_name text,
                             OUT since timestamptz, OUT lease_left interval)
RETURNS record
AS 'MODULE_PATHNAME', 'dlock_holder'
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
