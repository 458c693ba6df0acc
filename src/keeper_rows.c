/*-------------------------------------------------------------------------
 *
 * keeper_rows.c
 *	  The lease keeper's side of the shared lock table: the holds it
 *	  renews, the rows it sweeps (what holders that are gone left, releases
 *	  a live holder never saw confirmed), and what it writes back (lease
 *	  ends, lost holds).
 *
 * The keeper reads copies (KeeperItem) and never keeps a pointer into the
 * table; it deletes only rows of processes that are gone, whose pointers
 * nobody holds any more (see shared_locks.c on a row's life).  Each
 * renewable row it reads gets a slot of the lease board (lease_board.c),
 * where the keeper writes that row's renewals without looking it up
 * again; the row keeps the slot's number, and shared_locks_row_lease()
 * reads both.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "utils/builtins.h"
#include "utils/dsa.h"

#include "lease_board.h"
#include "lockext_base.h"
#include "shared_locks.h"
#include "shared_locks_int.h"

static void fill_item(KeeperItem *it, SharedLockRow *row);

/* Is row a hold the keeper renews (live, held, on Redis)? */
static inline bool
row_renewable(SharedLockRow *row)
{
	return pg_atomic_read_u32(&row->life) == LOCKEXT_ROW_LIVE &&
		row->state == 'h' && row->nodes_fp != 0;
}

static inline LeaseBoardId
row_id(const SharedLockRow *row)
{
	LeaseBoardId id;

	id.pid = row->key.pid;
	id.proc_start = row->proc_start;
	id.seq = row->key.seq;
	return id;
}

static inline uint32
row_board(const SharedLockRow *row)
{
	return pg_atomic_read_u32(unconstify(pg_atomic_uint32 *, &row->board));
}

/*
 * A row's lease: its own, or what the keeper wrote in its board slot since
 * (the later of the two: each is a lease end the holder really got); and
 * how often the keeper renewed it.  May attach a DSA segment: not for the
 * release path.
 */
void
shared_locks_row_lease(const SharedLockRow *row, TimestampTz *lease_end,
					   int64 *lease_until_us, int64 *renewals)
{
	LeaseBoardId id = row_id(row);
	LeaseBoardValue v;

	*lease_end = row->lease_expires_at;
	if (lease_until_us)
		*lease_until_us = row->lease_until_us;
	if (renewals)
		*renewals = row->renewals;
	if (!lease_board_read(shared_locks_dsa,
						  (dsa_pointer) pg_atomic_read_u64(&shared_locks_ctl->board),
						  row_board(row), &id, &v))
		return;
	*lease_end = Max(*lease_end, v.lease_end);
	if (lease_until_us)
		*lease_until_us = Max(*lease_until_us, v.lease_until_us);
	if (renewals)
		*renewals += v.renewals;
}

/*
 * The keeper: the board slot of the row it just read into it (locked):
 * the row's own if it is still the row's (it->board set), else a new one,
 * whose number the row then keeps (an atomic write: a shared lock on the
 * row is enough).
 */
static void
give_slot(SharedLockRow *row, KeeperItem *it)
{
	LeaseBoardId id = row_id(row);
	LeaseBoardValue v = {it->lease_end, row->lease_until_us, 0};

	if (it->board != 0)
		return;
	it->board = lease_board_assign(&id, &v);
	pg_atomic_write_u32(&row->board, it->board);
}

/* The keeper: the row's slot, into it->board, if it is still the row's. */
static void
adopt_slot(SharedLockRow *row, KeeperItem *it)
{
	LeaseBoardId id = row_id(row);

	if (lease_board_adopt(row_board(row), &id))
		it->board = row_board(row);
}

/*
 * The keeper: every row it renews, as palloc'd copies in items (it reads
 * shared_locks_renewable_gen() first, and the changes after).  The keeper
 * decides which are due and whose holder still beats.
 */
int
shared_locks_renewable(KeeperItem **items)
{
	dshash_seq_status status;
	SharedLockRow *row;
	int			n = 0;
	int			room = 64;
	int			i;

	*items = palloc(room * sizeof(KeeperItem));
	if (!shared_locks_attach())
		return 0;
	lease_board_keeper_attach(shared_locks_dsa, &shared_locks_ctl->board);
	/* every row keeps its slot if the slot is still its own... */
	lease_board_reset_used();
	dshash_seq_init(&status, shared_locks_table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		if (!row_renewable(row))
			continue;
		if (n == room)
		{
			room *= 2;
			*items = repalloc(*items, room * sizeof(KeeperItem));
		}
		fill_item(&(*items)[n], row);
		adopt_slot(row, &(*items)[n++]);
	}
	dshash_seq_term(&status);
	/* ... and only then do the others get one of the rest */
	for (i = 0; i < n; i++)
	{
		KeeperItem *it = &(*items)[i];

		if (it->board != 0)
			continue;
		row = dshash_find(shared_locks_table, &it->key, false);
		if (row == NULL)
			continue;
		if (row_renewable(row))
			give_slot(row, it);
		dshash_release_lock(shared_locks_table, row);
	}
	return n;
}

/*
 * How many changes of renewable rows there have been (it grows whenever
 * a renewable row comes, changes or goes): where the keeper's reading of
 * the ring starts after it read the whole table.
 */
uint64
shared_locks_renewable_gen(void)
{
	return shared_locks_ctl ? pg_atomic_read_u64(&shared_locks_ctl->renewable_gen) : 0;
}

/*
 * The keeper: the keys of the renewable rows changed since change *pos,
 * at most max of them, into keys; *pos moves past them.  Stops early at a
 * change still being written (the caller looks again soon).  Returns how
 * many, or -1 when the ring no longer holds them all (the keeper fell
 * behind by more than LOCKEXT_CHANGE_RING: it reads the whole table).
 */
int
shared_locks_changes(uint64 *pos, SharedLockKey *keys, int max)
{
	uint64		head = shared_locks_renewable_gen();
	int			n = 0;

	if (head - *pos > LOCKEXT_CHANGE_RING)
		return -1;
	while (*pos < head && n < max)
	{
		int			slot = (int) (*pos % LOCKEXT_CHANGE_RING);
		pg_atomic_uint64 *seq = &shared_locks_ctl->changes[slot].seq;
		uint64		first = pg_atomic_read_u64(seq);

		if (first == 0 || first < *pos + 1)
			break;				/* being written */
		if (first > *pos + 1)
			return -1;			/* written over: fallen behind */
		pg_read_barrier();
		keys[n] = shared_locks_ctl->changes[slot].key;
		pg_read_barrier();
		if (pg_atomic_read_u64(seq) != first)
			return -1;			/* written over while read */
		n++;
		(*pos)++;
	}
	/* for note_change(): how far behind the keeper is */
	pg_atomic_write_u64(&shared_locks_ctl->keeper_pos, *pos);
	return n;
}

/*
 * The keeper: row key as an item, when it is a renewable hold still held
 * (false: gone, released, lost, or not one the keeper renews).
 */
bool
shared_locks_renewable_row(const SharedLockKey *key, KeeperItem *it)
{
	SharedLockRow *row;
	bool		renewable;

	if (!shared_locks_attach())
		return false;
	row = dshash_find(shared_locks_table, key, false);
	if (row == NULL)
		return false;
	renewable = row_renewable(row);
	if (renewable)
	{
		lease_board_keeper_attach(shared_locks_dsa, &shared_locks_ctl->board);
		fill_item(it, row);
		adopt_slot(row, it);
		give_slot(row, it);
	}
	dshash_release_lock(shared_locks_table, row);
	return renewable;
}

/*
 * The keeper's sweep, when rows were ended or holders may be gone: rows
 * of processes that are gone (gone() says so) are removed, and those that
 * may still hold a Redis lock (live or releasing renewable rows) are
 * first copied into *items for the keeper to release (it then calls
 * shared_locks_drop_orphan); releasing rows of live processes older than
 * stale_us are copied too, for the keeper to send again (their backend may
 * never read the answer; shared_locks_confirm then).  Returns how many
 * items.
 */
int
shared_locks_sweep(bool (*gone) (int pid, uint64 start, void *arg), void *arg,
				   int64 stale_us, KeeperItem **items)
{
	dshash_seq_status status;
	SharedLockRow *row;
	int64		now_us = lockext_now_us();
	int			n = 0;
	int			room = 16;

	*items = palloc(room * sizeof(KeeperItem));
	if (!shared_locks_attach())
		return 0;
	dshash_seq_init(&status, shared_locks_table, true);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		uint32		life = pg_atomic_read_u32(&row->life);
		bool		dead = gone(row->key.pid, row->proc_start, arg);
		bool		to_release = row->nodes_fp != 0 && life != LOCKEXT_ROW_ENDED &&
			(dead || (life == LOCKEXT_ROW_RELEASING &&
					  now_us - row->released_us > stale_us));

		if (to_release)
		{
			if (n == room)
			{
				room *= 2;
				*items = repalloc(*items, room * sizeof(KeeperItem));
			}
			fill_item(&(*items)[n++], row);
			continue;
		}
		if (dead)
		{
			if (life == LOCKEXT_ROW_LIVE)
				shared_locks_count_gone(row);
			else
				pg_atomic_fetch_sub_u64(&shared_locks_ctl->ended, 1);
			dsa_free(shared_locks_dsa, row->keytext);
			dshash_delete_current(&status);
		}
	}
	dshash_seq_term(&status);
	return n;
}

/* Rows ended and not yet deleted, for the keeper: a sweep is due. */
uint64
shared_locks_ended_count(void)
{
	return shared_locks_ctl ? pg_atomic_read_u64(&shared_locks_ctl->ended) : 0;
}

/* Changes whenever a backend exits leaving rows behind. */
uint64
shared_locks_left_count(void)
{
	return shared_locks_ctl ? pg_atomic_read_u64(&shared_locks_ctl->left) : 0;
}

/* A release could not be sent: the keeper should sweep now.  Never ERRORs. */
void
shared_locks_ask_sweep(void)
{
	if (shared_locks_ctl != NULL)
		pg_atomic_fetch_add_u64(&shared_locks_ctl->asked, 1);
}

uint64
shared_locks_asked_count(void)
{
	return shared_locks_ctl ? pg_atomic_read_u64(&shared_locks_ctl->asked) : 0;
}

/* The keeper sent a release again and it was confirmed. */
void
shared_locks_confirm(const SharedLockKey *key)
{
	SharedLockRow *row;

	if (shared_locks_table == NULL)
		return;
	row = dshash_find(shared_locks_table, key, false);
	if (row == NULL)
		return;
	shared_locks_release_confirmed(row);
	dshash_release_lock(shared_locks_table, row);
}

/* A keeper's copy of a row: what it needs to renew or release the hold. */
static void
fill_item(KeeperItem *it, SharedLockRow *row)
{
	const char *key = dsa_get_address(shared_locks_dsa, row->keytext);
	const char *ns = key + row->keylen + 1;
	const char *owner = ns + strlen(ns) + 1;
	size_t		keylen = row->keylen;
	size_t		nslen = strlen(ns);
	size_t		ownerlen = strlen(owner);
	char	   *p;

	it->key = row->key;
	it->dboid = row->dboid;
	it->proc_start = row->proc_start;
	it->nodes_fp = row->nodes_fp;
	it->lease_ms = row->lease_ms;
	it->since = row->since;
	it->token = row->has_token ? row->token : 0;
	it->board = 0;
	shared_locks_row_lease(row, &it->lease_end, NULL, NULL);

	/* one chunk, lockkey first (pfree(lockkey) frees them all) */
	p = palloc(nslen + 6 + keylen + 1 + keylen + 1 + nslen + 1 + ownerlen + 1);
	it->lockkey = p;
	memcpy(p, ns, nslen);
	memcpy(p + nslen, ":lock:", 6);
	memcpy(p + nslen + 6, key, keylen);
	p[nslen + 6 + keylen] = '\0';
	it->lockkey_len = (int) (nslen + 6 + keylen);
	p += it->lockkey_len + 1;
	it->keytext = memcpy(p, key, keylen + 1);
	p += keylen + 1;
	it->ns = memcpy(p, ns, nslen + 1);
	p += nslen + 1;
	it->owner = memcpy(p, owner, ownerlen + 1);
}

/*
 * The keeper: the row key, made by the process started at proc_start, is
 * an orphan (that process is gone): remove it, unless the key now names a
 * row of another process (the pid was reused).
 */
void
shared_locks_drop_orphan(const SharedLockKey *key, uint64 proc_start)
{
	SharedLockRow *row;

	if (shared_locks_table == NULL)
		return;
	row = dshash_find(shared_locks_table, key, true);
	if (row == NULL)
		return;
	if (row->proc_start != proc_start)
	{
		dshash_release_lock(shared_locks_table, row);
		return;
	}
	shared_locks_remove_row(row);
}

/*
 * The keeper renewed the hold acquired at since to lease_end (and, on the
 * monotonic clock, to lease_until_us), or found it lost.  A row released
 * meanwhile is left alone.
 */
void
shared_locks_renewed(const SharedLockKey *key, TimestampTz since,
					 TimestampTz lease_end, int64 lease_until_us, bool lost)
{
	SharedLockRow *row;

	if (shared_locks_table == NULL)
		return;
	row = dshash_find(shared_locks_table, key, true);
	if (row == NULL)
		return;					/* released meanwhile */
	if (row->since != since ||
		pg_atomic_read_u32(&row->life) != LOCKEXT_ROW_LIVE)
	{
		dshash_release_lock(shared_locks_table, row);
		return;
	}
	if (lost)
		row->state = 'l';
	else if (row->state == 'h')
	{
		row->lease_expires_at = lease_end;
		row->lease_until_us = lease_until_us;
		row->renewals++;
	}
	dshash_release_lock(shared_locks_table, row);
}

