/*-------------------------------------------------------------------------
 *
 * release.c
 *	  The release path: everything that ends holds after the commit record,
 *	  on the abort path and at process exit — the subtransaction,
 *	  resource-owner and exit callbacks, and the sweeps they make.
 *
 * The promise of this module (design: "The release path"): nothing here,
 * and nothing it reaches, pallocs, raises an ERROR, attaches shared memory,
 * connects, resolves a name, reads a file or creates a wait set.  An ERROR
 * after the commit record would be a PANIC for a writing transaction.  It
 * consumes what the acquire prepared while an ERROR was still allowed: the
 * registry entry, the hold's shared row (a direct pointer), the lock
 * backend's own state of the hold; it sends only on connections already
 * open, and whatever it cannot finish is left to the lease keeper, which
 * may do what this module may not.  test/release_path_check.pl proves the
 * promise from the compiler's call graph, from this file's non-static
 * functions, and fails the build otherwise.
 *
 * The PRE_COMMIT lease check and the refusal of PREPARE may ERROR; they are
 * the registry's (registry.c), not part of this path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "storage/ipc.h"
#include "utils/resowner.h"

#include "lockext.h"
#include "registry.h"
#include "shared_locks.h"
#include "registry_int.h"

#define xact_entries (registry_state.xact_entries)
#define xact_entry_count (registry_state.xact_entry_count)
#define session_entries (registry_state.session_entries)
#define session_entry_count (registry_state.session_entry_count)
#define registry (registry_state.table)

static void end_holds(DlockEnding *ends, int n, bool lockmgr_releases,
					  bool is_abort, bool forget);

/*
 * The last hold of a scope of entry ended: its dlock_locks row goes, and
 * the backend releases the lock.  Never ERRORs.
 */
void
release_end_scope(DlockEntry *entry, DlockScope scope, bool lockmgr_releases,
				  bool is_abort)
{
	DlockEnding end;

	end.entry = entry;
	end.scope = scope;
	end.row = NULL;				/* end_holds fills it in */
	end_holds(&end, 1, lockmgr_releases, is_abort, false);
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

void
release_end_xact_holds(DlockEntry *entry, bool lockmgr_releases, bool is_abort)
{
	unlink_xact_entry(entry);
	release_end_scope(entry, DLOCK_SCOPE_XACT, lockmgr_releases, is_abort);
	registry_forget_if_unheld(entry);
}

/*
 * End the holds in ends[] (each entry's scope has no hold left): in one
 * call for a backend that can release many at once, so a large release is
 * one sweep rather than a round trip per key; then, with forget, forget
 * the entries that hold nothing.  Runs after the commit record and on the
 * abort path: nothing here may ERROR.
 */
static void
end_holds(DlockEnding *ends, int n, bool lockmgr_releases, bool is_abort,
		  bool forget)
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
	for (i = 0; i < n; i++)
		ends[i].row = shared_locks_unpublish(ends[i].entry, ends[i].scope);
	/* that backend confirms each row when its release is done */
	if (nmany > 0)
		ends[0].entry->backend->release_many(ends, nmany, lockmgr_releases,
											 is_abort);
	for (i = nmany; i < n; i++)
	{
		ends[i].entry->backend->release(ends[i].entry, ends[i].scope,
										lockmgr_releases, is_abort);
		shared_locks_release_confirmed(ends[i].row);
	}
	if (forget)
		for (i = 0; i < n; i++)
			registry_forget_if_unheld(ends[i].entry);
}

void
release_end_holds(DlockEnding *ends, int n, bool lockmgr_releases, bool is_abort)
{
	end_holds(ends, n, lockmgr_releases, is_abort, true);
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
 * pg_advisory_unlock_all() and DISCARD ALL release every session lock of
 * the user lock method, ours with them: end those holds everywhere at
 * once (Redis too, in one sweep), so that no Redis lock outlives its local
 * lock and the keeper renews no orphan.  O(1) when nothing happened: they
 * take all session locks or none, so the first entry's tells.  Runs at the
 * end of every statement and of every transaction; never ERRORs.
 */
void
release_check_session_holds(void)
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
		registry_clear_session_holds(entry);
		if (ends == NULL)
		{
			release_end_scope(entry, DLOCK_SCOPE_SESSION, true, false);
			registry_forget_if_unheld(entry);
			continue;
		}
		ends[nends].entry = entry;
		ends[nends++].scope = DLOCK_SCOPE_SESSION;
	}
	if (ends != NULL)
	{
		release_end_holds(ends, nends, true, false);
		free(ends);
	}
}

void
release_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
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
				release_end_xact_holds(entry, true, true);
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
		release_end_holds(ends, nends, true, true);
		free(ends);
	}
}

/*
 * The end of the top transaction.  BEFORE_LOCKS runs before the lock
 * manager lets the next local waiter in, so a remote lock is already gone
 * when it wakes.  Nothing here may ERROR: on commit the commit record is
 * written, on abort we are cleaning up.
 */
void
release_resowner_callback(ResourceReleasePhase phase, bool isCommit,
						   bool isTopLevel, void *arg pg_attribute_unused())
{
	dlist_mutable_iter iter;
	DlockEnding *ends;
	int			nends = 0;

	if (phase != RESOURCE_RELEASE_BEFORE_LOCKS || !isTopLevel ||
		CurrentResourceOwner != TopTransactionResourceOwner)
		return;

	/* pg_advisory_unlock_all() in a statement that failed afterwards */
	release_check_session_holds();

	ends = alloc_endings(xact_entry_count);
	dlist_foreach_modify(iter, &xact_entries)
	{
		DlockEntry *entry = dlist_container(DlockEntry, xact_node, iter.cur);

		if (ends == NULL)
		{
			release_end_xact_holds(entry, true, !isCommit);
			continue;
		}
		unlink_xact_entry(entry);
		ends[nends].entry = entry;
		ends[nends++].scope = DLOCK_SCOPE_XACT;
	}
	if (ends != NULL)
	{
		release_end_holds(ends, nends, true, !isCommit);
		free(ends);
	}
}

/*
 * Session end: best effort, the lock manager and the lease do the rest.
 * This runs before the open transaction (if any) is aborted, so it ends
 * the holds of both scopes itself, in one sweep: a key held in both must
 * not be left to an abort that believes the session scope still holds it.
 */
void
release_exit_callback(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
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
			shared_locks_release_confirmed(shared_locks_unpublish(entry,
																  DLOCK_SCOPE_XACT));
		registry_clear_session_holds(entry);
		if (entry->xact_holds > 0)
			unlink_xact_entry(entry);
		if (ends == NULL)
		{
			release_end_scope(entry, scope, true, true);
			continue;
		}
		ends[nends].entry = entry;
		ends[nends++].scope = scope;
	}
	if (ends != NULL)
	{
		release_end_holds(ends, nends, true, true);
		free(ends);
	}
	if (redis_backend.at_exit)
		redis_backend.at_exit();
	shared_locks_exit();
}
