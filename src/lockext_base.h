/*-------------------------------------------------------------------------
 *
 * lockext_base.h
 *	  What every layer of lockext builds on, the Redis layers and the keeper
 *	  included: limits, the monotonic clock, the GUC variables (guc.c), and
 *	  the description of a key's holder.  Nothing here knows the registry
 *	  or the lock backends (lockext.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_BASE_H
#define LOCKEXT_BASE_H

#include "postgres.h"

#include <time.h>

#include "pg_compat.h"

#include "utils/timestamp.h"

/* Longest key accepted, in bytes of the database encoding. */
#define LOCKEXT_MAX_KEY_BYTES	1024

/*
 * Length of a session id (shared_locks_session_id), in hex digits: the
 * prefix of every owner value a backend writes to Redis.
 */
#define LOCKEXT_SESSION_ID_LEN 24

/* Who holds a key, for dlock_holder(). */
typedef struct DlockHolderInfo
{
	char	   *instance;
	int			pid;
	char	   *database;		/* NULL when unknown */
	char	   *application_name;	/* NULL when unknown */
	TimestampTz since;			/* 0 when unknown */
	int64		lease_left_ms;	/* -1 when the backend has no lease */
} DlockHolderInfo;

/* Monotonic clock in microseconds: deadlines and leases. */
static inline int64
lockext_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* What is left of timeout_ms (0: try once, -1: forever) since start_us. */
static inline int64
lockext_time_left(int64 timeout_ms, int64 start_us)
{
	if (timeout_ms <= 0)
		return timeout_ms;
	return Max(1, timeout_ms - (lockext_now_us() - start_us) / 1000);
}

/* GUCs (guc.c) */
typedef enum LockextBackendChoice
{
	LOCKEXT_BACKEND_AUTO,
	LOCKEXT_BACKEND_ADVISORY,
	LOCKEXT_BACKEND_REDIS
} LockextBackendChoice;

typedef enum LockextFallback
{
	LOCKEXT_FALLBACK_OFF,
	LOCKEXT_FALLBACK_ADVISORY
} LockextFallback;

typedef enum LockextVerify
{
	LOCKEXT_VERIFY_AUTO,
	LOCKEXT_VERIFY_ALWAYS,
	LOCKEXT_VERIFY_OFF
} LockextVerify;

extern int	lockext_backend_choice;
extern int	lockext_wait_timeout_ms;
extern int	lockext_lease_ms;
extern char *lockext_namespace;
extern int	lockext_fallback;
extern int	lockext_connect_timeout_ms;
extern int	lockext_command_timeout_ms;
extern int	lockext_verify_on_commit;
extern bool lockext_preloaded;	/* loaded by shared_preload_libraries */
extern int	lockext_max_hold_ms;
extern int	lockext_max_idle_hold_ms;
extern bool lockext_session_locks;
extern const int lockext_min_lease_ms;
extern bool lockext_in_alter_system;	/* set by sql_api.c's utility hook */
extern char *lockext_redis_passfile;
extern bool lockext_debug_skip_exit_cleanup;

extern void lockext_define_gucs(void);

/*
 * wait_events.c: what pg_stat_activity shows while lockext waits (named
 * events on 17 and later).
 */
typedef enum LockextWaitEvent
{
	LOCKEXT_WAIT_KEEPER_MAIN,	/* the lease keeper between rounds */
	LOCKEXT_WAIT_REDIS_LOCK,	/* an acquire waiting for a Redis lock */
	LOCKEXT_WAIT_REDIS_IO,		/* waiting for a Redis node's reply */
	LOCKEXT_NWAIT_EVENTS
} LockextWaitEvent;

extern void lockext_wait_events_prepare(void);
extern uint32 lockext_wait_event(LockextWaitEvent ev);
extern uint32 lockext_wait_event_cached(LockextWaitEvent ev);

#endif							/* LOCKEXT_BASE_H */
