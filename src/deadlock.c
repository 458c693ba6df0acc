/*-------------------------------------------------------------------------
 *
 * deadlock.c
 *	  Deadlock detection across instances, for sessions waiting on Redis.
 *
 * PostgreSQL's detector sees the waits of one instance.  A cycle that
 * crosses instances passes through at least one wait on Redis; the
 * sessions waiting there look for it.  Sessions are named by their
 * session ids (shared_locks_session_id), which Redis owner values start
 * with, so a waiter knows whom it waits for from the holder's value.
 *
 * Nothing happens before a wait has lasted deadlock_timeout: a transaction
 * that never waits that long pays nothing.  Then, and every
 * deadlock_timeout after, the waiter publishes in Redis, with a time to
 * live, its wait-for edge (itself -> the holder, which key, since when,
 * and a stamp new at each look) and the edges of the waits in its own
 * database's local queue that lead to it (a session queued for a key
 * waits for the session holding the key's local lock; those sessions
 * sleep in the lock manager and cannot publish themselves), read from one
 * copy of the lock manager and only while the lock manager shows them
 * waiting; and in the same script follows the edges from itself
 * (redis_proto_detect).
 *
 * An edge counts only while its wait is live.  The waiter deletes its
 * edge however its wait ends, an ERROR (cancel, statement_timeout, 40P01,
 * an outage) included, and republishes it at once when the holder it
 * waits for changes; a node that does not answer the delete (down, or
 * restarting with its data) gets it again first thing on its next
 * connection, as a release does, so the edge cannot outlive the wait into
 * what the session does next.  A wait on Redis is not followed once
 * another value holds the key, and counts only while its holder holds the
 * key, i.e. while a majority of the nodes shows the holder's value: a
 * value only some nodes still show (a release, or the give-back of a
 * split vote, on its way) holds nothing, though a waiter names as its
 * holder the value of the first node that refused it.  A local wait carries the publisher's session id and
 * stamp and is followed only while the publisher's own edge carries the
 * same stamp, so each look replaces all the local waits of the one
 * before, and its end ends them.  The time to live only bounds what a
 * session that died mid-wait leaves behind (a session that exits releases
 * its holds, so nothing waits for it; one killed with SIGKILL keeps its
 * holds until their leases end, and its edge its time to live).
 *
 * One victim per cycle, chosen alike by everyone who sees the cycle: the
 * youngest wait (latest start, then the larger session id) among the
 * sessions that can act, i.e. those waiting on Redis.  Only the victim
 * raises 40P01; the others go on waiting and get their locks when the
 * victim's transaction ends.  Once a cycle is closed, every waiter on
 * Redis in it looks within deadlock_timeout and the edges of local waits
 * are republished as often, so the victim fails within twice
 * deadlock_timeout plus a round trip.  On a quorum a cycle counts when a
 * majority of the nodes sees the same one, each wait on Redis in it with
 * its holder's value on a majority; the first majority to answer decides,
 * so a paused node does not delay the check (a cycle those nodes do not
 * all see yet is looked for again at the next look).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "redis_backend.h"
#include "local_lock.h"
#include "shared_locks.h"

/* One edge of a cycle, as redis_proto_detect returns it. */
typedef struct CycleEdge
{
	char	   *waiter;
	bool		can_act;		/* waits on Redis: may be the victim */
	TimestampTz since;
	char	   *instance;
	int			pid;
	char	   *key;
} CycleEdge;

void
deadlock_watch_start(DeadlockWatch *w)
{
	w->started = true;
	w->started_at = GetCurrentTimestamp();
	w->next_check_us = lockext_now_us() + (int64) DeadlockTimeout * 1000;
	w->published = false;
}

/* How long a wait may sleep before the next look. */
int64
deadlock_watch_cap(const DeadlockWatch *w, int64 wait_ms)
{
	int64		left_ms = (w->next_check_us - lockext_now_us() + 999) / 1000;

	return Max(1, Min(wait_ms, left_ms));
}

/* This instance's name as an edge field: no '|'. */
static char *
instance_field(void)
{
	char	   *name = lockext_instance_name();
	char	   *p;

	for (p = name; *p; p++)
		if (*p == '|')
			*p = '_';
	return name;
}

/* holder|in Redis|can act|since|instance|pid|stamp|key */
static char *
edge_value(const char *holder, bool in_redis, bool can_act, TimestampTz since,
		   const char *instance, int pid, const char *stamp, const char *key)
{
	return psprintf("%s|%d|%d|" INT64_FORMAT "|%s|%d|%s|%s", holder,
					in_redis ? 1 : 0, can_act ? 1 : 0, since, instance, pid,
					stamp, key);
}

/* Split "waiter|holder|r|a|since|instance|pid|key"; false if malformed. */
static bool
parse_edge(char *s, CycleEdge *e)
{
	char	   *field[7];
	int			i;

	for (i = 0; i < 7; i++)
	{
		char	   *bar = strchr(s, '|');

		if (bar == NULL)
			return false;
		*bar = '\0';
		field[i] = s;
		s = bar + 1;
	}
	e->waiter = field[0];
	e->can_act = (field[3][0] == '1');
	e->since = strtoll(field[4], NULL, 10);
	e->instance = field[5];
	e->pid = atoi(field[6]);
	e->key = s;
	return true;
}

/*
 * Keep the local waits whose chain of holders (each waits for the next in
 * the lock manager) ends at this backend, i.e. the local part of any
 * cycle through our wait; returns how many.  Every other chain ends at
 * another waiter on Redis, which publishes it, or at a session that does
 * not wait, which no cycle passes.
 */
static int
waits_into_me(WaitEdge *local, int n, WaitEdge *kept)
{
	int			nkept = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		int			pid = local[i].holder_pid;
		int			hops;

		for (hops = 0; hops < n && pid != MyProcPid; hops++)
		{
			int			j;

			for (j = 0; j < n && local[j].waiter_pid != pid; j++)
				;
			if (j == n)
				break;			/* that holder does not wait locally */
			pid = local[j].holder_pid;
		}
		if (pid == MyProcPid)
			kept[nkept++] = local[i];
	}
	return nkept;
}

/*
 * If the wait has lasted deadlock_timeout since the last look, or what we
 * published no longer says whom we wait for, publish the edges and look
 * for a cycle through this session; ERROR 40P01 when there is one and
 * this session is its victim.  holder_value is the owner value of key's
 * holder, as Redis gave it; key stays valid for the whole wait.
 */
void
deadlock_check(DeadlockWatch *w, RedisNodeSet *set, const char *ns,
			   const char *key, const char *holder_value)
{
	static uint64 publications = 0;
	bool		named = holder_value != NULL &&
		strlen(holder_value) >= LOCKEXT_SESSION_ID_LEN;
	const char *me;
	char	   *instance;
	char	   *stamp;
	char	   *local_stamp;
	LocalLockSnapshot snapshot = {0};
	WaitEdge   *local;
	WaitEdge   *mine;
	int			nlocal;
	const char **ids;
	const char **edges;
	char	  **path;
	int			npath;
	CycleEdge  *cycle;
	CycleEdge  *victim = NULL;
	StringInfoData detail;
	int			i;

	if (lockext_now_us() < w->next_check_us &&
		!(w->published &&
		  (!named || strncmp(w->holder, holder_value, LOCKEXT_SESSION_ID_LEN) != 0 ||
		   strcmp(w->key, key) != 0)))
		return;
	w->next_check_us = lockext_now_us() + (int64) DeadlockTimeout * 1000;
	/*
	 * Not a value lockext wrote (no session), or a session of this instance
	 * that holds the key no more (its release is on its way): nothing a
	 * cycle could pass through; what we said is stale.
	 */
	if (!named || shared_locks_holder_gone_local(holder_value, key))
	{
		deadlock_watch_end(w, set, ns);
		return;
	}

	/*
	 * Our edge carries a stamp new at each publication, and the local
	 * waits we publish carry our session id and that stamp: they count only
	 * while our edge is this one (DETECT), so each look replaces them all.
	 */
	me = shared_locks_session_id();
	instance = instance_field();
	stamp = psprintf(UINT64_FORMAT, ++publications);
	local_stamp = psprintf("%s:%s", me, stamp);
	nlocal = shared_locks_wait_edges(MyDatabaseId, local_lock_blocker,
									 &snapshot, &local);
	mine = palloc(Max(nlocal, 1) * sizeof(WaitEdge));
	nlocal = waits_into_me(local, nlocal, mine);
	ids = palloc((nlocal + 1) * sizeof(char *));
	edges = palloc((nlocal + 1) * sizeof(char *));
	ids[0] = me;
	edges[0] = edge_value(pnstrdup(holder_value, LOCKEXT_SESSION_ID_LEN), true,
						  true, w->started_at, instance, MyProcPid, stamp, key);
	for (i = 0; i < nlocal; i++)
	{
		ids[i + 1] = mine[i].waiter;
		edges[i + 1] = edge_value(mine[i].holder, false, false, mine[i].since,
								  instance, mine[i].waiter_pid, local_stamp,
								  mine[i].key);
	}
	memcpy(w->holder, holder_value, LOCKEXT_SESSION_ID_LEN);
	w->holder[LOCKEXT_SESSION_ID_LEN] = '\0';
	w->key = key;
	w->published = true;		/* even if the call fails half-way */
	path = redis_proto_detect(set, ns, me, ids, edges, nlocal + 1,
							  2 * (int64) DeadlockTimeout + 2000, &npath);
	if (path == NULL)
		return;

	cycle = palloc(npath * sizeof(CycleEdge));
	for (i = 0; i < npath; i++)
	{
		if (!parse_edge(path[i], &cycle[i]))
			return;
		if (cycle[i].can_act &&
			(victim == NULL || cycle[i].since > victim->since ||
			 (cycle[i].since == victim->since &&
			  strcmp(cycle[i].waiter, victim->waiter) > 0)))
			victim = &cycle[i];
	}
	if (victim == NULL || strcmp(victim->waiter, me) != 0)
		return;					/* another one gives way */

	/* as PostgreSQL's own report: who waits for what, blocked by whom */
	initStringInfo(&detail);
	for (i = 0; i < npath; i++)
	{
		CycleEdge  *next = &cycle[(i + 1) % npath];

		appendStringInfo(&detail, "%sProcess %d on %s waits for lock \"%s\"; blocked by process %d on %s.",
						 i > 0 ? "\n" : "", cycle[i].pid, cycle[i].instance,
						 cycle[i].key, next->pid, next->instance);
	}
	deadlock_watch_end(w, set, ns);
	ereport(ERROR,
			(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
			 errmsg("deadlock detected"),
			 errdetail_internal("%s", detail.data),
			 errhint("Take locks in one order everywhere, or all at once with dlock_acquire_all().")));
}

/* The wait is over: our edge goes, if we published one.  Never ERRORs. */
void
deadlock_watch_end(DeadlockWatch *w, RedisNodeSet *set, const char *ns)
{
	if (w->published)
		redis_proto_forget_edge(set, ns, shared_locks_session_id());
	w->published = false;
}
