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

#include "lib/ilist.h"

#include "lease_board.h"
#include "shared_locks.h"

/* How many node sets the keeper renews on (the configured one first). */
#define KEEPER_MAX_SETS 8

struct KeeperBin;

/*
 * One renewable hold, as the keeper knows it: one chunk, its strings
 * (item.lockkey and the others) right after it, so that renewing it reads
 * one place in memory.
 */
typedef struct KeeperEntry
{
	KeeperItem	item;
	int			set;			/* its node set's place in the keeper's, or -1 */
	int			owner_len;		/* of the owner value's unique part */
	LeaseSlot  *slot;			/* its lease board slot; NULL: write the row */
	TimestampTz due;			/* when the keeper looks at it next */
	struct KeeperBin *bin;		/* in the due-queue (at due); NULL: not */
	dlist_node	node;			/* its place in the bin */
} KeeperEntry;

/* Called for each entry read anew (it may queue it). */
typedef void (*KeeperEntryFresh) (KeeperEntry *e);

extern void keeper_items_init(void);
extern bool keeper_items_refresh(bool whole, KeeperEntryFresh fresh);
extern void keeper_items_queue(KeeperEntry *e, TimestampTz due, int64 early_us);
extern void keeper_items_unqueue(KeeperEntry *e);
extern TimestampTz keeper_items_next_due(void);
extern int	keeper_items_take_due(TimestampTz now, KeeperEntry ***taken);
extern int	keeper_items_held_on(int set);
extern uint64 keeper_items_whole_reads(void);

#endif							/* LOCKEXT_KEEPER_ITEMS_H */
