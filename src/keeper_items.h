/*-------------------------------------------------------------------------
 *
 * keeper_items.h
 *	  The lease keeper's copy of the renewable holds and their due-queue
 *	  (keeper_items.c); used by keeper.c alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_KEEPER_ITEMS_H
#define LOCKEXT_KEEPER_ITEMS_H

#include "shared_locks.h"

/* How many node sets the keeper renews on (the configured one first). */
#define KEEPER_MAX_SETS 8

/* One renewable hold, as the keeper knows it. */
typedef struct KeeperEntry
{
	SharedLockKey key;			/* the hash key: the row's */
	KeeperItem	item;
	int			set;			/* its node set's place in the keeper's, or -1 */
	int			owner_len;		/* of the owner value's unique part */
	TimestampTz due;			/* when the keeper looks at it next */
	bool		queued;			/* in the due-queue (at due) */
	int			heap_index;		/* its place there */
} KeeperEntry;

/* Called for each entry read anew (it may queue it). */
typedef void (*KeeperEntryFresh) (KeeperEntry *e);

extern void keeper_items_init(void);
extern bool keeper_items_refresh(bool whole, KeeperEntryFresh fresh);
extern void keeper_items_queue(KeeperEntry *e, TimestampTz due);
extern KeeperEntry *keeper_items_first(void);
extern void keeper_items_unqueue(KeeperEntry *e);
extern int	keeper_items_held_on(int set);
extern uint64 keeper_items_whole_reads(void);

#endif							/* LOCKEXT_KEEPER_ITEMS_H */
