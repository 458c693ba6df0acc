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
 * nobody holds any more (see shared_locks.c on a row's life).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "utils/builtins.h"
#include "utils/dsa.h"

#include "lockext.h"
#include "shared_locks.h"
#include "shared_locks_int.h"

static void fill_item(KeeperItem *it, SharedLockRow *row);

/*
 * The keeper: every held row of node set nodes_fp (0: of any) that has a
 * lease to renew, as palloc'd copies in items; *gen gets the generation they
 * reflect (shared_locks_renewable_gen).  The keeper decides which are due
 * and whose holder still beats.
 */
int
shared_locks_renewable(uint64 nodes_fp, KeeperItem **items, uint64 *gen)
{
	dshash_seq_status status;
	SharedLockRow *row;
	int			n = 0;
	int			room = 64;

	*items = palloc(room * sizeof(KeeperItem));
	*gen = shared_locks_renewable_gen();
	if (!shared_locks_attach())
		return 0;
	dshash_seq_init(&status, shared_locks_table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		if (pg_atomic_read_u32(&row->life) != LOCKEXT_ROW_LIVE)
			continue;
		if (row->state != 'h' || row->nodes_fp == 0 ||
			(nodes_fp != 0 && row->nodes_fp != nodes_fp))
			continue;
		if (n == room)
		{
			room *= 2;
			*items = repalloc(*items, room * sizeof(KeeperItem));
		}
		fill_item(&(*items)[n++], row);
	}
	dshash_seq_term(&status);
	return n;
}

/* Changes whenever a renewable row comes, changes or goes. */
uint64
shared_locks_renewable_gen(void)
{
	return shared_locks_ctl ? pg_atomic_read_u64(&shared_locks_ctl->renewable_gen) : 0;
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

	{
		it->key = row->key;
		it->dboid = row->dboid;
		it->proc_start = row->proc_start;
		it->nodes_fp = row->nodes_fp;
		it->lease_ms = row->lease_ms;
		it->lease_end = row->lease_expires_at;
		it->since = row->since;
		it->token = row->has_token ? row->token : 0;
		it->lockkey = psprintf("%s:lock:%s", ns, key);
		it->lockkey_len = strlen(it->lockkey);
		it->keytext = pstrdup(key);
		it->ns = pstrdup(ns);
		it->owner = pstrdup(ns + strlen(ns) + 1);
		it->releasing = pg_atomic_read_u32(&row->life) != LOCKEXT_ROW_LIVE;
	}
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

