/*-------------------------------------------------------------------------
 *
 * lease_board.c
 *	  The lease ends the keeper renewed, in shared memory: one slot per
 *	  renewable hold, which the keeper writes without looking the hold's
 *	  row up.
 *
 * Renewing 100,000 leases, the keeper spent a third of its time finding
 * each renewed row in the shared lock table again (a dshash lookup, with
 * its partition lock and cache misses) to write the new lease end there.
 * Instead, the keeper gives each renewable row a slot here once, when it
 * first reads the row, and the row keeps the slot's number
 * (SharedLockRow.board); the keeper then writes each renewal into the
 * slot through a pointer.  Readers (the holder at COMMIT, the views, the
 * keeper after a restart) read the row, then its slot.
 *
 * The keeper alone assigns, writes and frees slots, so a slot needs no
 * lock: each is a seqlock (its version is odd while the keeper writes it).
 * A slot also says whose it is (the row's pid, process start and sequence
 * number, which no other row ever has), and a reader uses it only when
 * that is the row it read: a slot the keeper gave to another row since is
 * ignored, and the reader falls back to what the row itself says, which is
 * never later than the truth.  A reader that finds the slot being written
 * for too long (the keeper stopped mid-write) does the same.
 *
 * The slots come in chunks allocated in lockext's DSA area as needed,
 * found through a directory whose dsa_pointer the caller keeps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/pg_bitutils.h"
#include "utils/memutils.h"

#include "lease_board.h"

#define LEASE_BOARD_CHUNK	4096	/* slots in a chunk */
#define LEASE_BOARD_CHUNKS	4096	/* chunks at most: 16M slots */
/* A reader gives up on a slot still being written after this many looks. */
#define LEASE_BOARD_TRIES	1000

struct LeaseSlot
{
	pg_atomic_uint32 version;	/* odd while being written */
	LeaseBoardId id;
	LeaseBoardValue value;
};

typedef struct LeaseBoardDir
{
	dsa_pointer chunk[LEASE_BOARD_CHUNKS];
} LeaseBoardDir;

/* The keeper's view: the area, the directory, and which slots are used. */
static dsa_area *k_area = NULL;
static LeaseBoardDir *k_dir = NULL;
static LeaseSlot *k_chunk[LEASE_BOARD_CHUNKS];
static int	k_nchunks = 0;
static uint64 *k_used = NULL;	/* a bit per slot of the chunks */
static uint32 k_cursor = 0;		/* no free slot below this index */

/*
 * The keeper: attach to the board whose directory *dirp names, making it
 * if there is none.  Without memory for it, the board stays empty and
 * lease_board_assign() gives no slots.
 */
void
lease_board_keeper_attach(dsa_area *area, pg_atomic_uint64 *dirp)
{
	dsa_pointer dir = (dsa_pointer) pg_atomic_read_u64(dirp);
	int			c;

	if (k_area != NULL)
		return;
	if (!DsaPointerIsValid(dir))
	{
		dir = dsa_allocate_extended(area, sizeof(LeaseBoardDir),
									DSA_ALLOC_NO_OOM | DSA_ALLOC_ZERO);
		if (!DsaPointerIsValid(dir))
			return;
		pg_atomic_write_u64(dirp, (uint64) dir);
	}
	k_area = area;
	k_dir = dsa_get_address(area, dir);
	for (c = 0; c < LEASE_BOARD_CHUNKS && DsaPointerIsValid(k_dir->chunk[c]); c++)
		k_chunk[c] = dsa_get_address(area, k_dir->chunk[c]);
	k_nchunks = c;
	/* a bit per slot, growing chunk by chunk (more_used) */
	k_used = MemoryContextAllocZero(TopMemoryContext,
									Max(k_nchunks, 1) * (LEASE_BOARD_CHUNK / 64) * sizeof(uint64));
}

/* Room in k_used for the chunks there are. */
static void
more_used(int old_nchunks)
{
	size_t		per = (LEASE_BOARD_CHUNK / 64) * sizeof(uint64);

	if (k_nchunks <= Max(old_nchunks, 1))
		return;
	k_used = repalloc(k_used, k_nchunks * per);
	memset((char *) k_used + Max(old_nchunks, 1) * per, 0,
		   (k_nchunks - Max(old_nchunks, 1)) * per);
}

/* The keeper: every slot free again (it reads every row anew). */
void
lease_board_reset_used(void)
{
	if (k_used != NULL)
		memset(k_used, 0, Max(k_nchunks, 1) * (LEASE_BOARD_CHUNK / 64) * sizeof(uint64));
	k_cursor = 0;
}

static inline LeaseSlot *
slot_at(uint32 index)
{
	return &k_chunk[index / LEASE_BOARD_CHUNK][index % LEASE_BOARD_CHUNK];
}

/* The keeper's slot number slot (from 1), or NULL. */
LeaseSlot *
lease_board_slot(uint32 slot)
{
	if (slot == 0 || slot > (uint32) k_nchunks * LEASE_BOARD_CHUNK)
		return NULL;
	return slot_at(slot - 1);
}

static inline bool
same_id(const LeaseBoardId *a, const LeaseBoardId *b)
{
	return a->pid == b->pid && a->proc_start == b->proc_start && a->seq == b->seq;
}

/*
 * The keeper: take slot (a row's, from before) on again for id if it is
 * still id's; false when it is not (then assign a new one).
 */
bool
lease_board_adopt(uint32 slot, const LeaseBoardId *id)
{
	LeaseSlot  *s = lease_board_slot(slot);

	if (s == NULL || !same_id(&s->id, id))
		return false;
	k_used[(slot - 1) / 64] |= UINT64CONST(1) << ((slot - 1) % 64);
	return true;
}

/* Write s (its id too, unless id is NULL); the keeper is the only writer. */
static void
write_slot(LeaseSlot *s, const LeaseBoardId *id, const LeaseBoardValue *value)
{
	uint32		v = pg_atomic_read_u32(&s->version);

	pg_atomic_write_u32(&s->version, v + 1);
	pg_write_barrier();
	if (id != NULL)
		s->id = *id;
	s->value = *value;
	pg_write_barrier();
	pg_atomic_write_u32(&s->version, v + 2);
}

/*
 * The keeper: a free slot for id, written with value; its number (from
 * 1), or 0 when there is no memory for one (the caller then writes
 * renewals into the row itself).
 */
uint32
lease_board_assign(const LeaseBoardId *id, const LeaseBoardValue *value)
{
	uint32		nslots;
	uint32		w;

	if (k_dir == NULL)
		return 0;
	for (;;)
	{
		nslots = (uint32) k_nchunks * LEASE_BOARD_CHUNK;
		for (w = k_cursor / 64; w < nslots / 64; w++)
			if (k_used[w] != ~UINT64CONST(0))
			{
				uint32		index = w * 64 + pg_rightmost_one_pos64(~k_used[w]);

				k_used[w] |= UINT64CONST(1) << (index % 64);
				k_cursor = index + 1;
				write_slot(slot_at(index), id, value);
				return index + 1;
			}
		k_cursor = nslots;
		/* every slot is used: one more chunk */
		if (k_nchunks == LEASE_BOARD_CHUNKS)
			return 0;
		k_dir->chunk[k_nchunks] =
			dsa_allocate_extended(k_area, LEASE_BOARD_CHUNK * sizeof(LeaseSlot),
								  DSA_ALLOC_NO_OOM | DSA_ALLOC_ZERO);
		if (!DsaPointerIsValid(k_dir->chunk[k_nchunks]))
			return 0;
		k_chunk[k_nchunks] = dsa_get_address(k_area, k_dir->chunk[k_nchunks]);
		k_nchunks++;
		more_used(k_nchunks - 1);
	}
}

/* The keeper: slot is free for another row. */
void
lease_board_free(uint32 slot)
{
	if (slot == 0 || slot > (uint32) k_nchunks * LEASE_BOARD_CHUNK)
		return;
	k_used[(slot - 1) / 64] &= ~(UINT64CONST(1) << ((slot - 1) % 64));
	k_cursor = Min(k_cursor, slot - 1);
}

/* The keeper renewed the hold of s: its new lease end. */
void
lease_board_write(LeaseSlot *s, TimestampTz lease_end, int64 lease_until_us)
{
	LeaseBoardValue value = s->value;

	value.lease_end = lease_end;
	value.lease_until_us = lease_until_us;
	value.renewals++;
	write_slot(s, NULL, &value);
}

/*
 * What the keeper wrote in slot (from 1) of the board whose directory is
 * dir, if the slot is id's; false when it is not, or cannot be read now.
 * May attach a DSA segment (palloc, ERROR): not for the release path.
 */
bool
lease_board_read(dsa_area *area, dsa_pointer dir, uint32 slot,
				 const LeaseBoardId *id, LeaseBoardValue *value)
{
	LeaseBoardDir *d;
	dsa_pointer chunk;
	LeaseSlot  *s;
	int			tries;

	if (slot == 0 || !DsaPointerIsValid(dir) ||
		slot > LEASE_BOARD_CHUNKS * LEASE_BOARD_CHUNK)
		return false;
	d = dsa_get_address(area, dir);
	chunk = d->chunk[(slot - 1) / LEASE_BOARD_CHUNK];
	if (!DsaPointerIsValid(chunk))
		return false;
	s = (LeaseSlot *) dsa_get_address(area, chunk) + (slot - 1) % LEASE_BOARD_CHUNK;
	for (tries = 0; tries < LEASE_BOARD_TRIES; tries++)
	{
		uint32		v = pg_atomic_read_u32(&s->version);
		LeaseBoardId sid;
		LeaseBoardValue sval;

		if (v & 1)
		{
			pg_spin_delay();
			continue;
		}
		pg_read_barrier();
		sid = s->id;
		sval = s->value;
		pg_read_barrier();
		if (pg_atomic_read_u32(&s->version) != v)
			continue;
		if (!same_id(&sid, id))
			return false;
		*value = sval;
		return true;
	}
	return false;
}
