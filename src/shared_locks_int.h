/*-------------------------------------------------------------------------
 *
 * shared_locks_int.h
 *	  What the two halves of the shared lock table share: the table itself
 *	  and its bookkeeping (shared_locks.c, the backends' side) and what the
 *	  lease keeper reads and finishes there (keeper_rows.c).  Not for other
 *	  modules: they use lockext.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_SHARED_LOCKS_INT_H
#define LOCKEXT_SHARED_LOCKS_INT_H

#include "lib/dshash.h"
#include "utils/dsa.h"

#include "lockext_base.h"
#include "shared_locks.h"

typedef struct SharedLocksCtl
{
	LWLock		lock;			/* protects table */
	dshash_table_handle table;	/* InvalidDsaPointer until first use */
	pg_atomic_uint64 rows;		/* rows in the table */
	pg_atomic_uint64 renewable_rows;	/* of them, rows of Redis holds */
	pg_atomic_uint64 missing;	/* holds and waits not in it (cap reached) */
	pg_atomic_uint64 renewable_gen; /* changes[] slots claimed so far */
	pg_atomic_uint64 ended;		/* rows releasing or ended, not yet deleted */
	pg_atomic_uint64 left;		/* bumped by an exit that leaves rows behind */
	pg_atomic_uint64 asked;		/* bumped when a release could not be sent */
	pg_atomic_uint64 board;		/* dsa_pointer: the lease board's directory */
	pg_atomic_uint64 keeper_pos;	/* changes the keeper has read */
	/*
	 * The keys of renewable rows that came, changed or went, for the keeper
	 * to read again (a ring: renewable_gen counts the slots ever claimed; a
	 * slot's seq is its claim's number plus one once its key is written).
	 */
	struct
	{
		pg_atomic_uint64 seq;
		SharedLockKey key;
	}			changes[LOCKEXT_CHANGE_RING];
} SharedLocksCtl;

extern SharedLocksCtl *shared_locks_ctl;
extern dsa_area *shared_locks_dsa;
extern dshash_table *shared_locks_table;

extern bool shared_locks_attach(void);
extern void shared_locks_count_gone(const SharedLockRow *row);
extern void shared_locks_remove_row(SharedLockRow *row);

#endif							/* LOCKEXT_SHARED_LOCKS_INT_H */
