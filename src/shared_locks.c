/*-------------------------------------------------------------------------
 *
 * shared_locks.c
 *	  The shared-memory table of every dlock hold and wait on this instance,
 *	  by key text: what the dlock_locks view shows and the lease keeper
 *	  renews from.
 *
 * Needs shared_preload_libraries, or PostgreSQL 17 or later: the control
 * struct is reserved at server start (shmem_request_hook /
 * shmem_startup_hook, as pg_stat_statements does), or taken from the DSM
 * registry by the first backend that publishes (shared_area.c).  The rows live in a dshash table in a DSA area created by the
 * first backend that publishes, so the table grows with use rather than
 * being sized up front; keys are up to 1 kB and a backend's holds are
 * unbounded.  Two caps, for two purposes: the rows of Redis holds are what
 * the lease keeper renews, so every Redis hold has one, and beyond
 * lockext.max_redis_locks (or when shared memory runs out) a new Redis
 * lock is refused; the other rows (advisory holds, waits) only serve the
 * view, and beyond lockext.max_tracked_locks locking goes on and they are
 * counted as missing, which the view reports.
 *
 * Every row names the process that made it, by pid and start time
 * (liveness.c): the keeper renews only for that very process, and
 * releases what a process that is gone left behind.
 *
 * The table lives in lockext's DSA area (shared_area.c), beside the
 * per-database counters (shared_stats.c).  What the keeper reads and
 * writes here is keeper_rows.c's.
 *
 * A backend publishes a row when a scope of a key is first granted, and
 * when it starts to wait; a wait's row goes when the wait ends.  A hold's
 * row is ended by the release path (after the commit record, on the abort
 * path, at exit) through the pointer the registry entry keeps, with an
 * atomic write: dshash and DSA calls may attach a segment, which may
 * ERROR, and so have no place there.  The backend deletes its ended rows
 * at the end of its next statement; the keeper those of a backend that is
 * gone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "nodes/pg_list.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/dsa.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "lockext_base.h"
#include "keeper_state.h"
#include "liveness.h"
#include "shared_area.h"
#include "shared_locks.h"
#include "shared_locks_int.h"



int			lockext_max_tracked_locks = 1000000;
int			lockext_max_redis_locks = 1000000;

SharedLocksCtl *shared_locks_ctl = NULL;
dsa_area   *shared_locks_dsa = NULL;
dshash_table *shared_locks_table = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;


/* The wait this backend has published, if any. */
static SharedLockRow *my_wait_row = NULL;
static uint64 my_wait_hash;

/* This backend's count of rows published: each row's key is new. */
static uint64 next_seq = 0;

/*
 * Keys of this backend's rows that the release path ended: deleted at the
 * next statement end.  malloc'd (the release path adds to it); a key that
 * finds no room is left to the keeper, when the backend is gone.
 */
static SharedLockKey *ended_keys = NULL;
static int	nended = 0;
static int	ended_room = 0;
static TimestampTz wait_since;
static bool my_wait_published = false;
static bool my_wait_missing = false;

/* tranche_id is set at attach */
static dshash_parameters table_params =
	LOCKEXT_DSHASH_PARAMETERS(sizeof(SharedLockKey), sizeof(SharedLockRow));

static Size
ctl_size(void)
{
	return MAXALIGN(sizeof(SharedLocksCtl));
}

static void
shared_locks_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(ctl_size());
}

static void
ctl_init(void *ptr)
{
	SharedLocksCtl *c = ptr;
	int			i;

	pg_atomic_init_u64(&c->renewable_gen, 0);
	for (i = 0; i < LOCKEXT_CHANGE_RING; i++)
		pg_atomic_init_u64(&c->changes[i].seq, 0);
	pg_atomic_init_u64(&c->renewable_rows, 0);
	pg_atomic_init_u64(&c->ended, 0);
	pg_atomic_init_u64(&c->left, 0);
	pg_atomic_init_u64(&c->asked, 0);
	pg_atomic_init_u64(&c->board, InvalidDsaPointer);
	pg_atomic_init_u64(&c->keeper_pos, 0);
	LWLockInitialize(&c->lock, shared_area_tranche());
	c->table = InvalidDsaPointer;
	pg_atomic_init_u64(&c->rows, 0);
	pg_atomic_init_u64(&c->missing, 0);
}

static void
shared_locks_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared_locks_ctl = ShmemInitStruct("lockext shared locks", ctl_size(), &found);
	if (!found)
		ctl_init(shared_locks_ctl);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The control struct, from the DSM registry if not preloaded (17 and
 * later); false when there is none.  May ERROR: the release path tests
 * shared_locks_ctl instead (it has a row only if this found one).
 */
static bool
have_ctl(void)
{
	if (shared_locks_ctl == NULL)
		shared_locks_ctl = shared_area_named_struct("lockext shared locks",
													ctl_size(), ctl_init);
	return shared_locks_ctl != NULL;
}

/* From _PG_init while preloading: reserve the control struct. */
void
shared_locks_install_hooks(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = shared_locks_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = shared_locks_shmem_startup;
}

/*
 * Attach to (or create) the table; false when there is none (not
 * preloaded, before 17).  May ERROR (out of memory): call it only where
 * that is allowed.
 */
bool
shared_locks_attach(void)
{
	MemoryContext oldcxt;

	if (shared_locks_table != NULL)
		return true;
	if (!have_ctl() || (shared_locks_dsa = shared_area_get()) == NULL)
		return false;
	table_params.tranche_id = shared_area_tranche();
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	LWLockAcquire(&shared_locks_ctl->lock, LW_EXCLUSIVE);
	if (shared_locks_ctl->table == InvalidDsaPointer)
	{
		shared_locks_table = dshash_create(shared_locks_dsa, &table_params, NULL);
		shared_locks_ctl->table = dshash_get_hash_table_handle(shared_locks_table);
	}
	else
		shared_locks_table = dshash_attach(shared_locks_dsa, &table_params, shared_locks_ctl->table, NULL);
	LWLockRelease(&shared_locks_ctl->lock);
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/* ERROR for a view or function that needs lockext preloaded. */
static void
require_table(const char *what)
{
	shared_area_require(what);
	(void) shared_locks_attach();
}

/*
 * Count a new row in; false when the view's cap says no.  A Redis hold
 * (renewable) must have its row, so for it a cap is an ERROR, before the
 * caller goes on holding a lock that nobody would renew.
 */
static bool
count_new_row(bool renewable, const char *keytext)
{
	if (!renewable)
	{
		if (pg_atomic_fetch_add_u64(&shared_locks_ctl->rows, 1) -
			pg_atomic_read_u64(&shared_locks_ctl->renewable_rows) >=
			(uint64) lockext_max_tracked_locks)
		{
			pg_atomic_fetch_sub_u64(&shared_locks_ctl->rows, 1);
			pg_atomic_fetch_add_u64(&shared_locks_ctl->missing, 1);
			return false;
		}
		return true;
	}
	if (pg_atomic_fetch_add_u64(&shared_locks_ctl->renewable_rows, 1) >=
		(uint64) lockext_max_redis_locks)
	{
		pg_atomic_fetch_sub_u64(&shared_locks_ctl->renewable_rows, 1);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("too many Redis locks are held on this instance to take lock \"%s\"",
						keytext),
				 errdetail("The lease keeper's shared_locks_table holds lockext.max_redis_locks (%d) Redis holds.",
						   lockext_max_redis_locks),
				 errhint("Release locks, or raise lockext.max_redis_locks and reload the configuration.")));
	}
	pg_atomic_fetch_add_u64(&shared_locks_ctl->rows, 1);
	return true;
}

/*
 * A renewable row came, changes or goes: its key goes into the ring the
 * keeper reads (the keeper then reads that row again).  A slot's seq is 0
 * while its key is being written.  Never ERRORs.
 */
static void
note_change(const SharedLockKey *key)
{
	uint64		claim = pg_atomic_fetch_add_u64(&shared_locks_ctl->renewable_gen, 1);
	int			slot = (int) (claim % LOCKEXT_CHANGE_RING);

	pg_atomic_write_u64(&shared_locks_ctl->changes[slot].seq, 0);
	pg_write_barrier();
	shared_locks_ctl->changes[slot].key = *key;
	pg_write_barrier();
	pg_atomic_write_u64(&shared_locks_ctl->changes[slot].seq, claim + 1);

	/*
	 * Wake the keeper when the ring is half full of changes it has not
	 * read: one statement taking 100,000 locks would otherwise overrun it
	 * between two of the keeper's looks, and the keeper would read the
	 * whole table again.
	 */
	if (claim % 1024 == 1023 &&
		claim - pg_atomic_read_u64(&shared_locks_ctl->keeper_pos) > LOCKEXT_CHANGE_RING / 2)
		keeper_state_poke(0);
}

/* A row is going: count it out. */
void
shared_locks_count_gone(const SharedLockRow *row)
{
	pg_atomic_fetch_sub_u64(&shared_locks_ctl->rows, 1);
	if (row->nodes_fp != 0)
	{
		pg_atomic_fetch_sub_u64(&shared_locks_ctl->renewable_rows, 1);
		note_change(&row->key);
	}
}

/*
 * Insert a row, or update the row old (this backend's, live); the row, or
 * NULL (counted as missing) when the view's cap is reached.  May ERROR,
 * and does for a Redis hold's row that finds no room.
 */
static SharedLockRow *
put_row(SharedLockRow *old, const SharedLockKey *key, const char *keytext,
		int keylen, const SharedLockRow *values, const char *ns,
		const char *owner)
{
	SharedLockRow *row;
	bool		found;
	dsa_pointer text;
	size_t		nslen = strlen(ns);
	size_t		ownerlen = strlen(owner);
	char	   *p;

	if (!shared_locks_attach())
		return NULL;

	/* an update keeps its key, text and life, and what the keeper knows */
	if (old != NULL)
	{
		row = dshash_find(shared_locks_table, &old->key, true);
		Assert(row == old);
		if (row != NULL)
		{
			SharedLockKey oldkey = row->key;
			int64		renewals = row->renewals;
			char		state = row->state;

			text = row->keytext;
			memcpy(((char *) row) + offsetof(SharedLockRow, dboid),
				   ((const char *) values) + offsetof(SharedLockRow, dboid),
				   sizeof(SharedLockRow) - offsetof(SharedLockRow, dboid));
			row->key = oldkey;
			row->keytext = text;
			row->keylen = keylen;
			row->renewals = renewals;
			if (state == 'l')
				row->state = state;
			dshash_release_lock(shared_locks_table, row);
			if (values->nodes_fp != 0)
				note_change(&oldkey);
			return row;
		}
	}

	if (!count_new_row(values->nodes_fp != 0, keytext))
		return NULL;
	/* allocate before taking the partition lock: an ERROR then is clean */
	text = dsa_allocate_extended(shared_locks_dsa, keylen + nslen + ownerlen + 3,
								 DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(text))
	{
		shared_locks_count_gone(values);
		if (values->nodes_fp == 0)
		{
			pg_atomic_fetch_add_u64(&shared_locks_ctl->missing, 1);
			return NULL;
		}
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of shared memory for the Redis lock \"%s\"", keytext),
				 errdetail("The lease keeper's shared_locks_table could not grow."),
				 errhint("Release locks, or give the server more shared memory (/dev/shm).")));
	}
	p = dsa_get_address(shared_locks_dsa, text);
	memcpy(p, keytext, keylen);
	p[keylen] = '\0';
	memcpy(p + keylen + 1, ns, nslen + 1);
	memcpy(p + keylen + 1 + nslen + 1, owner, ownerlen + 1);

	PG_TRY();
	{
		row = dshash_find_or_insert(shared_locks_table, key, &found);
	}
	PG_CATCH();
	{
		dsa_free(shared_locks_dsa, text);
		shared_locks_count_gone(values);
		PG_RE_THROW();
	}
	PG_END_TRY();
	Assert(!found);				/* keys are never reused */
	memcpy(row, values, sizeof(SharedLockRow));
	row->key = *key;
	pg_atomic_init_u32(&row->life, LOCKEXT_ROW_LIVE);
	pg_atomic_init_u32(&row->board, 0);
	row->keytext = text;
	row->keylen = keylen;
	dshash_release_lock(shared_locks_table, row);
	if (values->nodes_fp != 0)
		note_change(key);
	return row;
}

/* Remove a row found (and locked) with dshash_find. */
void
shared_locks_remove_row(SharedLockRow *row)
{
	if (pg_atomic_read_u32(&row->life) == LOCKEXT_ROW_LIVE)
		shared_locks_count_gone(row);
	else
		pg_atomic_fetch_sub_u64(&shared_locks_ctl->ended, 1);
	dsa_free(shared_locks_dsa, row->keytext);
	dshash_delete_entry(shared_locks_table, row);	/* releases the lock */
}

/* Remove a row if it is there.  Never ERRORs. */
static void
drop_row(const SharedLockKey *key)
{
	SharedLockRow *row;

	if (shared_locks_table == NULL)
		return;
	row = dshash_find(shared_locks_table, key, true);
	if (row == NULL)
		return;
	shared_locks_remove_row(row);
}

static inline int
scope_kind(DlockScope scope)
{
	return scope == DLOCK_SCOPE_SESSION ? LOCKEXT_ROW_SESSION : LOCKEXT_ROW_XACT;
}

/* A row of entry's: whose, where, which backend. */
static void
row_init(SharedLockRow *row, DlockEntry *entry, int kind, char state)
{
	memset(row, 0, sizeof(*row));
	row->key.pid = MyProcPid;
	row->key.kind = kind;
	row->key.hash = entry->hash;
	row->proc_start = liveness_my_start();
	row->dboid = MyDatabaseId;
	row->userid = GetUserId();
	row->state = state;
	strlcpy(row->backend, entry->backend->name, sizeof(row->backend));
}

/*
 * put_row() for *slot (the row of a hold or wait, NULL when there is
 * none yet), with a hold or wait that does not fit counted once in
 * ctl->missing; *untracked says whether it is counted there.
 */
static void
put_tracked(DlockEntry *entry, SharedLockRow *values, SharedLockRow **slot,
			bool *untracked, const char *ns, const char *owner)
{
	SharedLockRow *row;

	values->key.seq = *slot != NULL ? (*slot)->key.seq : ++next_seq;
	row = put_row(*slot, &values->key, entry->key, entry->keylen, values,
				  ns, owner);
	/* put_row counted a miss anew, or the row is in now: uncount it */
	if (*untracked)
		pg_atomic_fetch_sub_u64(&shared_locks_ctl->missing, 1);
	*untracked = (row == NULL);
	*slot = row;
}

/*
 * A scope of entry was granted (or its token or lease changed): publish
 * it.  May ERROR (out of memory), like the acquire it belongs to.
 */
void
shared_locks_publish(DlockEntry *entry, DlockScope scope)
{
	SharedLockRow row;
	DlockLeaseInfo info;

	if (!have_ctl())
		return;
	row_init(&row, entry, scope_kind(scope), 'h');
	row.has_token = entry->has_token;
	row.token = entry->token;
	row.since = entry->acquired_at;
	row.lease_expires_at = entry->lease_expires_at;
	memset(&info, 0, sizeof(info));
	if (entry->backend->lease_info && entry->backend->lease_info(entry, &info))
	{
		row.nodes_fp = info.nodes_fp;
		row.lease_ms = info.lease_ms;
	}
	put_tracked(entry, &row, &entry->rows[scope_kind(scope)],
				scope == DLOCK_SCOPE_SESSION ?
				&entry->session_untracked : &entry->xact_untracked,
				info.ns, info.owner);
	if (row.nodes_fp != 0)
		keeper_state_poke(row.lease_expires_at -
						  LOCKEXT_WAKE_LEFT_US(row.lease_ms));
}

/*
 * End a row, through its pointer (the release path): it stops counting and
 * being renewed or shown, and is deleted at this backend's next statement
 * end, or by the keeper if the backend is gone first.  Never ERRORs.
 */
static void
end_row(SharedLockRow *row, uint32 life)
{
	shared_locks_count_gone(row);
	row->released_us = lockext_now_us();
	pg_atomic_write_u32(&row->life, life);
	pg_atomic_fetch_add_u64(&shared_locks_ctl->ended, 1);
	if (nended == ended_room)
	{
		int			room = Max(64, ended_room * 2);
		SharedLockKey *more = realloc(ended_keys, room * sizeof(SharedLockKey));

		if (more == NULL)
			return;				/* the keeper deletes it after our exit */
		ended_keys = more;
		ended_room = room;
	}
	ended_keys[nended++] = row->key;
}

/*
 * The scope's last hold of entry ended (the release path): its row is
 * releasing until the backend confirms the release (for a Redis release
 * still on its way), see shared_locks_release_confirmed.  Returns the
 * row, or NULL when it has none.  Never ERRORs.
 */
SharedLockRow *
shared_locks_unpublish(DlockEntry *entry, DlockScope scope)
{
	bool	   *untracked = scope == DLOCK_SCOPE_SESSION ?
		&entry->session_untracked : &entry->xact_untracked;
	SharedLockRow **slot = &entry->rows[scope_kind(scope)];
	SharedLockRow *row = *slot;

	if (shared_locks_ctl == NULL)
		return NULL;
	if (*untracked)
	{
		pg_atomic_fetch_sub_u64(&shared_locks_ctl->missing, 1);
		*untracked = false;
	}
	*slot = NULL;
	if (row != NULL)
		end_row(row, LOCKEXT_ROW_RELEASING);
	return row;
}

/*
 * The release of row is done (confirmed, or there was nothing to send):
 * it may go.  From the release path and from replies read later (while
 * the row is releasing, nobody deletes it).  Never ERRORs.
 */
void
shared_locks_release_confirmed(SharedLockRow *row)
{
	uint32		expected = LOCKEXT_ROW_RELEASING;

	if (row != NULL)
		(void) pg_atomic_compare_exchange_u32(&row->life, &expected,
											  LOCKEXT_ROW_ENDED);
}

/* A row's process is gone (sweep_without_keeper). */
static bool
row_gone(int pid, uint64 start, void *arg)
{
	(void) arg;
	return liveness_of(pid, start) == HOLDER_GONE;
}

/*
 * Not preloaded (17 and later), there is no keeper to delete the rows
 * exited backends left (ended by their exit, which may not use dshash):
 * after such an exit, the next backend to end a statement does, once.
 * Rows of an exit still under way stay for the sweep after the next one.
 * Without preloading there are no Redis holds, so nothing is released
 * here.  May ERROR.
 */
static void
sweep_without_keeper(void)
{
	KeeperItem *items;

	if (lockext_preloaded || shared_locks_ctl == NULL ||
		pg_atomic_read_u64(&shared_locks_ctl->left) == 0 ||
		pg_atomic_exchange_u64(&shared_locks_ctl->left, 0) == 0)
		return;
	(void) shared_locks_sweep(row_gone, NULL, PG_INT64_MAX, &items);
	pfree(items);
}

/*
 * Delete this backend's ended rows (at a statement's end, where dshash may
 * run).  Releasing ones stay for later.  May ERROR (attach).
 */
void
shared_locks_collect_ended(void)
{
	int			kept = 0;
	int			i;

	sweep_without_keeper();
	if (nended == 0 || shared_locks_table == NULL)
		return;
	for (i = 0; i < nended; i++)
	{
		SharedLockRow *row = dshash_find(shared_locks_table, &ended_keys[i], true);

		if (row == NULL)
			continue;
		if (pg_atomic_read_u32(&row->life) == LOCKEXT_ROW_ENDED)
		{
			shared_locks_remove_row(row);
			continue;
		}
		dshash_release_lock(shared_locks_table, row);
		ended_keys[kept++] = ended_keys[i];
	}
	nended = kept;
	/* what a large release needed goes back too */
	if (nended == 0 && ended_room > 1024)
	{
		free(ended_keys);
		ended_keys = NULL;
		ended_room = 0;
	}
}

/*
 * Process exit (the release path), after every hold was ended: the wait
 * row, if any, ends too.  What is left is the keeper's to delete.  Never
 * ERRORs.
 */
void
shared_locks_exit(void)
{
	if (my_wait_row != NULL)
		end_row(my_wait_row, LOCKEXT_ROW_ENDED);
	my_wait_row = NULL;
	my_wait_published = false;
	/* the keeper deletes what we leave (and releases what is unconfirmed) */
	if (nended > 0 && shared_locks_ctl != NULL)
		pg_atomic_fetch_add_u64(&shared_locks_ctl->left, 1);
}

/*
 * This backend's id among all sessions of all instances: 24 random hex
 * digits, drawn once.  Redis owner values start with it, and a wait row
 * carries it, so that waits can be followed across instances (deadlock.c).
 * May ERROR (no randomness) the first time.
 */
const char *
shared_locks_session_id(void)
{
	static char id[LOCKEXT_SESSION_ID_LEN + 1];

	if (id[0] == '\0')
	{
		uint8		rnd[LOCKEXT_SESSION_ID_LEN / 2];
		int			i;

		if (!pg_strong_random(rnd, sizeof(rnd)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random session id")));
		for (i = 0; i < (int) sizeof(rnd); i++)
			sprintf(&id[i * 2], "%02x", rnd[i]);
	}
	return id;
}

/*
 * This backend starts to wait for entry (the local queue, or Redis; called
 * again by a wait that goes on, to name the holder).  blocker_instance and
 * blocker_pid name a remote holder, when known.  May ERROR.
 */
void
shared_locks_wait_start(DlockEntry *entry, const char *blocker_instance,
						int blocker_pid)
{
	SharedLockRow row;

	if (!have_ctl())
		return;
	if (!(my_wait_published || my_wait_missing) || my_wait_hash != entry->hash)
	{
		(void) shared_locks_wait_end();
		wait_since = GetCurrentTimestamp();
	}
	row_init(&row, entry, LOCKEXT_ROW_WAIT, 'w');
	row.since = wait_since;
	if (blocker_instance)
		strlcpy(row.blocker_instance, blocker_instance,
				sizeof(row.blocker_instance));
	row.blocker_pid = blocker_pid;
	my_wait_hash = entry->hash;
	put_tracked(entry, &row, &my_wait_row, &my_wait_missing, "",
				shared_locks_session_id());
	my_wait_published = !my_wait_missing;
}

/*
 * The wait, if any, is over: how long it lasted in microseconds, -1 when
 * there was none.  Never ERRORs.
 */
int64
shared_locks_wait_end(void)
{
	int64		waited = -1;

	if (my_wait_published || my_wait_missing)
		waited = Max(GetCurrentTimestamp() - wait_since, 0);
	if (my_wait_published)
		drop_row(&my_wait_row->key);
	if (my_wait_missing && shared_locks_ctl != NULL)
		pg_atomic_fetch_sub_u64(&shared_locks_ctl->missing, 1);
	my_wait_published = my_wait_missing = false;
	my_wait_row = NULL;
	return waited;
}

/*
 * Call fn for a copy of every row (key text included), and return how
 * many holds and waits are missing from the table.  Rows are copied under
 * the partition locks, fn runs after.
 */
uint64
shared_locks_scan(void (*fn) (const SharedLockRow *row, const char *key,
							  int kind, void *arg), void *arg)
{
	dshash_seq_status status;
	SharedLockRow *row;
	List	   *rows = NIL;
	ListCell   *lc;

	require_table("dlock_locks");
	dshash_seq_init(&status, shared_locks_table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		SharedLockRow *copy;

		if (pg_atomic_read_u32(&row->life) != LOCKEXT_ROW_LIVE)
			continue;			/* released */
		copy = palloc(sizeof(SharedLockRow) + row->keylen + 1);

		memcpy(copy, row, sizeof(SharedLockRow));
		memcpy(copy + 1, dsa_get_address(shared_locks_dsa, row->keytext), row->keylen + 1);
		rows = lappend(rows, copy);
	}
	dshash_seq_term(&status);
	foreach(lc, rows)
	{
		SharedLockRow *copy = lfirst(lc);

		fn(copy, (const char *) (copy + 1), copy->key.kind, arg);
	}
	return pg_atomic_read_u64(&shared_locks_ctl->missing);
}

/*
 * What the holder's COMMIT check needs: the lease end the keeper renewed
 * to, and whether the keeper found the lock lost.  False when the hold has
 * no row.  May ERROR (attach).
 */
bool
shared_locks_hold_state(DlockEntry *entry, DlockScope scope,
						TimestampTz *lease_end, int64 *lease_until_us,
						bool *lost)
{
	SharedLockRow *row = entry->rows[scope_kind(scope)];

	if (shared_locks_ctl == NULL || shared_locks_table == NULL || row == NULL)
		return false;
	row = dshash_find(shared_locks_table, &row->key, false);
	if (row == NULL)
		return false;
	shared_locks_row_lease(row, lease_end, lease_until_us, NULL);
	*lost = (row->state == 'l');
	dshash_release_lock(shared_locks_table, row);
	return true;
}
