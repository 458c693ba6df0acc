/*-------------------------------------------------------------------------
 *
 * local_lock.h
 *	  The interface of local_lock.c: the advisory backend, and the local queue others share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_LOCAL_LOCK_H
#define LOCKEXT_LOCAL_LOCK_H

#include "lockext.h"

/* local_lock.c: the advisory backend, and the local queue others share */
extern const DlockBackend advisory_backend;
extern void local_lock_init(void);
extern void local_lock_set_tag(LOCKTAG *tag, uint64 hash);
pg_noreturn extern void lockext_report_busy(const char *key, uint64 hash, int64 timeout_ms,
											const char *busy_detail);
extern bool local_lock_acquire(DlockEntry *entry, DlockScope scope,
							   int64 timeout_ms);
extern void local_lock_release(DlockEntry *entry, DlockScope scope,
							   bool lockmgr_releases);
extern bool local_lock_still_held(DlockEntry *entry, DlockScope scope);

/* One copy of the lock manager's dlock entries, taken at first use. */
typedef struct LocalLockSnapshot
{
	struct HTAB *holders;		/* LOCKTAG -> holder's pid */
	struct HTAB *waits;			/* pid -> the LOCKTAG it waits for */
} LocalLockSnapshot;

extern int	local_lock_blocker(void *snapshot, int waiter_pid, Oid dboid,
							   uint64 hash);
extern char *lockext_instance_name(void);

#endif							/* LOCKEXT_LOCAL_LOCK_H */
