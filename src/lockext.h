/*-------------------------------------------------------------------------
 *
 * lockext.h
 *	  The backend interface of lockext and what every layer shares: a
 *	  hold's registry entry, the operations every lock backend provides,
 *	  the clock helpers, and the GUCs.  Each module's own interface is in
 *	  a header of its own (registry.h, release via registry_int.h,
 *	  local_lock.h, shared_locks.h, keeper.h, ...; the Redis layers:
 *	  redis.h).
 *
 * The SQL layer (sql_api.c) validates input and talks to the registry
 * (registry.c); the registry owns reentrancy and scopes, release.c the
 * transaction, subtransaction, resource-owner and exit callbacks, and
 * both call a DlockBackend only when a hold really starts or ends.
 * local_lock.c implements the backend on PostgreSQL's own lock manager.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_H
#define LOCKEXT_H

#include "postgres.h"

#include "pg_compat.h"

#include <time.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "nodes/pg_list.h"
#include "storage/lock.h"
#include "utils/timestamp.h"

/* Longest key accepted, in bytes of the database encoding. */
#define LOCKEXT_MAX_KEY_BYTES	1024

/*
 * Length of a session id (shared_locks_session_id), in hex digits: the
 * prefix of every owner value a backend writes to Redis.
 */
#define LOCKEXT_SESSION_ID_LEN 24

/*
 * Advisory lock tags whose last field is 1 or 2 belong to pg_advisory_*();
 * ours carry this value instead, so the two never collide ("lx").
 */
#define LOCKEXT_TAG_SPACE	0x6C78

/* Lock modes on the local lock: the scope is visible in pg_locks. */
#define LOCKEXT_XACT_LOCKMODE		ExclusiveLock
#define LOCKEXT_SESSION_LOCKMODE	AccessExclusiveLock

typedef enum DlockScope
{
	DLOCK_SCOPE_XACT,
	DLOCK_SCOPE_SESSION
} DlockScope;

/* Transaction-scoped holds taken in one subtransaction. */
typedef struct DlockSubHold
{
	SubTransactionId subid;
	int			count;
} DlockSubHold;

struct DlockBackend;
struct DlockEnding;
struct DlockLeaseInfo;

/*
 * One key this backend holds, in either or both scopes.  Lives in
 * TopMemoryContext; removed as soon as it has no hold left.
 */
typedef struct DlockEntry
{
	uint64		hash;			/* hash table key: 64-bit hash of the key */
	char	   *key;			/* the key, NUL-terminated */
	const struct DlockBackend *backend;	/* backend that granted it */
	int			keylen;
	int			session_holds;
	int			xact_holds;		/* sum of subs[].count */
	int			nsubs;
	int			maxsubs;
	bool		has_token;		/* false: no token could be drawn */
	bool		session_untracked;	/* no dlock_locks row: cap reached */
	bool		xact_untracked;
	DlockSubHold *subs;			/* ordered by subid, innermost last */
	dlist_node	xact_node;		/* in the registry's list while xact_holds */
	dlist_node	session_node;	/* in its list while session_holds */
	int64		token;
	TimestampTz acquired_at;
	TimestampTz lease_expires_at;	/* 0 when the backend has no lease */
	struct SharedLockRow *rows[2];	/* its rows by LOCKEXT_ROW_XACT/SESSION */
	void	   *backend_data;	/* the backend's own state of this hold */
} DlockEntry;

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

/*
 * A lock backend.  The registry calls acquire only when the entry holds no
 * lock in that scope yet (it may hold the other scope), and release only
 * when the last hold of a scope ends.
 */
typedef struct DlockBackend
{
	const char *name;

	/*
	 * Take the lock.  timeout_ms: 0 try once, -1 wait forever.  Returns
	 * false when the lock is busy after the timeout, with what the backend
	 * saw of the holder in *busy_detail (or NULL); may ERROR (55P03 on a
	 * timed-out wait, 57014 on cancel, 40P01 on deadlock).
	 */
	bool		(*acquire) (DlockEntry *entry, DlockScope scope,
							int64 timeout_ms, int64 lease_ms,
							char **busy_detail);

	/*
	 * Optional: take the transaction-scoped locks of entries[0..n), in
	 * this order (none held in that scope yet), all or none.  Returns
	 * false, with *failed the index of the key that stayed busy, after
	 * the timeout; after that and after an ERROR none of them is held.
	 */
	bool		(*acquire_many) (DlockEntry **entries, int n, int64 timeout_ms,
								 int64 lease_ms, int *failed,
								 char **busy_detail);

	/*
	 * The last hold of a scope ended.  xact_end: at transaction or
	 * subtransaction end, where the lock manager drops transaction-scoped
	 * local locks itself.  On the abort path this must not ERROR.
	 */
	void		(*release) (DlockEntry *entry, DlockScope scope, bool xact_end,
							bool is_abort);

	/* Is the scope's lock still really held (pg_advisory_unlock_all)? */
	bool		(*still_held) (DlockEntry *entry, DlockScope scope);

	/* Draw the fencing token of a fresh grant into entry. */
	void		(*draw_token) (DlockEntry *entry);

	/* Renew the lease; false when the lock was lost. */
	bool		(*extend) (DlockEntry *entry, int64 lease_ms);

	/* Fill *info for whoever holds the key now; false when it is free. */
	bool		(*holder) (const char *key, int keylen, uint64 hash,
						   DlockHolderInfo *info);

	/* PRE_COMMIT check of a transaction-scoped hold; may ERROR (40001). */
	void		(*verify) (DlockEntry *entry);

	/*
	 * Optional: verify of entries[0..n) (all of this backend) at once, in
	 * as few round trips as the backend can.
	 */
	void		(*verify_many) (DlockEntry **entries, int n);

	/*
	 * Optional: end many holds at once, as release() would one by one
	 * (the registry passes only entries of this backend).  Never ERRORs.
	 */
	void		(*release_many) (struct DlockEnding *ends, int n,
								 bool xact_end, bool is_abort);

	/* Optional: process exit, after every hold was released. */
	void		(*at_exit) (void);

	/*
	 * Optional: a statement ended; take in what arrived meanwhile (the
	 * answers to releases a COMMIT did not wait for), without waiting.
	 */
	void		(*statement_end) (void);

	/*
	 * Optional: what the lease keeper needs to renew the hold's lease;
	 * false when the hold has no lease to renew.
	 */
	bool		(*lease_info) (DlockEntry *entry, struct DlockLeaseInfo *info);
} DlockBackend;

/* A renewable hold, for the lease keeper (DlockBackend.lease_info). */
typedef struct DlockLeaseInfo
{
	char		ns[65];			/* the namespace it was taken in */
	char		owner[640];		/* the lock value */
	uint64		nodes_fp;		/* which node set (redis_nodes_fingerprint) */
	int64		lease_ms;
} DlockLeaseInfo;

/* A scope's last hold of an entry ended: for DlockBackend.release_many. */
typedef struct DlockEnding
{
	DlockEntry *entry;
	DlockScope	scope;
	struct SharedLockRow *row;	/* its row, releasing: the backend confirms */
} DlockEnding;

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
extern const DlockBackend *lockext_current_backend(void);


/* redis_backend.c (the Redis layers have their own header, redis.h) */
extern const DlockBackend redis_backend;

#endif							/* LOCKEXT_H */
