/*-------------------------------------------------------------------------
 *
 * redis_backend_release.c
 *	  The redis backend's part of the release path: ending holds in Redis
 *	  (one sweep per node set), the confirmations that end their rows, and
 *	  what a session does at a statement's end and at exit.
 *
 * Everything here runs after the commit record, on the abort path or at
 * process exit (release.c calls it through DlockBackend): it never
 * ERRORs, never pallocs, and sends only on connections already open; a
 * failed release is a WARNING, and what is not confirmed the lease keeper
 * finishes from the holds' rows.  test/release_path_check.pl checks it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "redis_backend.h"
#include "keeper_state.h"
#include "local_lock.h"
#include "shared_locks.h"
#include "shared_stats.h"

/*
 * redis_unsent_hook: a sweep kept releases for a connection that is not
 * there; the keeper sends them again from the rows now, rather than once
 * they look stale.
 */
void
redis_ask_keeper(void)
{
	shared_locks_ask_sweep();
	keeper_state_poke(0);
}

/* redis_confirm_hook: the releases of these rows are confirmed. */
void
redis_confirm_rows(void *const *tags, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		shared_locks_release_confirmed((struct SharedLockRow *) tags[i]);
}

static inline bool
other_scope_holds(DlockEntry *entry, DlockScope scope)
{
	return scope == DLOCK_SCOPE_SESSION ? entry->xact_holds > 0 :
		entry->session_holds > 0;
}

/*
 * End holds: Redis first, in one sweep, so the next local waiter finds
 * the keys free; then the local locks.  A transaction's end does not wait
 * for Redis's answers: the commands are on their way before the local
 * lock lets the next waiter in, Redis runs one connection's commands in
 * order, and a release that fails is only a WARNING anyway; that saves a
 * round trip per transaction.  dlock_release(), dlock_release_all() and
 * session exit wait, to report what happened.  Nothing here may ERROR or
 * palloc: it runs after the commit record and on the abort path.
 */
void
redis_release_many(DlockEnding *ends, int n, bool xact_end,
				   bool is_abort pg_attribute_unused())
{
	RedisRelease one = {0};
	RedisRelease *rel = n > 1 ? malloc(n * sizeof(RedisRelease)) : &one;
	int		   *rel_of = n > 1 ? malloc(n * sizeof(int)) : NULL;
	char		detail[512];
	bool		wait = false;
	int			m = 0;
	int			total = 0;		/* releases sent, either way */
	const char *last_key = NULL;
	int			lost = 0;
	int			i;

	/* a FATAL may have come in the middle of a command */
	redis_abandon_inflight();

	for (i = 0; i < n; i++)
	{
		DlockEntry *entry = ends[i].entry;
		RedisHold  *hold = (RedisHold *) entry->backend_data;

		if (other_scope_holds(entry, ends[i].scope) || hold == NULL)
		{
			shared_locks_release_confirmed(ends[i].row);	/* none to send */
			continue;
		}
		total++;
		last_key = entry->key;
		if (rel == NULL || (n > 1 && rel_of == NULL))
		{
			/* out of memory: one at a time */
			one.key = entry->key;
			one.hold = hold;
			one.tag = ends[i].row;
			lost += redis_proto_release_many(&one, 1, true, detail, sizeof(detail));
			continue;
		}
		if (rel_of != NULL)
			rel_of[m] = i;
		rel[m].key = entry->key;
		rel[m].hold = hold;
		rel[m].tag = ends[i].row;	/* confirmed by redis_confirm_hook */
		m++;
		wait |= (ends[i].scope == DLOCK_SCOPE_SESSION);
	}
	/*
	 * A row stays releasing until a majority answered its release (the
	 * answers may be read later): then redis_confirm_hook ends it.  What a
	 * session leaves unconfirmed, the keeper finishes.
	 */
	if (rel != NULL && m > 0 && (n == 1 || rel_of != NULL))
		lost += redis_proto_release_many(rel, m, wait, detail, sizeof(detail));
	shared_stats_count(DLOCK_STAT_RELEASES_LEFT, lost);

	if (lost > 0 && total == 1)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not release lock \"%s\" in Redis", last_key),
				 errdetail("The release was not confirmed by %s.", detail),
				 errhint("The lock comes free when its lease runs out; the lease keeper sends the release again, and so does this session on its next connection to the node.")));
	else if (lost > 0)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not confirm the release of %d of %d locks in Redis",
						lost, total),
				 errdetail("The releases were not confirmed by %s.", detail),
				 errhint("The locks come free when their leases run out; the lease keeper sends the releases again, and so does this session on its next connection to the nodes.")));

	for (i = 0; i < n; i++)
	{
		DlockEntry *entry = ends[i].entry;

		if (!other_scope_holds(entry, ends[i].scope))
			redis_free_hold(entry);
		local_lock_release(entry, ends[i].scope, xact_end);
	}
	if (rel != &one)
		free(rel);
	free(rel_of);
}

void
redis_release(DlockEntry *entry, DlockScope scope, bool lockmgr_releases,
			  bool is_abort)
{
	DlockEnding end;

	end.entry = entry;
	end.scope = scope;
	end.row = NULL;
	redis_release_many(&end, 1, lockmgr_releases, is_abort);
}

/*
 * Process exit: one last try at the releases not yet confirmed, and a wait
 * for the answers to those a transaction's end sent without waiting:
 * closing the socket before would make Redis drop what it has not read
 * yet.  What no node confirms in time was handed to the keeper.
 */
void
redis_at_exit(void)
{
	RedisNodeSet *set = lockext_redis_nodes_in_use();
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	int			left = 0;
	int			i;

	redis_abandon_inflight();
	if (set == NULL)
		return;
	for (i = 0; i < set->n; i++)
		nodes[i] = &set->nodes[i];
	redis_flush_redo(nodes, set->n);
	for (i = 0; i < set->n; i++)
		left += set->nodes[i].redo_keys;
	if (left > 0)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not confirm the release of %d locks in Redis at session end", left),
				 errhint("The lease keeper sends the releases again; failing that, the locks come free when their leases run out.")));
}

/* A statement ended: confirm the releases whose answers came meanwhile. */
void
redis_statement_end(void)
{
	RedisNodeSet *set = lockext_redis_nodes_in_use();

	if (set != NULL)
	{
		RedisNode  *nodes[LOCKEXT_MAX_NODES];

		redis_take_answers(nodes, set_nodes(set, nodes));
	}
}

