/*-------------------------------------------------------------------------
 *
 * shared_locks.c
 *	  The shared-memory table of every dlock hold and wait on this instance,
 *	  by key text: what the dlock_locks view shows and the lease keeper
 *	  renews from, and the holders' heartbeats.
 *
 * Needs shared_preload_libraries: the control struct is reserved at server
 * start (shmem_request_hook / shmem_startup_hook, as pg_stat_statements
 * does).  The rows live in a dshash table in a DSA area created by the
 * first backend that publishes, so the table grows with use rather than
 * being sized up front; keys are up to 1 kB and a backend's holds are
 * unbounded.  lockext.max_tracked_locks caps the rows: beyond it locking
 * goes on and the rows are counted as missing, which the view reports.
 *
 * The same area holds the per-database counters (shared_stats.c) and the
 * releases handed to the keeper (keeper_state.c), whose control structs
 * are reserved here too.
 *
 * A backend publishes a row when a scope of a key is first granted, and
 * when it starts to wait; it removes it when the scope's last hold ends,
 * or the wait ends, and all of its rows at exit.  Removing never ERRORs
 * (it runs after the commit record): dshash deletion takes a partition
 * lock and frees, nothing more.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "nodes/pg_list.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/dsa.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "lockext.h"

typedef struct SharedLocksCtl
{
	LWLock		lock;			/* protects the handles below */
	int			tranche;
	dsa_handle	area;			/* DSM_HANDLE_INVALID until first use */
	dshash_table_handle table;
	pg_atomic_uint64 rows;		/* rows in the table */
	pg_atomic_uint64 missing;	/* holds and waits not in it (cap reached) */
	pg_atomic_uint64 renewable_gen; /* bumped when a renewable row changes */
	int			nbackends;		/* heartbeat[] runs 0..nbackends */

	/*
	 * Set to the monotonic clock (microseconds) by a timer in each backend
	 * that holds renewable locks: a stopped (SIGSTOP) or swapped-out holder
	 * sets nothing, and the keeper stops renewing for it.
	 */
	pg_atomic_uint64 heartbeat[FLEXIBLE_ARRAY_MEMBER];
} SharedLocksCtl;


int			lockext_max_tracked_locks = 1000000;

static SharedLocksCtl *ctl = NULL;
static dsa_area *area = NULL;
static dshash_table *table = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* The wait this backend has published, if any. */
static SharedLockKey my_wait;
static TimestampTz wait_since;
static bool my_wait_published = false;
static bool my_wait_missing = false;

static dshash_parameters table_params = {
	sizeof(SharedLockKey),
	sizeof(SharedLockRow),
	dshash_memcmp,
	dshash_memhash,
	0							/* tranche, set at attach */
};

static Size
ctl_size(void)
{
	return MAXALIGN(add_size(offsetof(SharedLocksCtl, heartbeat),
							 mul_size(MaxBackends + 1, sizeof(pg_atomic_uint64))));
}

static void
shared_locks_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(ctl_size());
	RequestAddinShmemSpace(shared_stats_shmem_size());
	RequestAddinShmemSpace(keeper_state_shmem_size());
}

static void
shared_locks_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ctl = ShmemInitStruct("lockext shared locks", ctl_size(), &found);
	if (!found)
	{
		int			i;

		ctl->nbackends = MaxBackends;
		for (i = 0; i <= MaxBackends; i++)
			pg_atomic_init_u64(&ctl->heartbeat[i], 0);
		pg_atomic_init_u64(&ctl->renewable_gen, 0);
		ctl->tranche = LWLockNewTrancheId();
		LWLockInitialize(&ctl->lock, ctl->tranche);
		ctl->area = DSM_HANDLE_INVALID;
		ctl->table = InvalidDsaPointer;
		pg_atomic_init_u64(&ctl->rows, 0);
		pg_atomic_init_u64(&ctl->missing, 0);
	}
	shared_stats_shmem_startup(ctl->tranche);
	keeper_state_shmem_startup(ctl->tranche);
	LWLockRelease(AddinShmemInitLock);
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
 * Attach to (or create) the table; false without preloading.  May ERROR
 * (out of memory): call it only where that is allowed.
 */
static bool
attach(void)
{
	MemoryContext oldcxt;

	if (table != NULL)
		return true;
	if (ctl == NULL)
		return false;
	LWLockRegisterTranche(ctl->tranche, "lockext");
	table_params.tranche_id = ctl->tranche;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	LWLockAcquire(&ctl->lock, LW_EXCLUSIVE);
	if (ctl->area == DSM_HANDLE_INVALID)
	{
		area = dsa_create(ctl->tranche);
		dsa_pin(area);
		dsa_pin_mapping(area);
		table = dshash_create(area, &table_params, NULL);
		ctl->area = dsa_get_handle(area);
		ctl->table = dshash_get_hash_table_handle(table);
	}
	else
	{
		area = dsa_attach(ctl->area);
		dsa_pin_mapping(area);
		table = dshash_attach(area, &table_params, ctl->table, NULL);
	}
	LWLockRelease(&ctl->lock);
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/* The shared area, attached if need be; NULL without preloading.  May ERROR. */
dsa_area *
shared_locks_area(void)
{
	return attach() ? area : NULL;
}

/* The shared area if this process is attached already.  Never ERRORs. */
dsa_area *
shared_locks_area_attached(void)
{
	return table != NULL ? area : NULL;
}

int
shared_locks_tranche(void)
{
	return ctl->tranche;
}

/* ERROR for a view or function that needs lockext preloaded. */
void
shared_locks_require_preload(const char *what)
{
	if (!attach())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs lockext in shared_preload_libraries", what),
				 errhint("Add lockext to shared_preload_libraries and restart the server.")));
}

/*
 * Insert or update a row; false (and counted as missing) when the cap is
 * reached.  May ERROR.
 */
static bool
put_row(const SharedLockKey *key, const char *keytext, int keylen,
		const SharedLockRow *values, const char *ns, const char *owner)
{
	SharedLockRow *row;
	bool		found;
	dsa_pointer text;
	size_t		nslen = strlen(ns);
	size_t		ownerlen = strlen(owner);
	char	   *p;

	if (!attach())
		return false;

	/* an update keeps its text, and what the keeper knows */
	row = dshash_find(table, key, true);
	if (row != NULL)
	{
		int64		renewals = row->renewals;
		char		state = row->state;

		text = row->keytext;
		memcpy(row, values, sizeof(SharedLockRow));
		row->keytext = text;
		row->keylen = keylen;
		row->renewals = renewals;
		if (state == 'l')
			row->state = state;
		dshash_release_lock(table, row);
		if (values->nodes_fp != 0)
			pg_atomic_fetch_add_u64(&ctl->renewable_gen, 1);
		return true;
	}

	if (pg_atomic_fetch_add_u64(&ctl->rows, 1) >= (uint64) lockext_max_tracked_locks)
	{
		pg_atomic_fetch_sub_u64(&ctl->rows, 1);
		pg_atomic_fetch_add_u64(&ctl->missing, 1);
		return false;
	}
	/* allocate before taking the partition lock: an ERROR then is clean */
	text = dsa_allocate(area, keylen + nslen + ownerlen + 3);
	p = dsa_get_address(area, text);
	memcpy(p, keytext, keylen);
	p[keylen] = '\0';
	memcpy(p + keylen + 1, ns, nslen + 1);
	memcpy(p + keylen + 1 + nslen + 1, owner, ownerlen + 1);

	row = dshash_find_or_insert(table, key, &found);
	Assert(!found);				/* only this backend writes its rows */
	memcpy(row, values, sizeof(SharedLockRow));
	row->keytext = text;
	row->keylen = keylen;
	dshash_release_lock(table, row);
	if (values->nodes_fp != 0)
		pg_atomic_fetch_add_u64(&ctl->renewable_gen, 1);
	return true;
}

/* Remove a row if it is there.  Never ERRORs. */
static void
drop_row(const SharedLockKey *key)
{
	SharedLockRow *row;

	if (table == NULL)
		return;
	row = dshash_find(table, key, true);
	if (row == NULL)
		return;
	if (row->nodes_fp != 0)
		pg_atomic_fetch_add_u64(&ctl->renewable_gen, 1);
	dsa_free(area, row->keytext);
	dshash_delete_entry(table, row);	/* releases the lock */
	pg_atomic_fetch_sub_u64(&ctl->rows, 1);
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
	row->dboid = MyDatabaseId;
	row->userid = GetUserId();
	row->state = state;
	strlcpy(row->backend, entry->backend->name, sizeof(row->backend));
}

/*
 * put_row(), with a hold or wait that does not fit counted once in
 * ctl->missing; *untracked says whether it is counted there.
 */
static void
put_tracked(DlockEntry *entry, const SharedLockRow *row, bool *untracked,
			const char *ns, const char *owner)
{
	bool		ok = put_row(&row->key, entry->key, entry->keylen, row, ns, owner);

	/* put_row counted a miss anew, or the row is in now: uncount it */
	if (*untracked)
		pg_atomic_fetch_sub_u64(&ctl->missing, 1);
	*untracked = !ok;
}

static void
heartbeat_beat(void)
{
	/* a signal handler: atomics and clock_gettime() only */
	if (ctl != NULL && MyBackendId > 0 && MyBackendId <= ctl->nbackends)
		pg_atomic_write_u64(&ctl->heartbeat[MyBackendId], lockext_now_us());
}

static TimeoutId heartbeat_timer = MAX_TIMEOUTS;

/*
 * Beat every LOCKEXT_HEARTBEAT_MS from now on, even during a long query.
 * Error recovery disables every timeout (PostgresMain), so the registry's
 * transaction callbacks call this again after an abort.
 */
void
shared_locks_heartbeat_rearm(void)
{
	if (heartbeat_timer == MAX_TIMEOUTS || get_timeout_active(heartbeat_timer))
		return;
	heartbeat_beat();
	enable_timeout_every(heartbeat_timer,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 LOCKEXT_HEARTBEAT_MS),
						 LOCKEXT_HEARTBEAT_MS);
}

static void
start_heartbeat(void)
{
	if (heartbeat_timer == MAX_TIMEOUTS)
		heartbeat_timer = RegisterTimeout(USER_TIMEOUT, heartbeat_beat);
	shared_locks_heartbeat_rearm();
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

	if (ctl == NULL)
		return;
	row_init(&row, entry, scope_kind(scope), 'h');
	row.has_token = entry->has_token;
	row.token = entry->token;
	row.since = entry->acquired_at;
	row.lease_expires_at = entry->lease_expires_at;
	memset(&info, 0, sizeof(info));
	if (entry->backend->lease_info && entry->backend->lease_info(entry, &info))
	{
		row.backend_id = MyBackendId;
		row.nodes_fp = info.nodes_fp;
		row.lease_ms = info.lease_ms;
		start_heartbeat();
	}
	put_tracked(entry, &row, scope == DLOCK_SCOPE_SESSION ?
				&entry->session_untracked : &entry->xact_untracked,
				info.ns, info.owner);
	if (row.nodes_fp != 0)
		keeper_state_poke(row.lease_expires_at -
						  LOCKEXT_WAKE_LEFT_US(row.lease_ms));
}

/* The scope's last hold of entry ended.  Never ERRORs. */
void
shared_locks_unpublish(DlockEntry *entry, DlockScope scope)
{
	bool	   *untracked = scope == DLOCK_SCOPE_SESSION ?
		&entry->session_untracked : &entry->xact_untracked;
	SharedLockKey key;

	if (ctl == NULL)
		return;
	if (*untracked)
	{
		pg_atomic_fetch_sub_u64(&ctl->missing, 1);
		*untracked = false;
		return;
	}
	key.pid = MyProcPid;
	key.kind = scope_kind(scope);
	key.hash = entry->hash;
	drop_row(&key);
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

	if (ctl == NULL)
		return;
	if (!(my_wait_published || my_wait_missing) || my_wait.hash != entry->hash)
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
	my_wait = row.key;
	put_tracked(entry, &row, &my_wait_missing, "", shared_locks_session_id());
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
		drop_row(&my_wait);
	if (my_wait_missing && ctl != NULL)
		pg_atomic_fetch_sub_u64(&ctl->missing, 1);
	my_wait_published = my_wait_missing = false;
	return waited;
}

/* Process exit: remove every row of this backend.  Never ERRORs. */
void
shared_locks_forget_backend(void)
{
	dshash_seq_status status;
	SharedLockRow *row;

	(void) shared_locks_wait_end();
	if (table == NULL)
		return;
	dshash_seq_init(&status, table, true);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		if (row->key.pid != MyProcPid)
			continue;
		if (row->nodes_fp != 0)
			pg_atomic_fetch_add_u64(&ctl->renewable_gen, 1);
		dsa_free(area, row->keytext);
		dshash_delete_current(&status);
		pg_atomic_fetch_sub_u64(&ctl->rows, 1);
	}
	dshash_seq_term(&status);
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

	shared_locks_require_preload("dlock_locks");
	dshash_seq_init(&status, table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		SharedLockRow *copy = palloc(sizeof(SharedLockRow) + row->keylen + 1);

		memcpy(copy, row, sizeof(SharedLockRow));
		memcpy(copy + 1, dsa_get_address(area, row->keytext), row->keylen + 1);
		rows = lappend(rows, copy);
	}
	dshash_seq_term(&status);
	foreach(lc, rows)
	{
		SharedLockRow *copy = lfirst(lc);

		fn(copy, (const char *) (copy + 1), copy->key.kind, arg);
	}
	return pg_atomic_read_u64(&ctl->missing);
}

/*
 * What the holder's COMMIT check needs: the lease end the keeper renewed
 * to, and whether the keeper found the lock lost.  False when the hold has
 * no row.  May ERROR (attach).
 */
bool
shared_locks_hold_state(DlockEntry *entry, DlockScope scope,
						TimestampTz *lease_end, bool *lost)
{
	SharedLockKey key;
	SharedLockRow *row;

	if (ctl == NULL || table == NULL)
		return false;
	key.pid = MyProcPid;
	key.kind = scope_kind(scope);
	key.hash = entry->hash;
	row = dshash_find(table, &key, false);
	if (row == NULL)
		return false;
	*lease_end = row->lease_expires_at;
	*lost = (row->state == 'l');
	dshash_release_lock(table, row);
	return true;
}

/*
 * The keeper: every held row of node set nodes_fp that has a lease to
 * renew, as palloc'd copies in items; *gen gets the generation they
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
	if (!attach())
		return 0;
	dshash_seq_init(&status, table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		const char *key;
		const char *ns;
		KeeperItem *it;

		if (row->state != 'h' || row->nodes_fp != nodes_fp)
			continue;
		if (n == room)
		{
			room *= 2;
			*items = repalloc(*items, room * sizeof(KeeperItem));
		}
		key = dsa_get_address(area, row->keytext);
		ns = key + row->keylen + 1;
		it = &(*items)[n++];
		it->key = row->key;
		it->dboid = row->dboid;
		it->backend_id = row->backend_id;
		it->lease_ms = row->lease_ms;
		it->lease_end = row->lease_expires_at;
		it->since = row->since;
		it->lockkey = psprintf("%s:lock:%s", ns, key);
		it->lockkey_len = strlen(it->lockkey);
		it->owner = pstrdup(ns + strlen(ns) + 1);
	}
	dshash_seq_term(&status);
	return n;
}

/* Changes whenever a renewable row comes, changes or goes. */
uint64
shared_locks_renewable_gen(void)
{
	return ctl ? pg_atomic_read_u64(&ctl->renewable_gen) : 0;
}

uint64
shared_locks_heartbeat(int backend_id)
{
	if (ctl == NULL || backend_id <= 0 || backend_id > ctl->nbackends)
		return 0;
	return pg_atomic_read_u64(&ctl->heartbeat[backend_id]);
}

/*
 * The keeper renewed the hold acquired at since to lease_end, or found it
 * lost.  A row of a later hold of the same key (released and taken again
 * meanwhile) is left alone.
 */
void
shared_locks_renewed(const SharedLockKey *key, TimestampTz since,
					 TimestampTz lease_end, bool lost)
{
	SharedLockRow *row;

	if (table == NULL)
		return;
	row = dshash_find(table, key, true);
	if (row == NULL)
		return;					/* released meanwhile */
	if (row->since != since)
	{
		dshash_release_lock(table, row);
		return;
	}
	if (lost)
		row->state = 'l';
	else if (row->state == 'h')
	{
		row->lease_expires_at = lease_end;
		row->renewals++;
	}
	dshash_release_lock(table, row);
}

/*
 * The waits in the local queue of database dboid on this instance, as
 * edges of the wait-for graph between sessions, for deadlock detection
 * across instances: a session waiting in the local queue for a key waits
 * for the session holding its local lock.  blocker_of(arg, ...) tells
 * whose, and 0 when that wait is not live in the lock manager (over, or a
 * wait on Redis).  Sessions are named by their session ids, read from
 * their wait rows and the owner values of their Redis holds; a holder with
 * neither cannot be part of a cycle and is left out.  Waits on Redis
 * itself, and this backend's own, are their waiters' to publish.
 */
typedef struct SessionId
{
	int			pid;			/* the hash key */
	char		id[LOCKEXT_SESSION_ID_LEN + 1];
} SessionId;

int
shared_locks_wait_edges(Oid dboid, WaitBlockerFn blocker_of, void *arg,
						WaitEdge **edges)
{
	dshash_seq_status status;
	SharedLockRow *row;
	List	   *waits = NIL;
	HTAB	   *ids;			/* pid -> session id, one per session */
	HASHCTL		ctl_ids;
	ListCell   *lc;
	int			n = 0;

	*edges = NULL;
	if (!attach())
		return 0;
	ctl_ids.keysize = sizeof(int);
	ctl_ids.entrysize = sizeof(SessionId);
	ctl_ids.hcxt = CurrentMemoryContext;
	ids = hash_create("lockext session ids", 64, &ctl_ids,
					  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	dshash_seq_init(&status, table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		const char *key = dsa_get_address(area, row->keytext);
		const char *ns = key + row->keylen + 1;
		const char *owner = ns + strlen(ns) + 1;
		int			pid = row->key.pid;
		SessionId  *sid;

		if (row->dboid != dboid || strlen(owner) < LOCKEXT_SESSION_ID_LEN)
			continue;			/* another database, or an advisory hold */
		sid = hash_search(ids, &pid, HASH_ENTER, NULL);
		memcpy(sid->id, owner, LOCKEXT_SESSION_ID_LEN);
		sid->id[LOCKEXT_SESSION_ID_LEN] = '\0';
		/* a wait on Redis names its remote holder */
		if (row->state == 'w' && pid != MyProcPid &&
			row->blocker_instance[0] == '\0' && row->blocker_pid == 0)
		{
			WaitEdge   *e = palloc0(sizeof(WaitEdge));

			e->waiter_pid = pid;
			memcpy(e->waiter, owner, LOCKEXT_SESSION_ID_LEN);
			e->since = row->since;
			e->hash = row->key.hash;
			e->key = pstrdup(key);
			waits = lappend(waits, e);
		}
	}
	dshash_seq_term(&status);

	*edges = palloc(Max(list_length(waits), 1) * sizeof(WaitEdge));
	foreach(lc, waits)
	{
		WaitEdge   *w = lfirst(lc);
		int			holder = blocker_of(arg, w->waiter_pid, dboid, w->hash);
		SessionId  *sid;

		if (holder == 0)
			continue;			/* not waiting in the local queue now */
		sid = hash_search(ids, &holder, HASH_FIND, NULL);
		if (sid == NULL)
			continue;			/* no id known: it cannot be in a cycle */
		(*edges)[n] = *w;
		(*edges)[n].holder_pid = holder;
		memcpy((*edges)[n].holder, sid->id, LOCKEXT_SESSION_ID_LEN + 1);
		n++;
	}
	hash_destroy(ids);
	return n;
}
