/*-------------------------------------------------------------------------
 *
 * redis_backend.h
 *	  The redis lock backend (redis_backend.c, redis_backend_release.c) and
 *	  its deadlock detection (deadlock.c): the glue between the registry's
 *	  DlockBackend interface (lockext.h) and the Redis layers (redis.h),
 *	  which know nothing of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_REDIS_BACKEND_H
#define LOCKEXT_REDIS_BACKEND_H

#include "lockext.h"
#include "redis.h"

/* redis_backend.c and redis_backend_release.c: the redis backend */
extern void redis_free_hold(DlockEntry *entry);
extern void redis_confirm_rows(void *const *tags, int n);
extern void redis_ask_keeper(void);
extern void redis_release_many(DlockEnding *ends, int n, bool xact_end,
							   bool is_abort);
extern void redis_release(DlockEntry *entry, DlockScope scope,
						  bool lockmgr_releases, bool is_abort);
extern void redis_at_exit(void);
extern void redis_statement_end(void);

/*
 * deadlock.c: deadlock detection across instances for a wait on Redis.
 * Part of the redis backend (it reads this instance's local waits too),
 * not of the Redis layers below it.
 */
typedef struct DeadlockWatch
{
	bool		started;
	TimestampTz started_at;
	int64		next_check_us;
	bool		published;		/* our edge is in Redis, saying: */
	char		holder[LOCKEXT_SESSION_ID_LEN + 1];	/* whom we wait for */
	const char *key;			/* for which key */
} DeadlockWatch;

extern void deadlock_watch_start(DeadlockWatch *w);
extern int64 deadlock_watch_cap(const DeadlockWatch *w, int64 wait_ms);
extern void deadlock_check(DeadlockWatch *w, RedisNodeSet *set, const char *ns,
						   const char *key, const char *holder_value);
extern void deadlock_watch_end(DeadlockWatch *w, RedisNodeSet *set,
							   const char *ns);

#endif							/* LOCKEXT_REDIS_BACKEND_H */
