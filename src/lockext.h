/*-------------------------------------------------------------------------
 *
 * lockext.h
 *	  The backend interface of lockext: the per-backend registry of held
 *	  locks, the operations every lock backend provides, and the GUCs.
 *
 * The SQL layer (sql_api.c) validates input and talks to the registry
 * (registry.c); the registry owns reentrancy, scopes and the transaction,
 * subtransaction and resource-owner callbacks, and calls a DlockBackend
 * only when a hold really starts or ends.  local_lock.c implements the
 * backend on PostgreSQL's own lock manager.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_H
#define LOCKEXT_H

#include "postgres.h"

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


/*
 * shared_area.c: the DSA area of lockext's shared tables, and their LWLock
 * tranche (needs shared_preload_libraries).
 */
extern void shared_area_install_hooks(void);
extern int	shared_area_tranche(void);
extern struct dsa_area *shared_area_get(void);
extern struct dsa_area *shared_area_attached(void);
extern void shared_area_require(const char *what);

/*
 * shared_locks.c: every hold and wait on this instance, in shared memory,
 * for the dlock_locks view.  One row per (backend, kind, key).
 */
#define LOCKEXT_ROW_XACT	0
#define LOCKEXT_ROW_SESSION	1
#define LOCKEXT_ROW_WAIT	2

typedef struct SharedLockKey
{
	int32		pid;
	int32		kind;			/* LOCKEXT_ROW_* */
	uint64		hash;
	uint64		seq;			/* the backend's count of rows: never reused */
} SharedLockKey;

/*
 * A row's life.  The release path ends a row through a pointer, with an
 * atomic write (no dshash call may run there): releasing while a Redis
 * release is unconfirmed, ended once it is (or there was none).  Ended
 * rows are deleted later where that is allowed: by their backend at its
 * next statement, or by the keeper when the backend is gone.  A row is
 * never reused, so a pointer to it stays valid until it is deleted, and
 * only an ended row (or one of a process that is gone) is deleted.
 */
#define LOCKEXT_ROW_LIVE		0
#define LOCKEXT_ROW_RELEASING	1
#define LOCKEXT_ROW_ENDED		2

typedef struct SharedLockRow
{
	SharedLockKey key;
	pg_atomic_uint32 life;		/* LOCKEXT_ROW_* */
	int64		released_us;	/* monotonic, when it stopped being live */
	Oid			dboid;
	Oid			userid;
	char		state;			/* 'h' held, 'w' waiting, 'l' lost */
	char		backend[12];
	bool		has_token;
	int64		token;
	TimestampTz since;			/* acquired_at, or the wait's start */
	TimestampTz lease_expires_at;	/* 0: no lease */
	int64		lease_until_us; /* the keeper's lease end, monotonic; 0: none */
	char		blocker_instance[64];	/* a remote holder, for a wait */
	int32		blocker_pid;
	uint64		proc_start;		/* with key.pid, the process that made it */
	/* renewable holds (the lease keeper's part) */
	uint64		nodes_fp;		/* 0: nothing to renew */
	int64		lease_ms;
	int64		renewals;
	int32		keylen;
	uint64		keytext;		/* dsa_pointer: key, ns, owner, each \0-ended */
} SharedLockRow;

/*
 * When the keeper renews a lease: before a third of it has passed, in a
 * window that opens when 17/24 of it is left (so many leases share one
 * command); it aims to wake when 33/48 is left.
 */
#define LOCKEXT_RENEW_LEFT_US(lease_ms)	((lease_ms) * 1000 * 17 / 24)
#define LOCKEXT_WAKE_LEFT_US(lease_ms)	((lease_ms) * 1000 * 33 / 48)

/* A renewable hold, as the keeper sees it. */
typedef struct KeeperItem
{
	SharedLockKey key;
	Oid			dboid;
	uint64		proc_start;		/* of the holder's process */
	uint64		nodes_fp;		/* the node set it was taken on */
	int64		lease_ms;
	TimestampTz lease_end;
	TimestampTz since;			/* acquired_at */
	int64		token;			/* 0: none */
	char	   *lockkey;		/* <ns>:lock:<key> */
	int			lockkey_len;
	char	   *keytext;		/* the key itself */
	char	   *ns;
	char	   *owner;
	bool		releasing;		/* released by its holder, not confirmed */
} KeeperItem;

/* Length of a session id (shared_locks_session_id), in hex digits. */
#define LOCKEXT_SESSION_ID_LEN 24

/* A wait of this instance's local queue, as an edge between sessions. */
typedef struct WaitEdge
{
	char		waiter[LOCKEXT_SESSION_ID_LEN + 1];
	char		holder[LOCKEXT_SESSION_ID_LEN + 1];
	int			waiter_pid;
	int			holder_pid;
	TimestampTz since;
	uint64		hash;
	char	   *key;
} WaitEdge;

/* Who a local waiter waits for (0: its wait is not live), see local_lock.c */
typedef int (*WaitBlockerFn) (void *arg, int waiter_pid, Oid dboid,
							  uint64 hash);

extern int	lockext_max_tracked_locks;
extern int	lockext_max_redis_locks;
extern const char *shared_locks_session_id(void);
extern int	shared_locks_wait_edges(Oid dboid, WaitBlockerFn blocker_of,
									void *arg, WaitEdge **edges);
extern void shared_locks_install_hooks(void);
extern void shared_locks_publish(DlockEntry *entry, DlockScope scope);
extern struct SharedLockRow *shared_locks_unpublish(DlockEntry *entry,
													DlockScope scope);
extern void shared_locks_release_confirmed(struct SharedLockRow *row);
extern void shared_locks_collect_ended(void);
extern void shared_locks_exit(void);
extern void shared_locks_wait_start(DlockEntry *entry,
									const char *blocker_instance,
									int blocker_pid);
extern int64 shared_locks_wait_end(void);
extern bool shared_locks_hold_state(DlockEntry *entry, DlockScope scope,
								   TimestampTz *lease_end,
								   int64 *lease_until_us, bool *lost);
extern int	shared_locks_renewable(uint64 nodes_fp, KeeperItem **items,
								   uint64 *gen);
extern uint64 shared_locks_renewable_gen(void);
extern void shared_locks_drop_orphan(const SharedLockKey *key,
									 uint64 proc_start);
extern int	shared_locks_sweep(bool (*gone) (int pid, uint64 start, void *arg),
							   void *arg, int64 stale_us, KeeperItem **items);
extern uint64 shared_locks_ended_count(void);
extern uint64 shared_locks_left_count(void);
extern void shared_locks_confirm(const SharedLockKey *key);
extern void shared_locks_renewed(const SharedLockKey *key, TimestampTz since,
								 TimestampTz lease_end, int64 lease_until_us,
								 bool lost);
extern uint64 shared_locks_scan(void (*fn) (const SharedLockRow *row,
											const char *key, int kind,
											void *arg), void *arg);

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

/*
 * keeper_state.c: what the keeper shares with backends and views: whether
 * it runs, its wake-up, the Redis nodes as it sees them, and the releases
 * handed over to it.
 */
#define LOCKEXT_MAX_NODE_STATUS 15	/* as many as lockext.redis_nodes takes */

typedef struct KeeperNodeStatus
{
	char		node[256];		/* the URL, password masked */
	char		state;			/* 'c' connected, 'o' connecting, 'd' not */
	int64		rtt_us;			/* last round trip; 0: none yet */
	uint64		errors;
	char		last_error[256];
	TimestampTz last_error_at;	/* 0: none */
	TimestampTz checked_at;
} KeeperNodeStatus;

extern void keeper_state_install_hooks(void);
extern void keeper_state_running(bool running);
extern int	keeper_state_pid(void);
extern void keeper_state_set_wake(TimestampTz wake_at);
extern void keeper_state_poke(TimestampTz due);
extern void keeper_state_publish_nodes(const KeeperNodeStatus *nodes, int n);
extern int	keeper_state_nodes(KeeperNodeStatus **nodes);
extern void keeper_state_adopt(uint64 set_fp);
extern bool keeper_state_adopted(uint64 set_fp);

/* liveness.c: is a holder's process there, and can it act? */
typedef enum HolderLiveness
{
	HOLDER_ACTIVE,
	HOLDER_STOPPED,				/* SIGSTOP, a debugger: cannot act now */
	HOLDER_GONE					/* exited, or its pid is another's now */
} HolderLiveness;

extern uint64 liveness_my_start(void);
extern HolderLiveness liveness_of(int pid, uint64 start);

/* views.c */
extern bool views_may_see_holder(const DlockHolderInfo *info);

/* keeper.c: the lease keeper (a background worker) */
extern void keeper_register(void);

/* redis_backend.c (the Redis layers have their own header, redis.h) */
extern const DlockBackend redis_backend;

/* registry.c */
extern void registry_init(void);
extern void registry_install_hooks(void);
extern uint64 registry_hash_key(const char *key, int keylen);
extern DlockEntry *registry_lookup(const char *key, int keylen);
extern DlockEntry *registry_acquire(const char *key, int keylen,
									DlockScope scope, int64 timeout_ms,
									int64 lease_ms, char **busy_detail);
extern int	registry_acquire_many(char **keys, const int *keylens, int n,
								  int64 timeout_ms, int64 lease_ms,
								  DlockEntry **entries, char **busy_detail);
extern bool registry_release_session(DlockEntry *entry);
extern void registry_republish(DlockEntry *entry);
extern int	registry_release_all_session(void);
extern int	registry_count(void);
extern void release_check_session_holds(void);
extern void registry_statement_end(void);
extern void registry_foreach(void (*fn) (DlockEntry *entry, void *arg),
							 void *arg);

/* local_lock.c: the advisory backend, and the local queue others share */
extern const DlockBackend advisory_backend;
extern void local_lock_init(void);
extern void local_lock_set_tag(LOCKTAG *tag, uint64 hash);
extern void lockext_report_busy(const char *key, uint64 hash, int64 timeout_ms,
								const char *busy_detail) pg_attribute_noreturn();
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

#endif							/* LOCKEXT_H */
