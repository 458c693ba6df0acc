/*-------------------------------------------------------------------------
 *
 * shared_locks.h
 *	  The interface of shared_locks.c: every hold and wait on this instance, in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_SHARED_LOCKS_H
#define LOCKEXT_SHARED_LOCKS_H

#include "lockext.h"

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
	pg_atomic_uint32 board;		/* its lease board slot (the keeper's); 0: none */
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
/*
 * Slots in the ring of changed renewable rows the keeper reads (32 bytes
 * each); a keeper that falls further behind reads the whole table again.
 */
#define LOCKEXT_CHANGE_RING 32768

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
	uint32		board;			/* its lease board slot; 0: none */
	char	   *lockkey;		/* <ns>:lock:<key> */
	int			lockkey_len;
	char	   *keytext;		/* the key itself */
	char	   *ns;
	char	   *owner;
} KeeperItem;


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
extern bool shared_locks_holder_gone_local(const char *session_id,
										   const char *key);
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
extern int	shared_locks_renewable(KeeperItem **items);
extern uint64 shared_locks_renewable_gen(void);
extern int	shared_locks_changes(uint64 *pos, SharedLockKey *keys, int max);
extern bool shared_locks_renewable_row(const SharedLockKey *key, KeeperItem *it);
extern void shared_locks_drop_orphan(const SharedLockKey *key,
									 uint64 proc_start);
extern int	shared_locks_sweep(bool (*gone) (int pid, uint64 start, void *arg),
							   void *arg, int64 stale_us, KeeperItem **items);
extern uint64 shared_locks_ended_count(void);
extern uint64 shared_locks_left_count(void);
extern void shared_locks_ask_sweep(void);
extern uint64 shared_locks_asked_count(void);
extern void shared_locks_confirm(const SharedLockKey *key);
extern void shared_locks_renewed(const SharedLockKey *key, TimestampTz since,
								 TimestampTz lease_end, int64 lease_until_us,
								 bool lost);
extern void shared_locks_row_lease(const SharedLockRow *row,
								   TimestampTz *lease_end,
								   int64 *lease_until_us, int64 *renewals);
extern uint64 shared_locks_scan(void (*fn) (const SharedLockRow *row,
											const char *key, int kind,
											void *arg), void *arg);

#endif							/* LOCKEXT_SHARED_LOCKS_H */
