/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The per-backend registry of held dlocks, and the transaction,
 *	  subtransaction and resource-owner callbacks that end holds.
 *
 * A key is held in session scope (counted holds, ended by dlock_release)
 * and/or in transaction scope (holds recorded per subtransaction: an
 * aborted subtransaction drops its holds, a committed one passes them to
 * its parent, the end of the top transaction drops them all).  The
 * registry calls the key's backend only when a scope's first hold starts
 * or its last hold ends, so reentrant acquires cost a hash lookup.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "storage/ipc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "lockext.h"
#include "local_lock.h"
#include "registry.h"
#include "shared_locks.h"
#include "shared_stats.h"
#include "registry_int.h"

#define REGISTRY_HASH_SEED	UINT64CONST(0x6c6f636b65787431)

RegistryState registry_state = {
	.xact_entries = DLIST_STATIC_INIT(registry_state.xact_entries),
	.session_entries = DLIST_STATIC_INIT(registry_state.session_entries),
};

#define registry (registry_state.table)
#define xact_entries (registry_state.xact_entries)
#define xact_entry_count (registry_state.xact_entry_count)
#define session_entries (registry_state.session_entries)
#define session_entry_count (registry_state.session_entry_count)

static void registry_xact_callback(XactEvent event, void *arg);
static void registry_late_xact_callback(XactEvent event, void *arg);

/*
 * Transaction callbacks run newest first, and postgres_fdw (like other
 * FDWs) commits its remote transactions in its PRE_COMMIT callback,
 * registered when the session first connects, in whatever statement that
 * is: a query, a foreign partition, COPY FROM into a foreign table.  Our
 * check of the leases must run before that, or a lost lock would roll
 * back only the local writes.  So after every statement of a transaction
 * that holds dlocks, a second callback that does the PRE_COMMIT check is
 * registered anew, newest of all.
 */
static bool late_callback_registered = false;

/* Keys and subtransaction records of held entries; the largest registry. */
static MemoryContext keys_cxt = NULL;

/*
 * The registry's own allocations (its entries in runs of about 8 kB, its
 * buckets).  dynahash's private context grows by doubling blocks up to
 * 8 MB, a third of a large registry's memory left unused; small blocks
 * and runs allocated whole keep that to a few percent.  Reset when the
 * registry is made anew.
 */
static MemoryContext entries_cxt = NULL;

static void *
registry_alloc(Size size)
{
	/* as dynahash's own: NULL, and hash_search reports it */
	return MemoryContextAllocExtended(entries_cxt, size, MCXT_ALLOC_NO_OOM);
}

static long registry_peak = 0;
static bool pre_commit_checked = false;
static ExecutorEnd_hook_type prev_executor_end = NULL;

/*
 * Set up on first use in a backend rather than in _PG_init: with
 * shared_preload_libraries _PG_init runs in the postmaster, whose exit
 * callbacks its children do not inherit.
 */
void
registry_init(void)
{
	HASHCTL		ctl;

	/* a worker's registry is its own, empty: it would see none of ours */
	if (IsParallelWorker())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dlock functions cannot run in a parallel worker"),
				 errdetail("A parallel worker does not share its leader's locks."),
				 errhint("Mark the function that calls them PARALLEL UNSAFE.")));
	if (registry != NULL)
		return;
	if (keys_cxt == NULL)
	{
		/* freed chunks go back with their block: memory returns */
		keys_cxt = GenerationContextCreate(TopMemoryContext, "lockext keys",
										   0, 8 * 1024, 8 * 1024);
		/* what ends holds is the release module's alone (release.c) */
		RegisterXactCallback(registry_xact_callback, NULL);
		RegisterSubXactCallback(release_subxact_callback, NULL);
		RegisterResourceReleaseCallback(release_resowner_callback, NULL);
		before_shmem_exit(release_exit_callback, (Datum) 0);
		local_lock_init();
	}
	if (entries_cxt == NULL)
		entries_cxt = AllocSetContextCreate(TopMemoryContext, "lockext registry",
											0, 8 * 1024, 8 * 1024);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(DlockEntry);
	ctl.hcxt = TopMemoryContext;
	ctl.alloc = registry_alloc;
	registry = hash_create("lockext registry", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT | HASH_ALLOC);
	registry_peak = 0;
}

/*
 * A dynahash never gives back the entries it grew to: once a large
 * registry is empty again (at a statement's end), it is made anew.
 */
static void
shrink_registry(void)
{
	long		n;

	if (registry == NULL)
		return;
	n = hash_get_num_entries(registry);
	registry_peak = Max(registry_peak, n);
	if (n == 0 && registry_peak > 256)
	{
		hash_destroy(registry);
		registry = NULL;
		MemoryContextReset(entries_cxt);
	}
}

uint64
registry_hash_key(const char *key, int keylen)
{
	return hash_bytes_extended((const unsigned char *) key, keylen,
							   REGISTRY_HASH_SEED);
}

/* entry's last session hold is gone (or is being ended).  Never ERRORs. */
void
registry_clear_session_holds(DlockEntry *entry)
{
	if (entry->session_holds > 0)
	{
		dlist_delete(&entry->session_node);
		session_entry_count--;
	}
	entry->session_holds = 0;
}

static inline int
scope_holds(DlockEntry *entry, DlockScope scope)
{
	return scope == DLOCK_SCOPE_SESSION ? entry->session_holds : entry->xact_holds;
}

/* Remove an entry that no longer holds anything. */
void
registry_forget_if_unheld(DlockEntry *entry)
{
	if (entry->session_holds > 0 || entry->xact_holds > 0)
		return;
	Assert(entry->nsubs == 0);
	if (entry->key)
		pfree(entry->key);
	if (entry->subs)
		pfree(entry->subs);
	hash_search(registry, &entry->hash, HASH_REMOVE, NULL);
}

/*
 * Distinct keys with equal 64-bit hashes would share one local lock; refuse
 * the second rather than silently coupling two keys.
 */
static void
check_same_key(DlockEntry *entry, const char *key, int keylen)
{
	if (entry->keylen != keylen || memcmp(entry->key, key, keylen) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("lock key \"%s\" collides with held lock key \"%s\"",
						key, entry->key),
				 errdetail("Both keys have the same 64-bit hash.")));
}

/*
 * Session holds can vanish behind our back: pg_advisory_unlock_all() and
 * DISCARD ALL release every session lock of the user lock method.
 */
static void
sync_entry(DlockEntry *entry)
{
	if (entry->session_holds > 0 &&
		!entry->backend->still_held(entry, DLOCK_SCOPE_SESSION))
	{
		registry_clear_session_holds(entry);
		/* the local lock is gone; let the backend drop the rest */
		release_end_scope(entry, DLOCK_SCOPE_SESSION, true, false);
	}
}

DlockEntry *
registry_lookup(const char *key, int keylen)
{
	uint64		hash = registry_hash_key(key, keylen);
	DlockEntry *entry;

	registry_init();
	entry = hash_search(registry, &hash, HASH_FIND, NULL);
	if (entry == NULL)
		return NULL;
	check_same_key(entry, key, keylen);
	sync_entry(entry);
	if (entry->session_holds == 0 && entry->xact_holds == 0)
	{
		registry_forget_if_unheld(entry);
		return NULL;
	}
	return entry;
}

/* Make room for one more subtransaction record before anything is taken. */
void
registry_reserve_sub_slot(DlockEntry *entry)
{
	if (entry->nsubs < entry->maxsubs)
		return;
	if (entry->subs == NULL)
	{
		entry->maxsubs = 4;
		entry->subs = MemoryContextAlloc(keys_cxt,
										 entry->maxsubs * sizeof(DlockSubHold));
	}
	else
	{
		entry->maxsubs *= 2;
		entry->subs = repalloc(entry->subs,
							   entry->maxsubs * sizeof(DlockSubHold));
	}
}

/* Record one hold; cannot fail (room was reserved). */
void
registry_add_hold(DlockEntry *entry, DlockScope scope)
{
	if (scope == DLOCK_SCOPE_SESSION)
	{
		if (entry->session_holds++ == 0)
		{
			dlist_push_tail(&session_entries, &entry->session_node);
			session_entry_count++;
		}
		return;
	}
	else
	{
		SubTransactionId subid = GetCurrentSubTransactionId();

		if (entry->nsubs > 0 && entry->subs[entry->nsubs - 1].subid == subid)
			entry->subs[entry->nsubs - 1].count++;
		else
		{
			Assert(entry->nsubs < entry->maxsubs);
			entry->subs[entry->nsubs].subid = subid;
			entry->subs[entry->nsubs].count = 1;
			entry->nsubs++;
		}
		if (entry->xact_holds++ == 0)
		{
			dlist_push_tail(&xact_entries, &entry->xact_node);
			xact_entry_count++;
		}
	}
}

/*
 * The entry of key, created (holding nothing) if need be: the caller takes
 * a hold, or forgets it again.  May ERROR (a hash collision, no memory).
 */
DlockEntry *
registry_entry_for(const char *key, int keylen)
{
	uint64		hash = registry_hash_key(key, keylen);
	DlockEntry *entry = hash_search(registry, &hash, HASH_FIND, NULL);

	if (entry == NULL)
	{
		/* copy the key first so an entry never lacks one */
		char	   *keycopy = MemoryContextAlloc(keys_cxt, keylen + 1);

		memcpy(keycopy, key, keylen);
		keycopy[keylen] = '\0';
		entry = hash_search(registry, &hash, HASH_ENTER, NULL);
		MemSet(((char *) entry) + sizeof(uint64), 0,
			   sizeof(DlockEntry) - sizeof(uint64));
		entry->key = keycopy;
		entry->keylen = keylen;
		entry->backend = lockext_current_backend();
	}
	else
	{
		check_same_key(entry, key, keylen);
		sync_entry(entry);
	}
	return entry;
}

/*
 * dlock_stats: an acquire that ERRORed, after waiting wait_us (-1: no
 * wait).  From a PG_CATCH block, with the error still pending; cxt is a
 * context to copy it into.
 */
void
registry_count_failed_acquire(int64 wait_us, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	ErrorData  *edata = CopyErrorData();

	MemoryContextSwitchTo(oldcxt);
	shared_stats_wait_ended(wait_us);
	switch (edata->sqlerrcode)
	{
		case ERRCODE_LOCK_NOT_AVAILABLE:
			shared_stats_count(DLOCK_STAT_TIMEOUTS, 1);
			break;
		case ERRCODE_T_R_DEADLOCK_DETECTED:
			shared_stats_count(DLOCK_STAT_DEADLOCKS, 1);
			break;
		case ERRCODE_QUERY_CANCELED:
			if (wait_us >= 0)
				shared_stats_count(DLOCK_STAT_CANCELED, 1);
			break;
	}
	FreeErrorData(edata);
}

/* Give back the scope of entry just granted (its only hold). */
static void
undo_grant(DlockEntry *entry, DlockScope scope)
{
	if (scope == DLOCK_SCOPE_SESSION)
	{
		registry_clear_session_holds(entry);
		release_end_scope(entry, scope, false, false);
		registry_forget_if_unheld(entry);
	}
	else
		release_end_xact_holds(entry, false, false);
}

DlockEntry *
registry_acquire(const char *key, int keylen, DlockScope scope,
				 int64 timeout_ms, int64 lease_ms, char **busy_detail)
{
	DlockEntry *entry;
	volatile bool granted = false;
	MemoryContext cxt = CurrentMemoryContext;
	int64		waited;

	registry_init();
	shared_stats_prepare();
	entry = registry_entry_for(key, keylen);

	if (scope == DLOCK_SCOPE_XACT)
		registry_reserve_sub_slot(entry);

	/* Reentrant: the backend already holds this scope. */
	if (scope_holds(entry, scope) > 0)
	{
		registry_add_hold(entry, scope);
		return entry;
	}

	PG_TRY();
	{
		granted = entry->backend->acquire(entry, scope, timeout_ms, lease_ms,
										   busy_detail);
	}
	PG_CATCH();
	{
		waited = shared_locks_wait_end();
		registry_forget_if_unheld(entry);
		registry_count_failed_acquire(waited, cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	waited = shared_locks_wait_end();
	shared_stats_wait_ended(waited);

	if (!granted)
	{
		shared_stats_count(timeout_ms == 0 ? DLOCK_STAT_BUSY :
						   DLOCK_STAT_TIMEOUTS, 1);
		registry_forget_if_unheld(entry);
		return NULL;
	}
	shared_stats_count(waited >= 0 ? DLOCK_STAT_ACQUIRED_AFTER_WAIT :
					   DLOCK_STAT_ACQUIRED, 1);

	if (entry->session_holds == 0 && entry->xact_holds == 0)
	{
		/* A fresh grant: a new holder period with a new token. */
		registry_add_hold(entry, scope);
		entry->acquired_at = GetCurrentTimestamp();
		PG_TRY();
		{
			entry->backend->draw_token(entry);
		}
		PG_CATCH();
		{
			/* Give the lock back rather than hold it without a token. */
			undo_grant(entry, scope);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	else
		registry_add_hold(entry, scope);

	PG_TRY();
	{
		shared_locks_publish(entry, scope);
	}
	PG_CATCH();
	{
		/* no row, no renewal: never hold a lock nobody renews */
		undo_grant(entry, scope);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return entry;
}

/* entry's token or lease changed (dlock_extend): update its rows. */
void
registry_republish(DlockEntry *entry)
{
	if (entry->session_holds > 0)
		shared_locks_publish(entry, DLOCK_SCOPE_SESSION);
	if (entry->xact_holds > 0)
		shared_locks_publish(entry, DLOCK_SCOPE_XACT);
}

bool
registry_release_session(DlockEntry *entry)
{
	if (entry->session_holds == 0)
		return false;
	if (entry->session_holds > 1)
		entry->session_holds--;
	else
	{
		registry_clear_session_holds(entry);
		release_end_scope(entry, DLOCK_SCOPE_SESSION, false, false);
		registry_forget_if_unheld(entry);
	}
	return true;
}

int
registry_release_all_session(void)
{
	HASH_SEQ_STATUS status;
	DlockEntry *entry;
	int			released = 0;

	DlockEnding *ends;

	registry_init();
	ends = palloc(Max(registry_count(), 1) * sizeof(DlockEnding));
	hash_seq_init(&status, registry);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		sync_entry(entry);
		if (entry->session_holds > 0)
		{
			registry_clear_session_holds(entry);
			ends[released].entry = entry;
			ends[released++].scope = DLOCK_SCOPE_SESSION;
		}
	}
	/* one sweep for all of them; then the entries holding nothing go */
	release_end_holds(ends, released, false, false);
	pfree(ends);
	return released;
}

int
registry_count(void)
{
	return registry ? (int) hash_get_num_entries(registry) : 0;
}

/* Call fn for every held entry, after bringing session holds up to date. */
void
registry_foreach(void (*fn) (DlockEntry *entry, void *arg), void *arg)
{
	HASH_SEQ_STATUS status;
	DlockEntry *entry;

	registry_init();
	hash_seq_init(&status, registry);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		sync_entry(entry);
		if (entry->session_holds == 0 && entry->xact_holds == 0)
		{
			registry_forget_if_unheld(entry);
			continue;
		}
		fn(entry, arg);
	}
}

/*
 * PRE_COMMIT: the last moment a lost lock can still fail the transaction.
 * Done once per commit by whichever of our callbacks runs first.
 */
static void
check_leases(void)
{
	dlist_iter	iter;

	DlockEntry **many;
	int			nmany = 0;

	if (pre_commit_checked || xact_entry_count == 0)
	{
		pre_commit_checked = true;
		return;
	}
	many = palloc(xact_entry_count * sizeof(DlockEntry *));
	dlist_foreach(iter, &xact_entries)
	{
		DlockEntry *entry = dlist_container(DlockEntry, xact_node, iter.cur);

		/* a backend that checks many at once gets them together */
		if (entry->backend->verify_many)
			many[nmany++] = entry;
		else if (entry->backend->verify)
			entry->backend->verify(entry);
	}
	if (nmany > 0)
		many[0]->backend->verify_many(many, nmany);
	pre_commit_checked = true;
}

/*
 * The lease check's part of a transaction event; the late callback is
 * just this, the first one calls it too.
 */
static void
registry_late_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_PRE_COMMIT)
		check_leases();
	else if (event != XACT_EVENT_PRE_PREPARE)
		pre_commit_checked = false;		/* the transaction has ended */
}

/*
 * A statement ended: an FDW may have registered its callbacks while it
 * ran, and it may have called pg_advisory_unlock_all().  From the
 * executor's and the utility hooks; may ERROR (a statement's end).
 */
void
registry_statement_end(void)
{
	/* not once the commit's callbacks run: one may be next in their list */
	if (!dlist_is_empty(&xact_entries) && !pre_commit_checked)
	{
		/* re-registering keeps ours the newest callback */
		if (late_callback_registered)
			UnregisterXactCallback(registry_late_xact_callback, NULL);
		RegisterXactCallback(registry_late_xact_callback, NULL);
		late_callback_registered = true;
	}
	release_check_session_holds();
	if (redis_backend.statement_end)
		redis_backend.statement_end();
	shared_locks_collect_ended();
	shrink_registry();
}

static void
registry_executor_end(QueryDesc *queryDesc)
{
	if (prev_executor_end)
		prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	registry_statement_end();
}

void
registry_install_hooks(void)
{
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = registry_executor_end;
}

static void
registry_xact_callback(XactEvent event, void *arg)
{
	registry_late_xact_callback(event, arg);

	/* Like postgres_fdw: a prepared transaction cannot keep our holds. */
	if (event == XACT_EVENT_PRE_PREPARE && !dlist_is_empty(&xact_entries))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot PREPARE a transaction that holds transaction-scoped dlocks"),
				 errhint("Commit or roll back the transaction instead, or take the locks with dlock_acquire_session().")));
}

