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
 * the ring).
 *
 * The due-queue keeps holds in bins of a millisecond of due time, each a
 * list, with a small heap of the bins: queueing, unqueueing and taking a
 * hold cost O(1) and touch only the hold and its neighbours, and a round
 * costs what falls due, not what is held.  (A heap of the holds themselves
 * cost 17 levels of cache misses per renewal at 100,000 holds.)  Holds
 * renewed together fall due together, in one bin.  A bin may be taken
 * early, by as much as every hold in it allows (its early_us): a renewal
 * window opens a little before the keeper aims to renew, so that holds
 * that fall due close together share one command.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "keeper_items.h"

/* Keys read from the ring at a time. */
#define CHANGES_BATCH 1024
/* Width of a bin of the due-queue. */
#define BIN_US 1000

typedef struct KeeperBin
{
	int64		number;			/* the hash key: due / BIN_US */
	int64		early_us;		/* the least any hold in it may be taken early */
	int			count;
	dlist_head	list;
} KeeperBin;

/* The hash of holds: each points to its entry, a chunk of its own. */
typedef struct EntryRef
{
	SharedLockKey key;
	KeeperEntry *e;
} EntryRef;

static MemoryContext entries_cxt = NULL;
static HTAB *entries = NULL;
static HTAB *bins = NULL;
static KeeperBin *last_bin = NULL;	/* the bin queued to last */
static int64 *bin_heap = NULL;	/* bin numbers; [0] is the earliest */
static int	nbins = 0;
static int	bin_room = 0;
static uint64 read_pos = 0;		/* changes read (shared_locks_changes) */
static int	held_on[KEEPER_MAX_SETS];
static uint64 whole_reads = 0;

/* The heap of bin numbers: push one, and pop the earliest. */
static void
bin_heap_push(int64 number)
{
	int			at;

	if (nbins == bin_room)
	{
		bin_room *= 2;
		bin_heap = repalloc(bin_heap, bin_room * sizeof(int64));
	}
	for (at = nbins++; at > 0 && bin_heap[(at - 1) / 2] > number; at = (at - 1) / 2)
		bin_heap[at] = bin_heap[(at - 1) / 2];
	bin_heap[at] = number;
}

static void
bin_heap_pop(void)
{
	int64		last = bin_heap[--nbins];
	int			at = 0;

	for (;;)
	{
		int			child = 2 * at + 1;

		if (child >= nbins)
			break;
		if (child + 1 < nbins && bin_heap[child + 1] < bin_heap[child])
			child++;
		if (bin_heap[child] >= last)
			break;
		bin_heap[at] = bin_heap[child];
		at = child;
	}
	if (nbins > 0)
		bin_heap[at] = last;
}

/* The earliest bin, popped and removed if it is empty; NULL when none. */
static KeeperBin *
first_bin(void)
{
	while (nbins > 0)
	{
		KeeperBin  *bin = hash_search(bins, &bin_heap[0], HASH_FIND, NULL);

		if (bin != NULL && bin->count > 0)
			return bin;
		bin_heap_pop();
		if (bin != NULL)
		{
			hash_search(bins, &bin->number, HASH_REMOVE, NULL);
			last_bin = NULL;
		}
	}
	return NULL;
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
	hctl.entrysize = sizeof(EntryRef);
	hctl.hcxt = entries_cxt;
	entries = hash_create("lockext keeper holds", 1024, &hctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	hctl.keysize = sizeof(int64);
	hctl.entrysize = sizeof(KeeperBin);
	bins = hash_create("lockext keeper bins", 256, &hctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	last_bin = NULL;
	bin_room = 256;
	bin_heap = MemoryContextAlloc(entries_cxt, bin_room * sizeof(int64));
	nbins = 0;
	memset(held_on, 0, sizeof(held_on));
}

/*
 * An entry for it (whose strings are one chunk, lockkey first), its
 * strings copied right after it; counted on its set (fresh() says which,
 * and may queue it).
 */
static KeeperEntry *
make_entry(const KeeperItem *it, KeeperEntryFresh fresh)
{
	const char *base = it->lockkey;
	size_t		len = (it->owner + strlen(it->owner) + 1) - base;
	KeeperEntry *e = MemoryContextAlloc(entries_cxt, sizeof(KeeperEntry) + len);
	char	   *p = (char *) (e + 1);

	memcpy(p, base, len);
	e->item = *it;
	e->item.lockkey = p;
	e->item.keytext = p + (it->keytext - base);
	e->item.ns = p + (it->ns - base);
	e->item.owner = p + (it->owner - base);
	e->slot = lease_board_slot(it->board);
	e->set = -1;
	e->bin = NULL;
	fresh(e);
	if (e->set >= 0 && e->set < KEEPER_MAX_SETS)
		held_on[e->set]++;
	return e;
}

/* Let go of e (its board slot stays the caller's to free). */
static void
let_go(KeeperEntry *e)
{
	keeper_items_unqueue(e);
	if (e->set >= 0 && e->set < KEEPER_MAX_SETS)
		held_on[e->set]--;
	pfree(e);
}

static void
read_whole(KeeperEntryFresh fresh)
{
	KeeperItem *items;
	int			n;
	int			i;

	start_empty();
	/* changes from here on are read after: reading one twice is harmless */
	read_pos = shared_locks_renewable_gen();
	n = shared_locks_renewable(&items);
	for (i = 0; i < n; i++)
	{
		EntryRef   *ref = hash_search(entries, &items[i].key, HASH_ENTER, NULL);

		ref->e = make_entry(&items[i], fresh);
		pfree(items[i].lockkey);
	}
	pfree(items);
	whole_reads++;
	elog(DEBUG1, "lockext lease keeper read %d renewable holds whole", n);
}

/* Row key changed: read it again. */
static void
read_changed(const SharedLockKey *key, KeeperEntryFresh fresh)
{
	KeeperItem	it;
	bool		renewable = shared_locks_renewable_row(key, &it);
	EntryRef   *ref = hash_search(entries, key, HASH_FIND, NULL);
	uint32		old_board = 0;

	if (ref != NULL)
	{
		old_board = ref->e->item.board;
		let_go(ref->e);
	}
	if (renewable)
	{
		if (ref == NULL)
			ref = hash_search(entries, key, HASH_ENTER, NULL);
		ref->e = make_entry(&it, fresh);
		pfree(it.lockkey);
	}
	else if (ref != NULL)
		hash_search(entries, key, HASH_REMOVE, NULL);
	/* the row kept its slot when it is still renewable (adopted) */
	if (old_board != 0 && (!renewable || it.board != old_board))
		lease_board_free(old_board);
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
			read_changed(&keys[i], fresh);
		if (n < CHANGES_BATCH)
			break;
	}
	return read_pos < shared_locks_renewable_gen();
}

/*
 * Look at e again at due, or as much as early_us before when that lets
 * it share a command.  May ERROR (out of memory).
 */
void
keeper_items_queue(KeeperEntry *e, TimestampTz due, int64 early_us)
{
	int64		number = due / BIN_US;
	KeeperBin  *bin = last_bin;

	keeper_items_unqueue(e);
	if (bin == NULL || bin->number != number)
	{
		bool		found;

		bin = hash_search(bins, &number, HASH_ENTER, &found);
		if (!found)
		{
			bin->early_us = PG_INT64_MAX;
			bin->count = 0;
			dlist_init(&bin->list);
			bin_heap_push(number);
		}
		last_bin = bin;
	}
	dlist_push_tail(&bin->list, &e->node);
	bin->count++;
	bin->early_us = Min(bin->early_us, Max(early_us, 0));
	e->bin = bin;
	e->due = due;
}

void
keeper_items_unqueue(KeeperEntry *e)
{
	if (e->bin == NULL)
		return;
	dlist_delete(&e->node);
	e->bin->count--;
	e->bin = NULL;
}

/* When the keeper must look next (PG_INT64_MAX: nothing is queued). */
TimestampTz
keeper_items_next_due(void)
{
	KeeperBin  *bin = first_bin();

	return bin != NULL ? (bin->number + 1) * BIN_US : PG_INT64_MAX;
}

/*
 * Take out of the queue every hold due by now (or whose bin may be taken
 * early by now); *taken is a palloc'd array of them.  Returns how many.
 */
int
keeper_items_take_due(TimestampTz now, KeeperEntry ***taken)
{
	KeeperBin  *bin;
	int			n = 0;
	int			room = 64;

	*taken = palloc(room * sizeof(KeeperEntry *));
	while ((bin = first_bin()) != NULL &&
		   (bin->number + 1) * BIN_US - bin->early_us <= now)
	{
		dlist_mutable_iter iter;

		dlist_foreach_modify(iter, &bin->list)
		{
			KeeperEntry *e = dlist_container(KeeperEntry, node, iter.cur);

			if (n == room)
			{
				room *= 2;
				*taken = repalloc(*taken, room * sizeof(KeeperEntry *));
			}
			e->bin = NULL;
			(*taken)[n++] = e;
		}
		bin_heap_pop();
		hash_search(bins, &bin->number, HASH_REMOVE, NULL);
		last_bin = NULL;
	}
	return n;
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
