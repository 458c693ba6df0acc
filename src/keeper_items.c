/*-------------------------------------------------------------------------
 *
 * keeper_items.c
 *	  The lease keeper's copy of the renewable holds, kept up to date one
 *	  changed row at a time, and the queue of when each falls due.
 *
 * The keeper reads the shared table whole once, and again only when its
 * node sets changed or it fell behind the ring of changes by more than
 * the ring holds; otherwise each renewable row that came, changed or went
 * since the last look is read again alone (shared_locks.c puts its key in
 * the ring).  Each hold waits in a binary heap ordered by when the keeper
 * must look at it next (each entry knows its place, so a hold that goes
 * leaves it in O(log n)), so a round costs what falls due, not what is
 * held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "keeper_items.h"

/* Keys read from the ring at a time. */
#define CHANGES_BATCH 1024

static MemoryContext entries_cxt = NULL;
static HTAB *entries = NULL;
/* the due-queue: heap[0] is due first; each slot keeps its due time, so
 * that ordering reads the array alone */
typedef struct HeapSlot
{
	TimestampTz due;
	KeeperEntry *e;
} HeapSlot;
static HeapSlot *heap = NULL;
static int	nheap = 0;
static int	heap_room = 0;
static uint64 read_pos = 0;		/* changes read (shared_locks_changes) */
static int	held_on[KEEPER_MAX_SETS];
static uint64 whole_reads = 0;

static inline void
heap_put(int at, HeapSlot slot)
{
	heap[at] = slot;
	slot.e->heap_index = at;
}

/* Move heap[at] up or down to its place. */
static void
heap_settle(int at)
{
	HeapSlot	slot = heap[at];

	while (at > 0 && heap[(at - 1) / 2].due > slot.due)
	{
		heap_put(at, heap[(at - 1) / 2]);
		at = (at - 1) / 2;
	}
	for (;;)
	{
		int			child = 2 * at + 1;

		if (child >= nheap)
			break;
		if (child + 1 < nheap && heap[child + 1].due < heap[child].due)
			child++;
		if (heap[child].due >= slot.due)
			break;
		heap_put(at, heap[child]);
		at = child;
	}
	heap_put(at, slot);
}

void
keeper_items_init(void)
{
	entries_cxt = AllocSetContextCreate(TopMemoryContext, "lockext keeper holds",
										ALLOCSET_DEFAULT_SIZES);
}

static void
start_empty(void)
{
	HASHCTL		hctl;

	MemoryContextReset(entries_cxt);
	hctl.keysize = sizeof(SharedLockKey);
	hctl.entrysize = sizeof(KeeperEntry);
	hctl.hcxt = entries_cxt;
	entries = hash_create("lockext keeper holds", 1024, &hctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	heap_room = 1024;
	heap = MemoryContextAlloc(entries_cxt, heap_room * sizeof(HeapSlot));
	nheap = 0;
	memset(held_on, 0, sizeof(held_on));
}

/* Take it in, counted on its set (fresh() says which, and may queue it). */
static void
take(KeeperEntry *e, const KeeperItem *it, KeeperEntryFresh fresh)
{
	e->item = *it;
	e->set = -1;
	e->queued = false;
	fresh(e);
	if (e->set >= 0 && e->set < KEEPER_MAX_SETS)
		held_on[e->set]++;
}

/* Let go of what e holds (not the entry itself). */
static void
let_go(KeeperEntry *e)
{
	keeper_items_unqueue(e);
	if (e->set >= 0 && e->set < KEEPER_MAX_SETS)
		held_on[e->set]--;
	pfree(e->item.lockkey);		/* its strings are one chunk */
}

static void
read_whole(KeeperEntryFresh fresh)
{
	MemoryContext oldcxt;
	KeeperItem *items;
	int			n;
	int			i;

	start_empty();
	oldcxt = MemoryContextSwitchTo(entries_cxt);
	/* changes from here on are read after: reading one twice is harmless */
	read_pos = shared_locks_renewable_gen();
	n = shared_locks_renewable(&items);
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < n; i++)
	{
		bool		found;
		KeeperEntry *e = hash_search(entries, &items[i].key, HASH_ENTER, &found);

		take(e, &items[i], fresh);
	}
	pfree(items);
	whole_reads++;
	elog(DEBUG1, "lockext lease keeper read %d renewable holds whole", n);
}

/*
 * Bring the copy up to date: whole (or on first use, or fallen behind),
 * else the rows changed since the last look.  Returns true when changes
 * are left to read (one being written): look again soon.
 */
bool
keeper_items_refresh(bool whole, KeeperEntryFresh fresh)
{
	SharedLockKey keys[CHANGES_BATCH];
	int			n;

	if (whole || entries == NULL)
	{
		read_whole(fresh);
		return false;
	}
	while ((n = shared_locks_changes(&read_pos, keys, CHANGES_BATCH)) != 0)
	{
		int			i;

		if (n < 0)
		{
			ereport(LOG,
					(errmsg("lockext lease keeper fell behind the changes of renewable holds, and reads them all again"),
					 errdetail("More than %d holds were taken, changed or released since it last looked.",
							   LOCKEXT_CHANGE_RING)));
			read_whole(fresh);
			return false;
		}
		for (i = 0; i < n; i++)
		{
			KeeperItem	it;
			MemoryContext oldcxt = MemoryContextSwitchTo(entries_cxt);
			bool		renewable = shared_locks_renewable_row(&keys[i], &it);
			KeeperEntry *e;
			bool		found;

			MemoryContextSwitchTo(oldcxt);
			e = hash_search(entries, &keys[i], renewable ? HASH_ENTER : HASH_FIND,
							&found);
			if (found)
				let_go(e);
			if (renewable)
				take(e, &it, fresh);
			else if (found)
				hash_search(entries, &keys[i], HASH_REMOVE, NULL);
		}
		if (n < CHANGES_BATCH)
			break;
	}
	return read_pos < shared_locks_renewable_gen();
}

/* Look at e again at due.  May ERROR (out of memory). */
void
keeper_items_queue(KeeperEntry *e, TimestampTz due)
{
	HeapSlot	slot = {due, e};

	e->due = due;
	if (e->queued)
	{
		heap[e->heap_index].due = due;
		heap_settle(e->heap_index);
		return;
	}
	if (nheap == heap_room)
	{
		heap_room *= 2;
		heap = repalloc(heap, heap_room * sizeof(HeapSlot));
	}
	e->queued = true;
	heap_put(nheap++, slot);
	heap_settle(nheap - 1);
}

/* The entry due first, left queued; NULL when none is. */
KeeperEntry *
keeper_items_first(void)
{
	return nheap > 0 ? heap[0].e : NULL;
}

void
keeper_items_unqueue(KeeperEntry *e)
{
	int			at = e->heap_index;

	if (!e->queued)
		return;
	e->queued = false;
	if (--nheap > at)
	{
		heap_put(at, heap[nheap]);
		heap_settle(at);
	}
}

/* How many holds on the keeper's node set number set. */
int
keeper_items_held_on(int set)
{
	return held_on[set];
}

/* How often the table was read whole (for tests: the keeper's log). */
uint64
keeper_items_whole_reads(void)
{
	return whole_reads;
}
