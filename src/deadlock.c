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
 * live, its wait-for edge (itself -> the holder, which key, since when)
 * and the edges of its own instance's local queue (a session queued for a
 * key waits for the session holding the key's local lock; those sessions
 * sleep in the lock manager and cannot publish themselves), and in the
 * same script follows the edges from itself (redis_proto_detect).  An
 * edge whose key is in Redis is not followed once another value holds the
 * key (the wait is over); a key missing on a node says nothing, as a
 * quorum grant may have skipped that node.
 *
 * One victim per cycle, chosen alike by everyone who sees the cycle: the
 * youngest wait (latest start, then the larger session id) among the
 * sessions that can act, i.e. those waiting on Redis.  Only the victim
 * raises 40P01; the others go on waiting and get their locks when the
 * victim's transaction ends.  Once a cycle is closed, every waiter on
 * Redis in it looks within deadlock_timeout and the edges of local waits
 * are republished as often, so the victim fails within twice
 * deadlock_timeout plus a round trip.  On a quorum a cycle counts when a
 * majority of the nodes sees it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "redis.h"

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

/* holder|in Redis|can act|since|instance|pid|key */
static char *
edge_value(const char *holder, bool in_redis, bool can_act, TimestampTz since,
		   const char *instance, int pid, const char *key)
{
	return psprintf("%s|%d|%d|" INT64_FORMAT "|%s|%d|%s", holder,
					in_redis ? 1 : 0, can_act ? 1 : 0, since, instance, pid, key);
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
 * If the wait has lasted deadlock_timeout since the last look, publish
 * the edges and look for a cycle through this session; ERROR 40P01 when
 * there is one and this session is its victim.  holder_value is the owner
 * value of key's holder, as Redis gave it.
 */
void
deadlock_check(DeadlockWatch *w, RedisNodeSet *set, const char *ns,
			   const char *key, const char *holder_value)
{
	const char *me;
	char	   *instance;
	WaitEdge   *local;
	int			nlocal;
	const char **ids;
	const char **edges;
	char	  **path;
	int			npath;
	CycleEdge  *cycle;
	CycleEdge  *victim = NULL;
	StringInfoData detail;
	int			i;

	if (lockext_now_us() < w->next_check_us)
		return;
	w->next_check_us = lockext_now_us() + (int64) DeadlockTimeout * 1000;
	if (holder_value == NULL || strlen(holder_value) < LOCKEXT_SESSION_ID_LEN)
		return;					/* not a value lockext wrote: no session */

	me = shared_locks_session_id();
	instance = instance_field();
	nlocal = shared_locks_wait_edges(local_lock_holder_pid, &local);
	ids = palloc((nlocal + 1) * sizeof(char *));
	edges = palloc((nlocal + 1) * sizeof(char *));
	ids[0] = me;
	edges[0] = edge_value(pnstrdup(holder_value, LOCKEXT_SESSION_ID_LEN), true,
						  true, w->started_at, instance, MyProcPid, key);
	for (i = 0; i < nlocal; i++)
	{
		ids[i + 1] = local[i].waiter;
		edges[i + 1] = edge_value(local[i].holder, false, false, local[i].since,
								  instance, local[i].waiter_pid, local[i].key);
	}
	path = redis_proto_detect(set, ns, me, ids, edges, nlocal + 1,
							  2 * (int64) DeadlockTimeout + 2000, &npath);
	w->published = true;
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
