/*-------------------------------------------------------------------------
 *
 * redis_backend.c
 *	  The redis backend: dlocks shared by many PostgreSQL instances.
 *
 * Local first: a session first takes the same local lock the advisory
 * backend takes, so sessions of one instance queue FIFO in the lock
 * manager (deadlock detection, pg_locks, cancel) and only the head of the
 * local queue talks to Redis.  It then takes the Redis lock, waiting for
 * other instances' releases on the key's wake list, each wait capped by
 * the holder's remaining lease so a lost wake-up costs at most that.
 *
 * Transaction-scoped holds are checked at PRE_COMMIT when their lease may
 * have run out (lockext.verify_on_commit); a lost lock fails the COMMIT
 * with 40001.  Releases never ERROR: a failed release is a WARNING and
 * the lease frees the key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"
#include "utils/timestamp.h"

#include "redis_backend.h"
#include "local_lock.h"
#include "shared_locks.h"
#include "shared_stats.h"

/*
 * Longest single wait for a wake-up: a lost wake-up or a holder without a
 * known lease costs at most this before the acquire is tried again.
 */
#define MAX_WAKE_WAIT_MS 10000

/*
 * The longest lease this backend took: a release handed to the lease
 * keeper is worth retrying for that long at most.
 */
static int64 longest_lease_ms = 0;

/* The holds (RedisHold and its owner value). */
static MemoryContext holds_cxt = NULL;

/* redis_failure_hook: count every failure of a node (dlock_stats). */
static void
count_node_failure(void)
{
	shared_stats_count(DLOCK_STAT_REDIS_ERRORS, 1);
}

static RedisNodeSet *
configured_nodes(void)
{
	RedisNodeSet *set = lockext_redis_nodes();

	if (set == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("lockext.backend is \"redis\" but lockext.redis_nodes is empty"),
				 errhint("Set lockext.redis_nodes, or set lockext.backend to \"auto\" or \"advisory\".")));
	return set;
}

void
redis_free_hold(DlockEntry *entry)
{
	RedisHold  *hold = (RedisHold *) entry->backend_data;

	if (hold == NULL)
		return;
	redis_nodeset_release(hold->set);
	pfree(hold);
	entry->backend_data = NULL;
	entry->lease_expires_at = 0;
}

static void
note_lease(DlockEntry *entry, RedisHold *hold)
{
	entry->lease_expires_at = GetCurrentTimestamp() +
		(hold->valid_until_us - lockext_now_us());
}

/* dlock_locks shows the wait and, when Redis named it, the holder. */
static void
publish_wait(DlockEntry *entry, const char *holder)
{
	DlockHolderInfo info;

	memset(&info, 0, sizeof(info));
	if (holder != NULL && redis_parse_owner(holder, &info))
		shared_locks_wait_start(entry, info.instance, info.pid);
	else
		shared_locks_wait_start(entry, NULL, 0);
}

/*
 * Nodes refused the acquire outright: no fallback, the setup is wrong.  A
 * node of set refused at connect for its version is named first (it is
 * the reason when a quorum falls short with it).
 */
static void
report_refusal(const RedisNodeSet *set, const char *key, RedisAcquireResult *res)
{
	const RedisNode *old = redis_too_old_node(set);

	if (res->refusal == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE && old != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Redis node %s runs a version of Redis lockext does not support",
						old->display),
				 errdetail("It runs Redis %s. Lock \"%s\" was not taken: %s.",
						   old->version, key, res->detail.data),
				 errhint("lockext needs Redis 6.2 or later.")));
	if (res->refusal == ERRCODE_WRONG_OBJECT_TYPE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("Redis key of lock \"%s\" holds a value of another type", key),
				 errdetail("%s.", res->detail.data),
				 errhint("Delete the key in Redis, or change lockext.namespace.")));
	if (res->refusal == ERRCODE_DATA_CORRUPTED)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the fencing counter %s:fence in Redis is not a number",
						lockext_namespace),
				 errdetail("Lock \"%s\" was not taken: %s.", key, res->detail.data),
				 errhint("Delete the key in Redis: a missing counter starts again from the clock, so tokens keep increasing.")));
	if (res->refusal == ERRCODE_INSUFFICIENT_PRIVILEGE)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("Redis denied the commands of lock \"%s\"", key),
				 errdetail("%s.", res->detail.data),
				 errhint("Allow the Redis user of lockext.redis_nodes EVAL, EVALSHA, BLPOP and INFO, and the keys under lockext.namespace.")));
	if (res->refusal == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Redis may evict lock \"%s\"", key),
				 errdetail("%s.", res->detail.data),
				 errhint("Set maxmemory-policy to noeviction (or maxmemory to 0) on the Redis server: an evicted lock key would let a second holder in.")));
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("Redis is out of memory and cannot grant lock \"%s\"", key),
			 errdetail("%s.", res->detail.data),
			 errhint("Raise maxmemory on the Redis server, or free memory there.")));
}

/*
 * Take the Redis locks of entries[0..n) (holds[i] fresh for entries[i]),
 * all or none, for a session that already holds their local locks.
 * Returns false when a key stayed busy for the whole timeout (*failed
 * names it); ERRORs on an outage unless lockext.fallback lets the local
 * locks stand alone, in which case the entries move to the advisory
 * backend.  A wait is watched for deadlocks in *watch.
 */
static bool
acquire_remote(DlockEntry **entries, RedisHold **holds, int n, int64 start_us,
			   int64 timeout_ms, int64 lease_ms, int *failed,
			   char **busy_detail, DeadlockWatch *watch)
{
	int64		deadline_us = timeout_ms < 0 ? PG_INT64_MAX :
		start_us + timeout_ms * 1000;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext attempt_cxt;
	const char **keys = palloc(n * sizeof(char *));
	int64		backoff_ms = 10;
	bool		granted = false;
	int			i;

	for (i = 0; i < n; i++)
		keys[i] = entries[i]->key;
	/* each attempt's keys, replies and details live only as long as it */
	attempt_cxt = AllocSetContextCreate(caller, "lockext acquire attempt",
										ALLOCSET_SMALL_SIZES);
	for (;;)
	{
		RedisAcquireResult res;
		DlockEntry *busy;
		int64		left_ms;
		int64		wait_ms;

		MemoryContextReset(attempt_cxt);
		MemoryContextSwitchTo(attempt_cxt);
		redis_proto_acquire_many(holds, keys, n, lease_ms, &res);
		MemoryContextSwitchTo(caller);
		busy = entries[res.busy_index];
		switch (res.status)
		{
			case REDIS_ACQ_GRANTED:
				for (i = 0; i < n; i++)
				{
					entries[i]->token = res.tokens[i];
					entries[i]->has_token = true;
				}
				granted = true;
				break;
			case REDIS_ACQ_REFUSED:
				report_refusal(holds[0]->set, busy->key, &res);
				break;
			case REDIS_ACQ_EXPIRED:
				/* retried while time is left: Redis may have been slow once */
				break;
			case REDIS_ACQ_OUTAGE:
				if (lockext_fallback == LOCKEXT_FALLBACK_ADVISORY)
				{
					shared_stats_count(DLOCK_STAT_FALLBACKS, n);
					ereport(WARNING,
							(errcode(ERRCODE_CONNECTION_FAILURE),
							 n == 1 ?
							 errmsg("Redis is unavailable; lock \"%s\" is held on this instance only",
									entries[0]->key) :
							 errmsg("Redis is unavailable; locks \"%s\" and %d more are held on this instance only",
									entries[0]->key, n - 1),
							 errdetail("%s.", res.detail.data),
							 errhint("lockext.fallback is \"advisory\": sessions of other instances are not excluded.")));
					for (i = 0; i < n; i++)
						entries[i]->backend = &advisory_backend;
					granted = true;
					break;
				}
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not acquire lock \"%s\": Redis is unavailable",
								entries[0]->key),
						 errdetail("%s.", res.detail.data)));
				break;
			case REDIS_ACQ_BUSY:
				break;
		}
		if (granted)
			break;

		left_ms = (deadline_us - lockext_now_us()) / 1000;
		if ((timeout_ms == 0 || left_ms <= 0) && res.status == REDIS_ACQ_EXPIRED)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the lease of lock \"%s\" was over before Redis's grant arrived",
							entries[0]->key),
					 errdetail("The grant took %d ms; the lease is " INT64_FORMAT " ms, less " INT64_FORMAT " ms allowed for clock drift.",
							   (int) (res.elapsed_us / 1000), lease_ms,
							   redis_drift_us(lease_ms) / 1000),
					 errhint("Use a lease longer than the time Redis takes to answer.")));
		if (timeout_ms == 0 || left_ms <= 0)
		{
			*failed = res.busy_index;
			*busy_detail = MemoryContextStrdup(caller, res.detail.data);
			break;
		}

		if (res.granted > 0 && res.holder == NULL)
		{
			/*
			 * A split vote (or too slow a majority): every contender gave
			 * back its grants.  Retry after a random delay so they do not
			 * collide again in lock-step.  (With a holder in sight, wait
			 * for its release instead: some node may just have missed its
			 * grant.)
			 */
			wait_ms = Min(left_ms, 1 + (int64) pg_prng_uint64_range(&pg_global_prng_state, 0, 50));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, lockext_wait_event(LOCKEXT_WAIT_REDIS_LOCK));
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}

		/*
		 * Sleep until the busy key's release is announced, at most the
		 * holder's lease, and never longer than MAX_WAKE_WAIT_MS at a time.
		 */
		wait_ms = Min(left_ms, MAX_WAKE_WAIT_MS);
		if (res.holder_pttl_ms >= 0)
			wait_ms = Min(wait_ms, res.holder_pttl_ms + 1);
		publish_wait(busy, res.holder);
		MemoryContextSwitchTo(attempt_cxt);

		/* past deadlock_timeout, look for a cycle across instances */
		if (!watch->started)
			deadlock_watch_start(watch);
		deadlock_check(watch, holds[0]->set, holds[0]->ns, busy->key,
					   res.holder);
		wait_ms = deadlock_watch_cap(watch, wait_ms);
		if (redis_proto_wait(holds[0]->set, holds[0]->ns, busy->key, wait_ms))
			backoff_ms = 10;
		else
		{
			/*
			 * The wait failed at once (BLPOP refused, a wake key of another
			 * type): back off rather than spin, doubling up to a second.
			 */
			MemoryContextSwitchTo(caller);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(wait_ms, backoff_ms), lockext_wait_event(LOCKEXT_WAIT_REDIS_LOCK));
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			backoff_ms = Min(backoff_ms * 2, 1000);
		}
		MemoryContextSwitchTo(caller);
	}
	MemoryContextDelete(attempt_cxt);
	return granted;
}

static RedisHold *
new_hold(RedisNodeSet *set)
{
	RedisHold  *hold;

	/*
	 * One size: a slab (16 bytes a chunk, where a generation context takes
	 * 24), and a block whose chunks are all freed goes: memory returns.
	 */
	StaticAssertStmt(sizeof(RedisHold) <= 64,
					 "a Redis hold's memory counts in make bench's per-hold goal");
	if (holds_cxt == NULL)
		holds_cxt = SlabContextCreate(TopMemoryContext, "lockext Redis holds",
									  SLAB_DEFAULT_BLOCK_SIZE, sizeof(RedisHold));
	hold = MemoryContextAllocZero(holds_cxt, sizeof(RedisHold));
	hold->ns = redis_string_kept(lockext_namespace);

	hold->set = set;
	set->refcount++;
	return hold;
}

static void
drop_hold(RedisHold *hold)
{
	redis_nodeset_release(hold->set);
	pfree(hold);
}

/*
 * Checks before talking to Redis, and the hooks for what may go wrong
 * there.  Returns the node set.
 */
static RedisNodeSet *
redis_prepare(int64 lease_ms)
{
	RedisNodeSet *set = configured_nodes();

	/*
	 * Preloading is required: before the library loads in a session, its
	 * settings are placeholders anyone can read or set, and shared state
	 * (the lease keeper's) can only be set up at server start.
	 */
	if (!lockext_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the redis backend of lockext requires the library to be preloaded"),
				 errdetail("lockext was loaded into this session only, not at server start."),
				 errhint("Add lockext to shared_preload_libraries and restart the server, or set lockext.backend to \"advisory\".")));
	/* who we are, in owner values: the Redis layers ask nothing above */
	redis_proto_identify(shared_locks_session_id(), lockext_instance_name());
	/* the Redis I/O of the abort path shows them too: resolve them now */
	lockext_wait_events_prepare();
	redis_failure_hook = count_node_failure;
	redis_confirm_hook = redis_confirm_rows;
	redis_unsent_hook = redis_ask_keeper;
	longest_lease_ms = Max(longest_lease_ms, lease_ms);
	return set;
}

/*
 * Take the Redis locks of entries[0..n) (their local locks are held), all
 * or none; on an ERROR, the holds are freed and the local locks given back
 * (local_from..n).  However a wait ends, ERROR included, its wait-for edge
 * leaves Redis with it: a stale one would make false deadlocks.
 */
static bool
acquire_remote_guarded(DlockEntry **entries, RedisHold **holds, int n,
					   int64 timeout_ms, int64 lease_ms, int *failed,
					   char **busy_detail)
{
	MemoryContext caller = CurrentMemoryContext;
	DeadlockWatch *watch = palloc0(sizeof(DeadlockWatch));
	volatile bool granted = false;
	int			i;

	PG_TRY();
	{
		granted = acquire_remote(entries, holds, n, lockext_now_us(), timeout_ms,
								 lease_ms, failed, busy_detail, watch);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		deadlock_watch_end(watch, holds[0]->set, holds[0]->ns);
		for (i = 0; i < n; i++)
			drop_hold(holds[i]);
		PG_RE_THROW();
	}
	PG_END_TRY();
	deadlock_watch_end(watch, holds[0]->set, holds[0]->ns);

	for (i = 0; i < n; i++)
	{
		if (!granted || entries[i]->backend != &redis_backend)
			drop_hold(holds[i]);	/* timed out, or fell back to local */
		else
		{
			entries[i]->backend_data = holds[i];
			note_lease(entries[i], holds[i]);
		}
	}
	return granted;
}

static bool
redis_acquire(DlockEntry *entry, DlockScope scope, int64 timeout_ms,
			  int64 lease_ms, char **busy_detail)
{
	bool		other_scope_held = scope == DLOCK_SCOPE_SESSION ?
		entry->xact_holds > 0 : entry->session_holds > 0;
	int64		start_us = lockext_now_us();
	RedisNodeSet *set;
	RedisHold  *hold;
	int			failed;
	bool		granted;

	/* The Redis key is already ours; only the local mode is missing. */
	if (other_scope_held)
		return local_lock_acquire(entry, scope, timeout_ms);

	set = redis_prepare(lease_ms);
	if (!local_lock_acquire(entry, scope, timeout_ms))
		return false;
	hold = new_hold(set);

	/* what the local queue took comes off the timeout */
	PG_TRY();
	{
		granted = acquire_remote_guarded(&entry, &hold, 1,
										 lockext_time_left(timeout_ms, start_us),
										 lease_ms, &failed, busy_detail);
	}
	PG_CATCH();
	{
		local_lock_release(entry, scope, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!granted)
		local_lock_release(entry, scope, false);
	return granted;
}

/*
 * Take the transaction-scoped locks of entries[0..n), in this order, all
 * or none: the local locks one by one (the local queue, as for one key),
 * then every Redis key not already ours in one script per node.  Returns
 * false, with *failed naming the key, when one stayed busy for the whole
 * timeout; then, as after an ERROR, none of them is held.
 */
static bool
redis_acquire_many(DlockEntry **entries, int n, int64 timeout_ms,
				   int64 lease_ms, int *failed, char **busy_detail)
{
	int64		start_us = lockext_now_us();
	RedisNodeSet *set = redis_prepare(lease_ms);
	DlockEntry **remote = palloc(n * sizeof(DlockEntry *));
	RedisHold **holds = palloc(n * sizeof(RedisHold *));
	int		   *remote_at = palloc(n * sizeof(int));
	volatile int nlocal = 0;
	bool		granted = true;
	int			i;

	PG_TRY();
	{
		int			nremote = 0;

		for (i = 0; i < n && granted; i++)
		{
			granted = local_lock_acquire(entries[i], DLOCK_SCOPE_XACT,
										 lockext_time_left(timeout_ms, start_us));
			if (!granted)
				*failed = i;
			else
				nlocal++;
			/* a key whose session lock we hold is ours in Redis already */
			if (granted && entries[i]->session_holds == 0)
			{
				remote_at[nremote] = i;
				remote[nremote++] = entries[i];
			}
		}
		if (granted && nremote > 0)
		{
			int			bad = 0;

			for (i = 0; i < nremote; i++)
				holds[i] = new_hold(set);
			granted = acquire_remote_guarded(remote, holds, nremote,
											 lockext_time_left(timeout_ms, start_us),
											 lease_ms, &bad, busy_detail);
			if (!granted)
				*failed = remote_at[bad];
		}
	}
	PG_CATCH();
	{
		for (i = 0; i < nlocal; i++)
			local_lock_release(entries[i], DLOCK_SCOPE_XACT, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!granted)
		for (i = 0; i < nlocal; i++)
			local_lock_release(entries[i], DLOCK_SCOPE_XACT, false);
	return granted;
}

/* The token came with the grant. */
static void
redis_draw_token(DlockEntry *entry pg_attribute_unused())
{
}

static bool
redis_still_held(DlockEntry *entry, DlockScope scope)
{
	return local_lock_still_held(entry, scope);
}

/*
 * Compare-and-renew the lease.  ERRORs (08006) when too few nodes answer;
 * returns false, with each node's answer in detail, when the lock is lost.
 */
static bool
renew_lease(DlockEntry *entry, RedisHold *hold, int64 lease_ms,
			bool at_commit, StringInfo detail)
{
	bool		outage;

	initStringInfo(detail);
	if (redis_proto_extend(hold, entry->key, lease_ms, &outage, detail))
	{
		note_lease(entry, hold);
		return true;
	}
	if (outage && at_commit)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not verify lock \"%s\" before COMMIT: Redis is unavailable",
						entry->key),
				 errdetail("%s.", detail->data)));
	if (outage)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not extend lock \"%s\": Redis is unavailable",
						entry->key),
				 errdetail("%s.", detail->data)));
	return false;
}

static bool
redis_extend(DlockEntry *entry, int64 lease_ms)
{
	RedisHold  *hold = (RedisHold *) entry->backend_data;
	StringInfoData detail;

	longest_lease_ms = Max(longest_lease_ms, lease_ms);
	if (hold == NULL || renew_lease(entry, hold, lease_ms, false, &detail))
		return true;
	ereport(WARNING,
			(errmsg("lock \"%s\" was lost", entry->key),
			 errdetail("%s.", detail.data)));
	return false;
}

/*
 * PRE_COMMIT: must the lock be checked in Redis before the transaction's
 * work becomes visible?  In auto mode only when the lease (minus drift)
 * may run out before the commit is done, so an ordinary transaction costs
 * no extra round trip.  ERRORs (40001) when the lease keeper found it lost.
 */
static bool
needs_check(DlockEntry *entry)
{
	RedisHold  *hold = (RedisHold *) entry->backend_data;
	TimestampTz lease_end;
	int64		lease_until_us;
	bool		lost;

	if (hold == NULL || lockext_verify_on_commit == LOCKEXT_VERIFY_OFF)
		return false;

	/* what the lease keeper found: lost, or renewed far enough */
	if (shared_locks_hold_state(entry, DLOCK_SCOPE_XACT, &lease_end,
								&lease_until_us, &lost))
	{
		if (lost)
		{
			shared_stats_count(DLOCK_STAT_LOST_AT_COMMIT, 1);
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("lock \"%s\" was lost before COMMIT", entry->key),
					 errdetail("The lease keeper found the lock no longer held in Redis: it was deleted, flushed or taken over."),
					 errhint("Find out what removed the key in Redis; lockext.verify_on_commit = always checks at every COMMIT too.")));
		}
		/* the monotonic clock: a wall clock set back must not stretch it */
		if (lockext_verify_on_commit == LOCKEXT_VERIFY_AUTO &&
			lockext_now_us() + lockext_command_timeout_ms * INT64CONST(1000) <
			lease_until_us)
			return false;
	}
	return !(lockext_verify_on_commit == LOCKEXT_VERIFY_AUTO &&
			 lockext_now_us() + lockext_command_timeout_ms * INT64CONST(1000) <
			 hold->valid_until_us);
}

static void
report_lost_at_commit(DlockEntry *entry, const char *detail)
{
	shared_stats_count(DLOCK_STAT_LOST_AT_COMMIT, 1);
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("lock \"%s\" was lost before COMMIT", entry->key),
			 errdetail("The lease ran out or another session took the lock: %s.",
					   detail),
			 errhint("Use a longer lease, or renew it with dlock_extend() during long transactions.")));
}

/* PRE_COMMIT check of one hold (see needs_check). */
static void
redis_verify(DlockEntry *entry)
{
	RedisHold  *hold = (RedisHold *) entry->backend_data;
	StringInfoData detail;

	if (!needs_check(entry))
		return;
	if (renew_lease(entry, hold, hold->lease_ms, true, &detail))
		return;
	report_lost_at_commit(entry, detail.data);
}

/*
 * PRE_COMMIT check of many holds: the ones that need a round trip are
 * renewed together, in pipelined batches per node set (as the lease keeper
 * renews), not one round trip each.
 */
static void
redis_verify_many(DlockEntry **entries, int n)
{
	DlockEntry **todo = palloc(n * sizeof(DlockEntry *));
	RedisRenewal *renewals = palloc(n * sizeof(RedisRenewal));
	int64	   *outcome = palloc(n * sizeof(int64));
	bool	   *done = palloc0(n * sizeof(bool));
	int			ntodo = 0;
	int			i;
	int			j;

	for (i = 0; i < n; i++)
		if (needs_check(entries[i]))
			todo[ntodo++] = entries[i];
	if (ntodo == 1)
	{
		redis_verify(todo[0]);
		return;
	}
	for (i = 0; i < ntodo; i++)
	{
		RedisHold  *set_hold;
		int			m = 0;
		int		   *at;

		if (done[i])
			continue;
		/* the holds of one node set go in one pipeline */
		set_hold = (RedisHold *) todo[i]->backend_data;
		at = palloc(ntodo * sizeof(int));
		for (j = i; j < ntodo; j++)
		{
			RedisHold  *hold = (RedisHold *) todo[j]->backend_data;
			char	   *owner;

			if (done[j] || hold->set != set_hold->set)
				continue;
			owner = palloc(redis_hold_owner_len(hold) + 1);
			redis_hold_owner(hold, owner, redis_hold_owner_len(hold) + 1);
			renewals[m].lockkey = psprintf("%s:lock:%s", hold->ns, todo[j]->key);
			renewals[m].lockkey_len = strlen(renewals[m].lockkey);
			renewals[m].owner = owner;
			renewals[m].owner_len = redis_owner_unique_len(owner);
			renewals[m].lease_ms = hold->lease_ms;
			at[m++] = j;
			done[j] = true;
		}
		redis_proto_extend_many(set_hold->set, renewals, m, outcome);
		for (j = 0; j < m; j++)
		{
			DlockEntry *entry = todo[at[j]];
			RedisHold  *hold = (RedisHold *) entry->backend_data;

			if (outcome[j] > 0)
			{
				hold->valid_until_us = outcome[j];
				note_lease(entry, hold);
			}
			else if (outcome[j] == 0)
				report_lost_at_commit(entry, "a majority of the Redis nodes no longer holds it for this session");
			else
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not verify lock \"%s\" before COMMIT: Redis is unavailable",
								entry->key),
						 errdetail("Too few of its %d Redis nodes answered (the first: %s).",
								   set_hold->set->n, set_hold->set->nodes[0].display)));
		}
	}
}

static bool
redis_holder(const char *key, int keylen pg_attribute_unused(), uint64 hash pg_attribute_unused(),
			 DlockHolderInfo *info)
{
	RedisNodeSet *set = configured_nodes();
	char	   *owner;
	int64		pttl;

	if (!redis_proto_holder(set, lockext_namespace, key, &owner, &pttl))
		return false;
	memset(info, 0, sizeof(*info));
	if (!redis_parse_owner(owner, info))
	{
		memset(info, 0, sizeof(*info));
		info->instance = pg_verifymbstr(owner, strlen(owner), true) ?
			psprintf("(not lockext: %s)", owner) :
			pstrdup("(not lockext: not valid text)");
	}
	info->lease_left_ms = pttl;
	return true;
}

/* What the lease keeper needs to renew this hold. */
static bool
redis_lease_info(DlockEntry *entry, DlockLeaseInfo *info)
{
	RedisHold  *hold = (RedisHold *) entry->backend_data;

	if (hold == NULL)
		return false;
	strlcpy(info->ns, hold->ns, sizeof(info->ns));
	(void) redis_hold_owner(hold, info->owner, sizeof(info->owner));
	info->nodes_fp = hold->set->fingerprint;
	info->lease_ms = hold->lease_ms;
	return true;
}

const DlockBackend redis_backend = {
	.name = "redis",
	.acquire = redis_acquire,
	.acquire_many = redis_acquire_many,
	.release = redis_release,
	.still_held = redis_still_held,
	.draw_token = redis_draw_token,
	.extend = redis_extend,
	.holder = redis_holder,
	.verify = redis_verify,
	.verify_many = redis_verify_many,
	.release_many = redis_release_many,
	.at_exit = redis_at_exit,
	.statement_end = redis_statement_end,
	.lease_info = redis_lease_info,
};
