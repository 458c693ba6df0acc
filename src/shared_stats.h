/*-------------------------------------------------------------------------
 *
 * shared_stats.h
 *	  The interface of shared_stats.c: per-database counters (dlock_stats).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_SHARED_STATS_H
#define LOCKEXT_SHARED_STATS_H

#include "lockext_base.h"

/*
 * shared_stats.c: per-database counters (dlock_stats).  Counting never
 * ERRORs; shared_stats_prepare() (which may) makes sure there is an entry.
 */
typedef enum DlockStat
{
	DLOCK_STAT_ACQUIRED,		/* without waiting */
	DLOCK_STAT_ACQUIRED_AFTER_WAIT,
	DLOCK_STAT_BUSY,			/* a try-once acquire found it held */
	DLOCK_STAT_TIMEOUTS,		/* a wait ran out */
	DLOCK_STAT_DEADLOCKS,
	DLOCK_STAT_CANCELED,		/* a wait cancelled (cancel, statement_timeout) */
	DLOCK_STAT_WAIT_US,			/* total time waited */
	DLOCK_STAT_WAIT_MAX_US,
	DLOCK_STAT_WAITS_10MS,		/* waits by length: up to 10 ms, ... */
	DLOCK_STAT_WAITS_100MS,
	DLOCK_STAT_WAITS_1S,
	DLOCK_STAT_WAITS_10S,
	DLOCK_STAT_WAITS_LONGER,
	DLOCK_STAT_LOST_AT_COMMIT,
	DLOCK_STAT_RENEWALS,
	DLOCK_STAT_RENEWAL_FAILURES,
	DLOCK_STAT_RELEASES_LEFT,	/* releases left to the lease */
	DLOCK_STAT_REDIS_ERRORS,
	DLOCK_STAT_FALLBACKS,
	DLOCK_NSTATS
} DlockStat;

extern void shared_stats_install_hooks(void);
extern void shared_stats_prepare(void);
extern void shared_stats_count(DlockStat stat, uint64 n);
extern void shared_stats_count_db(Oid dboid, DlockStat stat, uint64 n);
extern void shared_stats_wait_ended(int64 wait_us);
extern void shared_stats_scan(void (*fn) (Oid dboid, const uint64 *counters,
										  TimestampTz reset_at, void *arg),
							  void *arg);
extern void shared_stats_reset(void);
extern void shared_stats_forget_db(Oid dboid);

#endif							/* LOCKEXT_SHARED_STATS_H */
