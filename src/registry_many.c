/*-------------------------------------------------------------------------
 *
 * registry_many.c
 *	  Many transaction-scoped locks at once, all or none
 *	  (dlock_acquire_all).
 *
 * The caller passes the keys distinct and in one canonical order (by
 * bytes), so two callers never wait for each other in a cycle.  Keys this
 * session already holds in transaction scope only gain a hold; the others
 * are taken from their backend in that order: a backend that takes many
 * at once (Redis: one script per node) gets each run of consecutive keys
 * in one call, the others one key at a time.  Holds are recorded only
 * once every key is taken, so a timeout or an ERROR leaves nothing newly
 * held: what was taken is given back first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "lockext.h"
#include "registry.h"
#include "shared_locks.h"
#include "shared_stats.h"
#include "registry_int.h"

/*
 * Give back the locks taken for todo[0..n) (no hold was recorded), and
 * forget the entries that hold nothing.  Never ERRORs.
 */
static void
give_back(DlockEntry **todo, int n)
{
	int			i;

	for (i = n - 1; i >= 0; i--)
	{
		todo[i]->backend->release(todo[i], DLOCK_SCOPE_XACT, false, false);
		todo[i]->has_token = false;
	}
}

static void
forget_all(DlockEntry **entries, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (entries[i] != NULL)
			registry_forget_if_unheld(entries[i]);
}

/*
 * Take keys[0..n) (distinct, in canonical order) in transaction scope, all
 * or none; entries[i] receives each key's entry.  Returns -1 when all are
 * held, else the index of the key that stayed busy for the whole timeout
 * (busy_detail: what the backend saw of its holder), and nothing new is
 * held.  May ERROR, also with nothing new held.
 */
int
registry_acquire_many(char **keys, const int *keylens, int n,
					  int64 timeout_ms, int64 lease_ms, DlockEntry **entries,
					  char **busy_detail)
{
	DlockEntry **todo = palloc(n * sizeof(DlockEntry *));
	int		   *todo_at = palloc(n * sizeof(int));
	bool	   *fresh = palloc0(n * sizeof(bool));
	int			ntodo = 0;
	volatile int ngranted = 0;
	volatile int failed = -1;
	int64		start_us = lockext_now_us();
	MemoryContext cxt = CurrentMemoryContext;
	int64		waited;
	int			i;

	registry_init();
	shared_stats_prepare();
	memset(entries, 0, n * sizeof(DlockEntry *));
	PG_TRY();
	{
		for (i = 0; i < n; i++)
		{
			DlockEntry *entry = registry_entry_for(keys[i], keylens[i]);

			entries[i] = entry;
			registry_reserve_sub_slot(entry);
			if (entry->xact_holds > 0)
				continue;		/* reentrant: only a hold to add */
			fresh[ntodo] = (entry->session_holds == 0);
			todo_at[ntodo] = i;
			todo[ntodo++] = entry;
		}

		/* each run of keys of a backend that takes many goes in one call */
		while (ngranted < ntodo && failed < 0)
		{
			const DlockBackend *be = todo[ngranted]->backend;
			int			run = 1;
			int			bad = 0;
			bool		ok;

			if (be->acquire_many != NULL)
				while (ngranted + run < ntodo &&
					   todo[ngranted + run]->backend == be)
					run++;
			if (run > 1)
				ok = be->acquire_many(&todo[ngranted], run,
									  lockext_time_left(timeout_ms, start_us),
									  lease_ms, &bad, busy_detail);
			else
				ok = be->acquire(todo[ngranted], DLOCK_SCOPE_XACT,
								 lockext_time_left(timeout_ms, start_us), lease_ms,
								 busy_detail);
			if (ok)
				ngranted += run;
			else
				failed = todo_at[ngranted + bad];
		}
	}
	PG_CATCH();
	{
		waited = shared_locks_wait_end();
		give_back(todo, ngranted);
		forget_all(entries, n);
		registry_count_failed_acquire(waited, cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	waited = shared_locks_wait_end();
	shared_stats_wait_ended(waited);

	if (failed >= 0)
	{
		give_back(todo, ngranted);
		forget_all(entries, n);
		shared_stats_count(timeout_ms == 0 ? DLOCK_STAT_BUSY :
						   DLOCK_STAT_TIMEOUTS, 1);
		return failed;
	}

	/* Fresh grants: a new holder period with a new token each. */
	PG_TRY();
	{
		for (i = 0; i < ntodo; i++)
			if (fresh[i])
			{
				todo[i]->acquired_at = GetCurrentTimestamp();
				todo[i]->backend->draw_token(todo[i]);
			}
	}
	PG_CATCH();
	{
		/* give them all back rather than hold one without a token */
		give_back(todo, ntodo);
		forget_all(entries, n);
		PG_RE_THROW();
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
		registry_add_hold(entries[i], DLOCK_SCOPE_XACT);
	for (i = 0; i < ntodo; i++)
	{
		shared_locks_publish(todo[i], DLOCK_SCOPE_XACT);
		shared_stats_count(waited >= 0 ? DLOCK_STAT_ACQUIRED_AFTER_WAIT :
						   DLOCK_STAT_ACQUIRED, 1);
	}
	return -1;
}
