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
#include "registry_int.h"

#define REGISTRY_HASH_SEED	UINT64CONST(0x6c6f636b65787431)

static HTAB *registry = NULL;

/* Entries with transaction-scoped holds, so transaction end is O(those). */
static dlist_head xact_entries = DLIST_STATIC_INIT(xact_entries);
static int	xact_entry_count = 0;

/*
 * Entries with session holds: the first one tells in O(1) whether
 * pg_advisory_unlock_all() or DISCARD ALL took the session locks.
 */
static dlist_head session_entries = DLIST_STATIC_INIT(session_entries);
static int	session_entry_count = 0;

static void registry_xact_callback(XactEvent event, void *arg);
static void registry_subxact_callback(SubXactEvent event,
									  SubTransactionId mySubid,
									  SubTransactionId parentSubid,
									  void *arg);
static void registry_resowner_callback(ResourceReleasePhase phase,
									   bool isCommit, bool isTopLevel,
									   void *arg);
static void registry_exit_callback(int code, Datum arg);
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
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(DlockEntry);
	ctl.hcxt = TopMemoryContext;
	registry = hash_create("lockext registry", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	RegisterXactCallback(registry_xact_callback, NULL);
	RegisterSubXactCallback(registry_subxact_callback, NULL);
	RegisterResourceReleaseCallback(registry_resowner_callback, NULL);
	before_shmem_exit(registry_exit_callback, (Datum) 0);
	local_lock_init();
}

uint64
registry_hash_key(const char *key, int keylen)
{
	return hash_bytes_extended((const unsigned char *) key, keylen,
							   REGISTRY_HASH_SEED);
}

/* entry's last session hold is gone (or is being ended). */
static void
clear_session_holds(DlockEntry *entry)
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
 * The last hold of a scope of entry ended: its dlock_locks row goes, and
 * the backend releases the lock.  Never ERRORs.
 */
static void
release_scope(DlockEntry *entry, DlockScope scope, bool lockmgr_releases,
			  bool is_abort)
{
	shared_locks_unpublish(entry, scope);
	entry->backend->release(entry, scope, lockmgr_releases, is_abort);
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
		clear_session_holds(entry);
		/* the local lock is gone; let the backend drop the rest */
		release_scope(entry, DLOCK_SCOPE_SESSION, true, false);
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
		entry->subs = MemoryContextAlloc(TopMemoryContext,
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

/* The last transaction-scoped hold of entry is gone. */
static void
unlink_xact_entry(DlockEntry *entry)
{
	entry->xact_holds = 0;
	entry->nsubs = 0;
	dlist_delete(&entry->xact_node);
	xact_entry_count--;
}

static void
end_xact_holds(DlockEntry *entry, bool lockmgr_releases, bool is_abort)
{
	unlink_xact_entry(entry);
	release_scope(entry, DLOCK_SCOPE_XACT, lockmgr_releases, is_abort);
	registry_forget_if_unheld(entry);
}

/*
 * End the holds in ends[] (each entry's scope has no hold left): in one
 * call for a backend that can release many at once, so a large release is
 * one sweep rather than a round trip per key; then forget the entries that
 * hold nothing.  Runs after the commit record and on the abort path:
 * nothing here may ERROR.
 */
static void
end_holds(DlockEnding *ends, int n, bool lockmgr_releases, bool is_abort)
{
	int			nmany = 0;
	int			i;

	/* the ones whose backend takes many at once go first (one backend does) */
	for (i = 0; i < n; i++)
		if (ends[i].entry->backend->release_many != NULL)
		{
			DlockEnding tmp = ends[nmany];

			ends[nmany++] = ends[i];
			ends[i] = tmp;
		}
	for (i = 0; i < nmany; i++)
		shared_locks_unpublish(ends[i].entry, ends[i].scope);
	if (nmany > 0)
		ends[0].entry->backend->release_many(ends, nmany, lockmgr_releases,
											 is_abort);
	for (i = nmany; i < n; i++)
		release_scope(ends[i].entry, ends[i].scope, lockmgr_releases,
					  is_abort);
	for (i = 0; i < n; i++)
		registry_forget_if_unheld(ends[i].entry);
}

/*
 * Room for n endings, malloc'd: palloc may ERROR where we must not.  NULL
 * when out of memory; callers then end holds one at a time.
 */
static DlockEnding *
alloc_endings(int n)
{
	return malloc(Max(n, 1) * sizeof(DlockEnding));
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
		char	   *keycopy = MemoryContextAlloc(TopMemoryContext, keylen + 1);

		memcpy(keycopy, key, keylen);
		keycopy[keylen] = '\0';
		entry = hash_search(registry, &hash, HASH_ENTER, NULL);
		MemSet(((char *) entry) + sizeof(uint64), 0,
			   sizeof(DlockEntry) - sizeof(uint64));
		entry->key = keycopy;
		entry->keylen = keylen;
		entry->backend = lockext_current_backend();
		local_lock_set_tag(&entry->tag, hash);
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
		clear_session_holds(entry);
		release_scope(entry, scope, false, false);
		registry_forget_if_unheld(entry);
	}
	else
		end_xact_holds(entry, false, false);
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
		clear_session_holds(entry);
		release_scope(entry, DLOCK_SCOPE_SESSION, false, false);
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
			clear_session_holds(entry);
			ends[released].entry = entry;
			ends[released++].scope = DLOCK_SCOPE_SESSION;
		}
	}
	/* one sweep for all of them; then the entries holding nothing go */
	end_holds(ends, released, false, false);
	pfree(ends);
	return released;
}

/*
 * pg_advisory_unlock_all() and DISCARD ALL release every session lock of
 * the user lock method, ours with them: end those holds everywhere at
 * once (Redis too, in one sweep), so that no Redis lock outlives its local
 * lock and the keeper renews no orphan.  O(1) when nothing happened: they
 * take all session locks or none, so the first entry's tells.  Runs at the
 * end of every statement and of every transaction; never ERRORs.
 */
void
registry_check_session_holds(void)
{
	dlist_mutable_iter iter;
	DlockEntry *first;
	DlockEnding *ends;
	int			nends = 0;

	if (dlist_is_empty(&session_entries))
		return;
	first = dlist_head_element(DlockEntry, session_node, &session_entries);
	if (first->backend->still_held(first, DLOCK_SCOPE_SESSION))
		return;

	ends = alloc_endings(session_entry_count);
	dlist_foreach_modify(iter, &session_entries)
	{
		DlockEntry *entry = dlist_container(DlockEntry, session_node, iter.cur);

		if (entry->backend->still_held(entry, DLOCK_SCOPE_SESSION))
			continue;
		clear_session_holds(entry);
		if (ends == NULL)
		{
			release_scope(entry, DLOCK_SCOPE_SESSION, true, false);
			registry_forget_if_unheld(entry);
			continue;
		}
		ends[nends].entry = entry;
		ends[nends++].scope = DLOCK_SCOPE_SESSION;
	}
	if (ends != NULL)
	{
		end_holds(ends, nends, true, false);
		free(ends);
	}
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

	if (pre_commit_checked)
		return;
	dlist_foreach(iter, &xact_entries)
	{
		DlockEntry *entry = dlist_container(DlockEntry, xact_node, iter.cur);

		if (entry->backend->verify)
			entry->backend->verify(entry);
	}
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
	registry_check_session_holds();
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

static void
registry_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg pg_attribute_unused())
{
	dlist_mutable_iter iter;

	DlockEnding *ends = NULL;
	int			nends = 0;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		ends = alloc_endings(xact_entry_count);

	dlist_foreach_modify(iter, &xact_entries)
	{
		DlockEntry *entry = dlist_container(DlockEntry, xact_node, iter.cur);
		DlockSubHold *top = &entry->subs[entry->nsubs - 1];

		/* holds of inner subtransactions were settled when those ended */
		if (top->subid != mySubid)
			continue;

		if (event == SUBXACT_EVENT_COMMIT_SUB)
		{
			if (entry->nsubs > 1 && top[-1].subid == parentSubid)
			{
				top[-1].count += top->count;
				entry->nsubs--;
			}
			else
				top->subid = parentSubid;
		}
		else
		{
			entry->xact_holds -= top->count;
			entry->nsubs--;
			if (entry->xact_holds == 0 && ends == NULL)
				end_xact_holds(entry, true, true);
			else if (entry->xact_holds == 0)
			{
				unlink_xact_entry(entry);
				ends[nends].entry = entry;
				ends[nends++].scope = DLOCK_SCOPE_XACT;
			}
		}
	}
	if (ends != NULL)
	{
		end_holds(ends, nends, true, true);
		free(ends);
	}
}

/*
 * The end of the top transaction.  BEFORE_LOCKS runs before the lock
 * manager lets the next local waiter in, so a remote lock is already gone
 * when it wakes.  Nothing here may ERROR: on commit the commit record is
 * written, on abort we are cleaning up.
 */
static void
registry_resowner_callback(ResourceReleasePhase phase, bool isCommit,
						   bool isTopLevel, void *arg pg_attribute_unused())
{
	dlist_mutable_iter iter;
	DlockEnding *ends;
	int			nends = 0;

	if (phase != RESOURCE_RELEASE_BEFORE_LOCKS || !isTopLevel ||
		CurrentResourceOwner != TopTransactionResourceOwner)
		return;

	/* pg_advisory_unlock_all() in a statement that failed afterwards */
	registry_check_session_holds();

	ends = alloc_endings(xact_entry_count);
	dlist_foreach_modify(iter, &xact_entries)
	{
		DlockEntry *entry = dlist_container(DlockEntry, xact_node, iter.cur);

		if (ends == NULL)
		{
			end_xact_holds(entry, true, !isCommit);
			continue;
		}
		unlink_xact_entry(entry);
		ends[nends].entry = entry;
		ends[nends++].scope = DLOCK_SCOPE_XACT;
	}
	if (ends != NULL)
	{
		end_holds(ends, nends, true, !isCommit);
		free(ends);
	}
}

/*
 * Session end: best effort, the lock manager and the lease do the rest.
 * This runs before the open transaction (if any) is aborted, so it ends
 * the holds of both scopes itself, in one sweep: a key held in both must
 * not be left to an abort that believes the session scope still holds it.
 */
static void
registry_exit_callback(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	HASH_SEQ_STATUS status;
	DlockEntry *entry;
	DlockEnding *ends;
	int			nends = 0;

	if (registry == NULL || lockext_debug_skip_exit_cleanup)
		return;
	ends = alloc_endings(registry_count());
	hash_seq_init(&status, registry);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		DlockScope	scope = entry->session_holds > 0 ?
			DLOCK_SCOPE_SESSION : DLOCK_SCOPE_XACT;

		if (entry->session_holds == 0 && entry->xact_holds == 0)
			continue;
		if (entry->session_holds > 0 && entry->xact_holds > 0)
			shared_locks_unpublish(entry, DLOCK_SCOPE_XACT);
		clear_session_holds(entry);
		if (entry->xact_holds > 0)
			unlink_xact_entry(entry);
		if (ends == NULL)
		{
			release_scope(entry, scope, true, true);
			continue;
		}
		ends[nends].entry = entry;
		ends[nends++].scope = scope;
	}
	if (ends != NULL)
	{
		end_holds(ends, nends, true, true);
		free(ends);
	}
	if (redis_backend.at_exit)
		redis_backend.at_exit();
	shared_locks_forget_backend();
}
