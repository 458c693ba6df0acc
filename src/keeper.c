/*-------------------------------------------------------------------------
 *
 * keeper.c
 *	  The lease keeper: a background worker that renews the Redis leases of
 *	  holders that can still act, and marks locks it finds lost.
 *
 * Started by the postmaster when lockext is preloaded, restarted a second
 * after it dies; backends never wait for it (acquire and release stay in
 * the backend), and without it leases behave as in 1.0.  It keeps a copy
 * of the renewable holds from the shared lock table, brought up to date
 * one changed row at a time, with a due-queue (keeper_items.c), sleeps
 * until the next lease falls due (a backend that publishes an earlier one
 * sets its latch), and renews, in one batched command per node, every
 * hold before a third of its lease has passed, if the process that took it
 * still lives and can act (liveness.c: the row names the process by pid
 * and start time).  A holder stopped by SIGSTOP is not renewed, and its
 * lease runs out as it would without the keeper (its holds are marked
 * lost then); the holds of a process that is gone (an exit that failed
 * midway) are released and their rows removed.  Nothing of this needs the
 * holder to do anything, so no error path of the holder can stop it.
 * Renewal is compare-and-renew: it extends only a value that is still ours
 * and never re-creates a key, so it cannot resurrect a lock someone else
 * took meanwhile.  A lock it finds no longer ours (flushed,
 * deleted, taken after an outage) is marked lost at once, so the holder's
 * COMMIT fails without a round trip.
 *
 * lockext.max_hold caps how long one hold is kept alive, and
 * lockext.max_idle_hold how long a holder idle in transaction is: past
 * them the keeper stops renewing, and the lease runs out.
 *
 * Each hold is renewed on the node set it was taken on: the server's
 * lockext.redis_nodes (in any order: a set is the same whichever order it
 * is listed in), or one the server was configured with before, for as long
 * as the keeper knows it (the last KEEPER_MAX_SETS; a keeper that restarts
 * knows only the current one, and marks holds on earlier ones lost, so
 * that their holders learn it at once).  Holds taken on a node list only a
 * superuser's session-level SET lockext.redis_nodes named are not renewed:
 * they keep their lease.
 *
 * It also pings every node once a second, for dlock_redis_nodes, and
 * retries the releases backends handed over (keeper_state.c) until a
 * node confirms them or their leases are over.
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
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "redis.h"
#include "keeper.h"
#include "keeper_items.h"
#include "keeper_state.h"
#include "liveness.h"
#include "shared_locks.h"
#include "shared_stats.h"

/* Look at nodes, leftovers and caps at least this often. */
#define KEEPER_MAX_SLEEP_MS 1000
/* ... and not more often than this, however many leases fall due. */
#define KEEPER_MIN_SLEEP_MS 5
/* A renewal that found too few nodes is retried this much later. */
#define KEEPER_RETRY_MS 100

PGDLLEXPORT void lockext_keeper_main(Datum arg);

/*
 * The node sets it renews on, a reference each, newest first: the
 * configured one, and those configured before it, on which holds taken
 * there are renewed until released (also holds a backend that has not
 * reloaded yet still takes there).  Beyond KEEPER_MAX_SETS the oldest is
 * forgotten, and holds on it are marked lost.
 */
static RedisNodeSet *kept[KEEPER_MAX_SETS];
static int	nkept = 0;
static bool kept_changed = false;
static int	forgotten = 0;		/* holds on sets it does not know, this round */

static TimestampTz next_ping = 0;

/* The sweep of rows holders left (sweep_rows): when it runs next. */
#define KEEPER_SWEEP_MS 1000
static TimestampTz next_sweep = 0;
static TimestampTz next_full_sweep = 0;
static bool sweep_wanted = false;	/* a renewal found a holder gone */
static uint64 sweep_left = 0;	/* shared_locks_left_count() at the last sweep */
static uint64 sweep_asked = 0;	/* shared_locks_asked_count() then */

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

/* A holder's process, as one round saw it. */
typedef struct HolderSeen
{
	int32		pid;			/* the hash key: pid and start time */
	uint64		start;
	HolderLiveness state;
} HolderSeen;

/* The answer holder_liveness() gave last, in the round of last_seen. */
static HTAB *last_seen = NULL;
static HolderSeen last;

/*
 * What the process pid (started at start) is now; each process is looked
 * at once per round (seen: a hash made for the round).
 */
static HolderLiveness
holder_liveness(HTAB *seen, int pid, uint64 start)
{
	HolderSeen	key;
	HolderSeen *h;
	bool		found;

	/* a holder's rows tend to come together: the last answer first */
	if (last_seen == seen && last.pid == pid && last.start == start)
		return last.state;
	memset(&key, 0, sizeof(key));
	key.pid = pid;
	key.start = start;
	h = hash_search(seen, &key, HASH_ENTER, &found);
	if (!found)
		h->state = liveness_of(key.pid, key.start);
	last_seen = seen;
	last = *h;
	return h->state;
}

/* The sweep's liveness test: is the row's process gone? */
static bool
holder_gone(int pid, uint64 start, void *arg)
{
	return holder_liveness((HTAB *) arg, pid, start) == HOLDER_GONE;
}

static HTAB *
holders_seen(void)
{
	HASHCTL		hctl;

	last_seen = NULL;			/* a fresh look: forget the last answer */
	hctl.keysize = offsetof(HolderSeen, state);
	hctl.entrysize = sizeof(HolderSeen);
	hctl.hcxt = CurrentMemoryContext;
	return hash_create("lockext holders seen", 64, &hctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * The backends idle in transaction for longer than lockext.max_idle_hold,
 * sorted by pid: read once per round (idle_round), when a hold is due.
 */
static int *idle_pids = NULL;
static int	nidle = 0;
static bool idle_round = false;

static int
pid_cmp(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return x < y ? -1 : x > y;
}

static bool
idle_too_long(int pid, TimestampTz now)
{
	if (!idle_round)
	{
		int			n = pgstat_fetch_stat_numbackends();
		int			i;

		idle_pids = palloc(Max(n, 1) * sizeof(int));
		nidle = 0;
		for (i = 1; i <= n; i++)
		{
			PgBackendStatus *be = &lockext_local_beentry(i)->backendStatus;

			if ((be->st_state == STATE_IDLEINTRANSACTION ||
				 be->st_state == STATE_IDLEINTRANSACTION_ABORTED) &&
				TimestampDifferenceExceeds(be->st_state_start_timestamp, now,
										   lockext_max_idle_hold_ms))
				idle_pids[nidle++] = be->st_procpid;
		}
		qsort(idle_pids, nidle, sizeof(int), pid_cmp);
		idle_round = true;
	}
	return bsearch(&pid, idle_pids, nidle, sizeof(int), pid_cmp) != NULL;
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

/* Where in kept[] is the node set set_fp?  -1 when not there. */
static int
kept_index(uint64 set_fp)
{
	int			s;

	for (s = 0; s < nkept; s++)
		if (kept[s]->fingerprint == set_fp)
			return s;
	return -1;
}

/* The configured node set: renew on it from now on (NULL: none). */
static void
keep_set(RedisNodeSet *set)
{
	int			s;

	if (set == NULL || (nkept > 0 && kept[0] == set))
		return;
	s = kept_index(set->fingerprint);
	if (s >= 0)
		redis_nodeset_release(kept[s]); /* the same nodes again: one copy */
	else if (nkept == KEEPER_MAX_SETS)
		redis_nodeset_release(kept[s = nkept - 1]); /* forget the oldest */
	else
		s = nkept++;
	memmove(&kept[1], &kept[0], s * sizeof(RedisNodeSet *));
	kept[0] = set;
	set->refcount++;
	keeper_state_adopt(set->fingerprint);
	kept_changed = true;
}

/*
 * Look at e when its renewal is due: when 33/48 of the lease is left, or
 * up to 1/48 of the lease earlier (its renewal window opens when 34/48 is
 * left), with the holds that fall due then.
 */
static void
queue_renewal(KeeperEntry *e)
{
	KeeperItem *it = &e->item;

	keeper_items_queue(e, it->lease_end - LOCKEXT_WAKE_LEFT_US(it->lease_ms),
					   LOCKEXT_RENEW_LEFT_US(it->lease_ms) -
					   LOCKEXT_WAKE_LEFT_US(it->lease_ms));
}

/*
 * An entry read anew: on which of the keeper's node sets, and when to look
 * at it.  Holds on a node set an earlier keeper was configured with but
 * this one does not know (it restarted) are marked lost: their holders
 * learn it at once, rather than when the lease has run out.
 */
static void
fresh_entry(KeeperEntry *e)
{
	KeeperItem *it = &e->item;

	e->set = kept_index(it->nodes_fp);
	e->owner_len = (int) redis_owner_unique_len(it->owner);
	if (e->set >= 0)
		queue_renewal(e);
	else if (keeper_state_adopted(it->nodes_fp))
	{
		shared_locks_renewed(&it->key, it->since, 0, 0, true);
		it->lease_ms = 0;
		forgotten++;
	}
}

/*
 * Bring the copy of the renewable holds up to date (read whole when the
 * node sets changed); earlier sets without holds close their connections.
 * Returns true when changes are left to read.
 */
static bool
refresh_items(void)
{
	bool		behind;
	int			s;

	forgotten = 0;
	behind = keeper_items_refresh(kept_changed, fresh_entry);
	kept_changed = false;
	if (forgotten > 0)
		ereport(LOG,
				(errmsg_plural("lockext lease keeper does not know the Redis nodes of %d hold, and marks it lost",
							   "lockext lease keeper does not know the Redis nodes of %d holds, and marks them lost",
							   forgotten, forgotten),
				 errdetail("The holds were taken on a node list lockext.redis_nodes named before the keeper restarted, or more than %d lists ago.",
						   KEEPER_MAX_SETS)));
	for (s = 1; s < nkept; s++)
		if (keeper_items_held_on(s) == 0)
		{
			int			n;

			for (n = 0; n < kept[s]->n; n++)
				redis_disconnect(&kept[s]->nodes[n]);
		}
	return behind;
}

/* Has e's renewal window opened? */
static inline bool
window_open(const KeeperEntry *e, TimestampTz now)
{
	return e->item.lease_end - now <= LOCKEXT_RENEW_LEFT_US(e->item.lease_ms);
}

/* A count of one database's renewals, added to its counters at once. */
typedef struct StatRun
{
	DlockStat	stat;
	Oid			dboid;
	uint64		n;
} StatRun;

/* Count one for dboid (InvalidOid: add what was counted). */
static void
count_stat(StatRun *run, Oid dboid)
{
	if (run->dboid != dboid && run->n > 0)
	{
		shared_stats_count_db(run->dboid, run->stat, run->n);
		run->n = 0;
	}
	run->dboid = dboid;
	if (OidIsValid(dboid))
		run->n++;
}

/*
 * Renew, on the node set kept[s], the holds due[0..n) (their renewal
 * window has opened, their holders can act); each is queued again for its
 * next renewal, or soon when too few nodes answered, or not at all when it
 * was found lost.
 */
static void
renew_on(int s, KeeperEntry **due, int n)
{
	TimestampTz now;
	int64		now_us;
	RedisRenewal *renewals = palloc(n * sizeof(RedisRenewal));
	int64	   *outcome = palloc(n * sizeof(int64));
	StatRun		renewed = {DLOCK_STAT_RENEWALS, InvalidOid, 0};
	StatRun		failed = {DLOCK_STAT_RENEWAL_FAILURES, InvalidOid, 0};
	int			i;

	for (i = 0; i < n; i++)
	{
		KeeperItem *it = &due[i]->item;

		renewals[i].lockkey = it->lockkey;
		renewals[i].lockkey_len = it->lockkey_len;
		renewals[i].owner = it->owner;
		renewals[i].owner_len = due[i]->owner_len;
		renewals[i].lease_ms = it->lease_ms;
	}
	redis_proto_extend_many(kept[s], renewals, n, outcome);

	now = GetCurrentTimestamp();
	now_us = lockext_now_us();
	for (i = 0; i < n; i++)
	{
		KeeperItem *it = &due[i]->item;

		if (outcome[i] > 0)
		{
			it->lease_end = now + (outcome[i] - now_us);
			/* through its board slot: no lookup of the row */
			if (due[i]->slot != NULL)
				lease_board_write(due[i]->slot, it->lease_end, outcome[i]);
			else
				shared_locks_renewed(&it->key, it->since, it->lease_end, outcome[i], false);
			count_stat(&renewed, it->dboid);
			queue_renewal(due[i]);
		}
		else
		{
			count_stat(&failed, it->dboid);
			if (outcome[i] == 0)
			{
				/* no longer ours: the holder's COMMIT must fail */
				shared_locks_renewed(&it->key, it->since, 0, 0, true);
				it->lease_ms = 0;
			}
			else				/* too few nodes answered: soon again */
				keeper_items_queue(due[i], TimestampTzPlusMilliseconds(now, KEEPER_RETRY_MS), 0);
		}
	}
	count_stat(&renewed, InvalidOid);
	count_stat(&failed, InvalidOid);
}

/*
 * Renew every hold whose renewal window has opened and whose holder can
 * still act, each on the node set it was taken on, taking from the
 * due-queue only what is due; returns when the next one falls due.
 */
static TimestampTz
renew_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	HTAB	   *seen = holders_seen();
	KeeperEntry **taken;
	KeeperEntry **batch;
	bool		behind = refresh_items();
	int			ntaken;
	int			nrenew = 0;
	int			i;
	int			s;

	idle_round = false;
	ntaken = keeper_items_take_due(now, &taken);
	for (i = 0; i < ntaken; i++)
	{
		KeeperEntry *e = taken[i];
		KeeperItem *it = &e->item;
		HolderLiveness live;

		if (it->lease_ms <= 0)
			;					/* found lost, or released */
		else if ((live = holder_liveness(seen, it->key.pid, it->proc_start)) == HOLDER_GONE)
			sweep_wanted = true;	/* the sweep releases what it left */
		else if (live == HOLDER_STOPPED || !within_caps(it, now))
		{
			/* not renewed: once the lease is over, the lock is lost */
			if (it->lease_end <= now)
			{
				shared_locks_renewed(&it->key, it->since, 0, 0, true);
				it->lease_ms = 0;
			}
			else				/* a stopped holder may be continued */
				keeper_items_queue(e, Min(it->lease_end,
										  TimestampTzPlusMilliseconds(now, KEEPER_RETRY_MS)), 0);
		}
		else if (!window_open(e, now))
			queue_renewal(e);
		else
			taken[nrenew++] = e;	/* to renew */
	}

	batch = palloc(Max(nrenew, 1) * sizeof(KeeperEntry *));
	for (s = 0; s < nkept; s++)
	{
		int			n = 0;

		for (i = 0; i < nrenew; i++)
			if (taken[i]->set == s)
				batch[n++] = taken[i];
		if (n > 0)
			renew_on(s, batch, n);
	}

	if (behind)
		return TimestampTzPlusMilliseconds(now, KEEPER_MIN_SLEEP_MS);
	return keeper_items_next_due();
}

/*
 * Finish what holders left: the rows of processes that are gone (an exit
 * that failed midway, or whose releases were not confirmed) and releases
 * a live backend sent but never saw confirmed.  Each Redis lock among them
 * is released on the node set it was taken on (compare-and-delete: only
 * if still that hold's), then the row goes (a gone process's) or is
 * confirmed (a live one's, which deletes it).  A release no node
 * confirmed is tried again next time, until the lease is over.  Runs when
 * rows were ended or a holder was found gone, and once a minute in any
 * case (a look at every row: 20 % of the keeper's time at 100,000 held
 * leases when it ran every ten seconds).
 */
static void
sweep_rows(TimestampTz now)
{
	HTAB	   *seen;
	KeeperItem *swept;
	int64		stale_us = 2 * INT64CONST(1000) *
		(lockext_connect_timeout_ms + lockext_command_timeout_ms);
	int			n;
	int			s;
	int			released = 0;

	uint64		left = shared_locks_left_count();
	uint64		asked = shared_locks_asked_count();
	bool		urgent = asked != sweep_asked;

	/*
	 * At once when a holder exited leaving rows or a renewal found one
	 * gone; every two seconds while rows wait for their releases' answers
	 * (a live backend's may be stale); once a minute in any case, for what
	 * nothing told of (renewals find a holder gone themselves).
	 */
	if (left == sweep_left && !urgent && !sweep_wanted &&
		(now < next_sweep || shared_locks_ended_count() == 0) &&
		now < next_full_sweep)
		return;
	sweep_left = left;
	sweep_asked = asked;
	next_sweep = TimestampTzPlusMilliseconds(now, 2 * KEEPER_SWEEP_MS);
	next_full_sweep = TimestampTzPlusMilliseconds(now, 60 * KEEPER_SWEEP_MS);
	sweep_wanted = false;
	seen = holders_seen();
	/* asked to: what a backend could not send is no longer in flight */
	n = shared_locks_sweep(holder_gone, seen,
						   urgent ? 0 : Max(stale_us, 5000000), &swept);

	for (s = -1; s < nkept; s++)
	{
		RedisHold  *holds = palloc0(Max(n, 1) * sizeof(RedisHold));
		RedisRelease *rel = palloc0(Max(n, 1) * sizeof(RedisRelease));
		int		   *at = palloc(Max(n, 1) * sizeof(int));
		char		detail[512];
		int			m = 0;
		int			i;

		for (i = 0; i < n; i++)
		{
			KeeperItem *it = &swept[i];

			if (kept_index(it->nodes_fp) != s)
				continue;
			if (s < 0)
			{
				/* nodes this keeper does not know: left to the lease */
				if (holder_gone(it->key.pid, it->proc_start, seen))
					shared_locks_drop_orphan(&it->key, it->proc_start);
				continue;
			}
			holds[m].set = kept[s];
			holds[m].ns = it->ns;
			holds[m].text = it->owner;
			holds[m].owner_given = true;
			holds[m].token = it->token;
			holds[m].lease_ms = it->lease_ms;
			rel[m].key = it->keytext;
			rel[m].hold = &holds[m];
			at[m++] = i;
		}
		if (m == 0)
			continue;
		(void) redis_proto_release_many(rel, m, true, detail, sizeof(detail));
		for (i = 0; i < m; i++)
		{
			KeeperItem *it = &swept[at[i]];
			bool		over = it->lease_end != 0 && it->lease_end < now;

			if (!rel[i].done && !over)
				continue;		/* next time */
			released += rel[i].done;
			if (holder_gone(it->key.pid, it->proc_start, seen))
				shared_locks_drop_orphan(&it->key, it->proc_start);
			else
				shared_locks_confirm(&it->key);
		}
	}
	if (released > 0)
		ereport(LOG,
				(errmsg_plural("lockext lease keeper released %d Redis lock its holder left",
							   "lockext lease keeper released %d Redis locks their holders left",
							   released, released)));
}

/* Ping every node; publish what the keeper sees of them. */
static void
check_nodes(RedisNodeSet *set, TimestampTz now)
{
	KeeperNodeStatus st[LOCKEXT_MAX_NODE_STATUS];
	int			n = 0;

	if (now < next_ping)
		return;
	next_ping = TimestampTzPlusMilliseconds(now, KEEPER_MAX_SLEEP_MS);
	if (set != NULL)
	{
		RedisNode  *nodes[LOCKEXT_MAX_NODES];
		RedisResult results[LOCKEXT_MAX_NODES];
		const char *argv[1] = {"PING"};
		RedisCommand cmd = {1, argv, NULL};
		int			i;

		n = Min(set_nodes(set, nodes), LOCKEXT_MAX_NODE_STATUS);
		redis_run(nodes, n, &cmd, NULL, 0, 0, false, NULL, results);
		redis_results_free(results, n);
		for (i = 0; i < n; i++)
		{
			RedisNode  *node = nodes[i];

			strlcpy(st[i].node, node->display, sizeof(st[i].node));
			st[i].state = node->ctx == NULL ? 'd' : node->connecting ? 'o' : 'c';
			st[i].rtt_us = node->last_rtt_us;
			st[i].errors = node->failures;
			strlcpy(st[i].last_error, node->last_failure, sizeof(st[i].last_error));
			st[i].last_error_at = node->last_failure_at;
			st[i].checked_at = GetCurrentTimestamp();
		}
	}
	keeper_state_publish_nodes(st, n);
}


static void
keeper_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	keeper_state_running(false);
}

void
lockext_keeper_main(Datum arg pg_attribute_unused())
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* the backends' hooks count into their databases, not here */
	redis_failure_hook = NULL;

	keeper_items_init();
	/* what one round allocates goes with the round, as in pg_cron */
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "lockext keeper round",
									 ALLOCSET_DEFAULT_SIZES);
	keeper_state_running(true);
	before_shmem_exit(keeper_exit, (Datum) 0);

	for (;;)
	{
		MemoryContext oldcxt;
		RedisNodeSet *set;
		TimestampTz now;
		TimestampTz wake;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		oldcxt = MemoryContextSwitchTo(loop_cxt);
		pgstat_clear_backend_activity_snapshot();	/* a fresh look per round */
		set = lockext_redis_nodes();
		keep_set(set);
		now = GetCurrentTimestamp();
		wake = Min(TimestampTzPlusMilliseconds(now, KEEPER_MAX_SLEEP_MS),
				   renew_due());
		check_nodes(set, now);
		sweep_rows(now);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(loop_cxt);

		/* backends with an earlier lease set the latch */
		keeper_state_set_wake(wake);
		now = GetCurrentTimestamp();
		sleep_ms = wake > now ? (long) ((wake - now + 999) / 1000) : 0;
		sleep_ms = Max(sleep_ms, KEEPER_MIN_SLEEP_MS);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, lockext_wait_event(LOCKEXT_WAIT_KEEPER_MAIN));
		ResetLatch(MyLatch);
	}
}
