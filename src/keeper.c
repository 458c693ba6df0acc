/*-------------------------------------------------------------------------
 *
 * keeper.c
 *	  The lease keeper: a background worker that renews the Redis leases of
 *	  holders that can still act, and marks locks it finds lost.
 *
 * Started by the postmaster when lockext is preloaded, restarted a second
 * after it dies; backends never wait for it (acquire and release stay in
 * the backend), and without it leases behave as in 1.0.  Every tick it
 * reads the shared lock table (shared_locks.c) and renews, in one batched
 * command per node, every hold on the server's own node set whose lease
 * has run a third of its length, if its holder still beats: each backend
 * that holds renewable locks bumps a heartbeat from a timer, so a holder
 * stopped by SIGSTOP, or swapped out, stops being renewed within
 * LOCKEXT_HEARTBEAT_STALE_MS and its lease runs out as it would without
 * the keeper.  Renewal is compare-and-renew: it extends only a value that
 * is still ours and never re-creates a key, so it cannot resurrect a lock
 * someone else took meanwhile.  A lock it finds no longer ours (flushed,
 * deleted, taken after an outage) is marked lost at once, so the holder's
 * COMMIT fails without a round trip.
 *
 * lockext.max_hold caps how long one hold is kept alive, and
 * lockext.max_idle_hold how long a holder idle in transaction is: past
 * them the keeper stops renewing, and the lease runs out.
 *
 * Holds taken on another node list (a superuser's session-level SET
 * lockext.redis_nodes) are not renewed: they keep their lease.
 *
 * Only the Redis layers and the shared table are used here, never the SQL
 * layer or a backend's registry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "redis.h"

/* How often the keeper looks at the table. */
#define KEEPER_TICK_MS 100

PGDLLEXPORT void lockext_keeper_main(Datum arg);

/* What the keeper saw of each backend's heartbeat, by backend id. */
typedef struct Beat
{
	uint64		value;
	int64		changed_us;		/* monotonic; 0: never seen */
} Beat;

static Beat *beats = NULL;
static int	nbeats = 0;

/* From _PG_init while preloading. */
void
keeper_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "lockext", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "lockext_keeper_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "lockext lease keeper", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "lockext lease keeper", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Note every heartbeat that moved since the last tick. */
static void
watch_heartbeats(int64 now_us)
{
	int			id;

	for (id = 1; id < nbeats; id++)
	{
		uint64		value = shared_locks_heartbeat(id);

		if (beats[id].value != value)
		{
			beats[id].value = value;
			beats[id].changed_us = now_us;
		}
	}
}

/* Has the holder with this backend id beaten lately? */
static bool
holder_beats(int backend_id, int64 now_us)
{
	if (backend_id <= 0 || backend_id >= nbeats ||
		beats[backend_id].changed_us == 0)
		return false;
	return now_us - beats[backend_id].changed_us <
		LOCKEXT_HEARTBEAT_STALE_MS * INT64CONST(1000);
}

/*
 * Is the backend with this pid idle in transaction for longer than
 * lockext.max_idle_hold?  (A snapshot of the activity array per tick.)
 */
static bool
idle_too_long(int pid, TimestampTz now)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
		PgBackendStatus *be = &pgstat_fetch_stat_local_beentry(i)->backendStatus;

		if (be->st_procpid != pid)
			continue;
		return (be->st_state == STATE_IDLEINTRANSACTION ||
				be->st_state == STATE_IDLEINTRANSACTION_ABORTED) &&
			TimestampDifferenceExceeds(be->st_state_start_timestamp, now,
									   lockext_max_idle_hold_ms);
	}
	return false;
}

/* May the keeper go on renewing this hold (lockext.max_hold, max_idle_hold)? */
static bool
within_caps(const KeeperItem *it, TimestampTz now)
{
	if (lockext_max_hold_ms > 0 &&
		TimestampDifferenceExceeds(it->since, now, lockext_max_hold_ms))
		return false;
	if (lockext_max_idle_hold_ms > 0 && idle_too_long(it->key.pid, now))
		return false;
	return true;
}

/* Renew every hold that is due and whose holder can still act. */
static void
renew_due(void)
{
	RedisNodeSet *set = lockext_redis_nodes();
	KeeperItem *items;
	int			n;
	int			ndue = 0;
	int		   *due;
	char	  **lockkeys;
	char	  **owners;
	int64	   *leases;
	int64	   *outcome;
	TimestampTz now = GetCurrentTimestamp();
	int64		now_us = lockext_now_us();
	int			i;

	watch_heartbeats(now_us);
	if (set == NULL)
		return;
	n = shared_locks_renewable(set->fingerprint, now, &items);
	if (n == 0)
		return;
	due = palloc(n * sizeof(int));
	lockkeys = palloc(n * sizeof(char *));
	owners = palloc(n * sizeof(char *));
	leases = palloc(n * sizeof(int64));
	outcome = palloc(n * sizeof(int64));
	for (i = 0; i < n; i++)
	{
		KeeperItem *it = &items[i];

		if (!holder_beats(it->backend_id, now_us) || !within_caps(it, now))
			continue;
		due[ndue] = i;
		lockkeys[ndue] = it->lockkey;
		owners[ndue] = it->owner;
		leases[ndue] = it->lease_ms;
		ndue++;
	}
	if (ndue == 0)
		return;

	redis_proto_extend_many(set, lockkeys, owners, leases, ndue, outcome);
	for (i = 0; i < ndue; i++)
	{
		KeeperItem *it = &items[due[i]];

		if (outcome[i] > 0)
			shared_locks_renewed(&it->key,
								 GetCurrentTimestamp() + (outcome[i] - lockext_now_us()),
								 false);
		else if (outcome[i] == 0)
			shared_locks_renewed(&it->key, 0, true);
		/* -1: too few nodes answered; the next tick tries again */
	}
}

static void
keeper_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	shared_locks_keeper_running(false);
}

void
lockext_keeper_main(Datum arg pg_attribute_unused())
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	nbeats = MaxBackends + 1;
	beats = MemoryContextAllocZero(TopMemoryContext, nbeats * sizeof(Beat));
	shared_locks_keeper_running(true);
	before_shmem_exit(keeper_exit, (Datum) 0);

	/* what one tick allocates goes with the tick, as in pg_cron */
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "lockext keeper tick",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		oldcxt = MemoryContextSwitchTo(loop_cxt);
		pgstat_clear_backend_activity_snapshot();	/* a fresh look per tick */
		renew_due();
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(loop_cxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 KEEPER_TICK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
