/*-------------------------------------------------------------------------
 *
 * redis_proto.c
 *	  The Redis lock protocol over a set of N nodes: extend, wait, holder
 *	  and deadlock detection (acquire is redis_acquire.c's, release
 *	  redis_release.c's), and what they share.
 *
 * A lock is held when a majority (N/2+1) of the nodes granted it within
 * its validity: lease - elapsed - drift (1% of the lease + 2 ms); a single
 * node is a quorum of one.  Every step goes to all nodes at once
 * (redis_run).  The lock value is an owner string unique to this hold, so
 * release, extend and verification are compare-and-act scripts
 * (redis_scripts.c, which also lists the keys).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis.h"

static inline bool
reply_is_int(const RedisResult *r, long long value)
{
	return r->outcome == RNODE_OK && r->reply->type == REDIS_REPLY_INTEGER &&
		r->reply->integer == value;
}

/* Stop waiting once a majority confirmed (a compare-and-act returned 1). */
static bool
enough_confirmed(const RedisResult *results, int n)
{
	int			ok = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (reply_is_int(&results[i], 1))
			ok++;
	return ok >= quorum_of(n);
}

/* Stop waiting once a majority answered at all. */
static bool
enough_answered(const RedisResult *results, int n)
{
	int			ok = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (results[i].outcome == RNODE_OK)
			ok++;
	return ok >= quorum_of(n);
}

/* <ns>:<kind>:<key> */
char *
redis_key(const char *ns, const char *kind, const char *key)
{
	return psprintf("%s:%s:%s", ns, kind, key);
}

/* Add "node: what" to a detail of each node's outcome. */
void
redis_append_outcome(StringInfo detail, RedisNode *node, const char *what)
{
	if (detail == NULL)
		return;
	appendStringInfo(detail, "%s%s: %s", detail->len > 0 ? "; " : "",
					 node->display, what);
}

/* What a node's failure was, for a detail. */
const char *
redis_failure_text(const RedisResult *r)
{
	switch (r->outcome)
	{
		case RNODE_TIMED_OUT:
			return psprintf("timed out (%s)", r->detail);
		case RNODE_UNREACHABLE:
			return psprintf("unreachable (%s)", r->detail);
		case RNODE_ERROR_REPLY:
			return psprintf("refused (%s)", r->detail);
		default:
			return "unexpected reply";
	}
}

/*
 * Compare-and-PEXPIRE on every node: extends the lease and proves the lock
 * is still ours.  Returns true when a majority renewed it in time;
 * *outage tells a lost lock from nodes that did not answer.
 */
bool
redis_proto_extend(RedisHold *hold, const char *key, int64 lease_ms,
				   bool *outage, StringInfo detail)
{
	RedisNodeSet *set = hold->set;
	RedisResult results[LOCKEXT_MAX_NODES];
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	const char *keys[1];
	const char *args[2];
	int			quorum = quorum_of(set->n);
	int			renewed = 0;
	int			lost = 0;
	int64		start = lockext_now_us();
	int			i;

	keys[0] = redis_key(hold->ns, "lock", key);
	args[0] = redis_owner_of(hold);
	args[1] = psprintf(INT64_FORMAT, lease_ms);

	redis_run_script(nodes, set_nodes(set, nodes), SCRIPT_EXTEND, 1, keys, 2, args,
					 NULL, 0, 0, false, enough_confirmed, results);
	for (i = 0; i < set->n; i++)
	{
		RedisResult *r = &results[i];

		if (r->outcome == RNODE_OK && r->reply->type == REDIS_REPLY_INTEGER)
		{
			if (r->reply->integer == 1)
			{
				renewed++;
				redis_append_outcome(detail, &set->nodes[i], "renewed");
			}
			else
			{
				lost++;
				redis_append_outcome(detail, &set->nodes[i], "no longer held");
			}
		}
		else
			redis_append_outcome(detail, &set->nodes[i], redis_failure_text(r));
	}
	redis_results_free(results, set->n);

	*outage = (renewed < quorum && set->n - lost >= quorum);
	if (renewed >= quorum &&
		lease_ms * 1000 - (lockext_now_us() - start) - redis_drift_us(lease_ms) > 0)
	{
		hold->lease_ms = lease_ms;
		hold->valid_until_us = start + lease_ms * 1000 - redis_drift_us(lease_ms);
		return true;
	}
	return false;
}

/* Stop waiting once any node announced a release. */
static bool
enough_woken(const RedisResult *results, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (results[i].outcome == RNODE_OK &&
			results[i].reply->type == REDIS_REPLY_ARRAY)
			return true;
	/* the wait ran out on a majority: a paused node must not prolong it */
	return enough_answered(results, n);
}

/*
 * Wait up to wait_ms for a release to be announced on the key's wake list,
 * on every node at once; the first node that announces one ends the wait.
 * Returns false when the wait failed at once (BLPOP refused, nodes
 * unreachable), so the caller does not retry at full speed; errors are
 * otherwise left to the next acquire, which reports them properly.
 */
bool
redis_proto_wait(RedisNodeSet *set, const char *ns, const char *key,
				 int64 wait_ms)
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	const char *argv[3];
	size_t		argvlen[3];
	RedisCommand cmd;
	char		secs[32];
	bool		waited = false;
	bool		woken = false;
	int			i;

	wait_ms = Max(wait_ms, 1);
	snprintf(secs, sizeof(secs), "%.3f", wait_ms / 1000.0);
	argv[0] = "BLPOP";
	argv[1] = redis_key(ns, "wake", key);
	argv[2] = secs;
	for (i = 0; i < 3; i++)
		argvlen[i] = strlen(argv[i]);
	cmd.argc = 3;
	cmd.argv = argv;
	cmd.argvlen = argvlen;
	redis_run_waits_for_lock();
	redis_run(nodes, set_nodes(set, nodes), &cmd, NULL, 0, wait_ms, false,
			  enough_woken, results);
	for (i = 0; i < set->n; i++)
		woken |= (results[i].outcome == RNODE_OK &&
				  results[i].reply->type == REDIS_REPLY_ARRAY);
	for (i = 0; i < set->n; i++)
	{
		if (results[i].outcome == RNODE_OK)
			waited = true;

		/*
		 * A BLPOP still blocked there would stall the next command; one not
		 * waited for once the wait ran out on a majority ends as soon.
		 */
		else if (results[i].outcome == RNODE_TIMED_OUT &&
				 (woken || !results[i].not_awaited))
			redis_disconnect(&set->nodes[i]);
	}
	redis_results_free(results, set->n);
	return waited;
}

/*
 * The current holder's owner value and remaining lease as a majority of
 * nodes report them.  Returns false when free; ERRORs on an outage or a
 * lock key of another type.
 */
bool
redis_proto_holder(RedisNodeSet *set, const char *ns, const char *key, char **owner,
				   int64 *pttl_ms)
{
	RedisResult results[LOCKEXT_MAX_NODES];
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	const char *keys[1];
	StringInfoData detail;
	int			answered = 0;
	int			best_votes = 0;
	int			i;
	int			j;

	initStringInfo(&detail);
	keys[0] = redis_key(ns, "lock", key);
	redis_run_script(nodes, set_nodes(set, nodes), SCRIPT_HOLDER, 1, keys, 0, NULL,
					 NULL, 0, 0, false, enough_answered, results);

	*owner = NULL;
	*pttl_ms = -1;
	for (i = 0; i < set->n; i++)
	{
		RedisResult *r = &results[i];

		if (r->outcome == RNODE_ERROR_REPLY && r->reply &&
			strstr(r->reply->str, "WRONGTYPE") != NULL)
		{
			redis_results_free(results, set->n);
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("Redis key \"%s\" of lock \"%s\" holds a value of another type",
							keys[0], key),
					 errdetail("Node %s answered: %s.", set->nodes[i].display, r->detail),
					 errhint("Delete the key in Redis, or change lockext.namespace.")));
		}
		if (r->outcome != RNODE_OK || r->reply->type != REDIS_REPLY_ARRAY)
		{
			redis_append_outcome(&detail, &set->nodes[i], redis_failure_text(r));
			continue;
		}
		answered++;
		if (r->reply->elements < 2)
			continue;
		/* the owner value most nodes agree on */
		{
			int			votes = 0;

			for (j = 0; j < set->n; j++)
				if (results[j].outcome == RNODE_OK &&
					results[j].reply->type == REDIS_REPLY_ARRAY &&
					results[j].reply->elements >= 2 &&
					strcmp(results[j].reply->element[0]->str,
						   r->reply->element[0]->str) == 0)
					votes++;
			if (votes > best_votes)
			{
				best_votes = votes;
				*owner = pstrdup(r->reply->element[0]->str);
				*pttl_ms = r->reply->element[1]->integer;
			}
		}
	}
	redis_results_free(results, set->n);

	if (answered < quorum_of(set->n))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the holder of lock \"%s\" from Redis", key),
				 errdetail("%s.", detail.data)));
	return best_votes >= quorum_of(set->n);
}

/*
 * A node's DETECT answer: a cycle (which edges the node shows held, then
 * the edges), or not.
 */
static bool
is_cycle(const RedisResult *r)
{
	return r->outcome == RNODE_OK && r->reply->type == REDIS_REPLY_ARRAY &&
		r->reply->elements > 1 &&
		r->reply->element[0]->type == REDIS_REPLY_STRING &&
		r->reply->element[0]->len == r->reply->elements - 1;
}

/* The same edges, whichever of them each node shows held. */
static bool
same_cycle(const redisReply *a, const redisReply *b)
{
	size_t		k;

	if (a->elements != b->elements)
		return false;
	for (k = 1; k < a->elements; k++)
	{
		const redisReply *x = a->element[k];
		const redisReply *y = b->element[k];

		if (x->type != REDIS_REPLY_STRING || y->type != REDIS_REPLY_STRING ||
			x->len != y->len || memcmp(x->str, y->str, x->len) != 0)
			return false;
	}
	return true;
}

/* DETECT follows at most this many edges. */
#define DETECT_MAX_HOPS 100

/*
 * Does a majority of the n nodes see the cycle results[i] gives, and for
 * each of its waits on Redis a majority (of those) its holder's value?
 * A holder that holds the key on no majority holds nothing (a release or
 * the give-back of a split vote that has not reached every node yet).
 */
static bool
cycle_counts(const RedisResult *results, int n, int i)
{
	const redisReply *rep = results[i].reply;
	int			nedges = (int) rep->elements - 1;
	int			held[DETECT_MAX_HOPS] = {0};
	int			votes = 0;
	int			j;
	int			k;

	if (nedges > DETECT_MAX_HOPS)
		return false;
	for (j = 0; j < n; j++)
	{
		if (!is_cycle(&results[j]) || !same_cycle(rep, results[j].reply))
			continue;
		votes++;
		for (k = 0; k < nedges; k++)
			if (results[j].reply->element[0]->str[k] == '1')
				held[k]++;
	}
	if (votes < quorum_of(n))
		return false;
	for (k = 0; k < nedges; k++)
		if (held[k] < quorum_of(n))
			return false;
	return true;
}

/*
 * Deadlock detection across instances (deadlock.c): publish the wait-for
 * edges (edge_ids[i] waits as edges[i] says), with a time to live, on
 * every node, and follow them from session me.  Returns the edges of a
 * cycle through me that a majority of the nodes sees, the same on each
 * ("waiter|edge" each), each of its holders on Redis holding its key on a
 * majority, or NULL.  Decides on the first majority of nodes to answer:
 * a paused node does not hold the check up (it still gets the edges when
 * it wakes).  A cycle those nodes do not all see yet (an edge still on its
 * way to one) or whose holder some of them lack is not one now; the next
 * look, a deadlock_timeout later, sees again.  May ERROR (cancel).
 */
char	  **
redis_proto_detect(RedisNodeSet *set, const char *ns, const char *me,
				   const char **edge_ids, const char **edges, int nedges,
				   int64 ttl_ms, int *npath)
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	const char **args = palloc((4 + 2 * nedges) * sizeof(char *));
	char	  **path = NULL;
	int			i;

	args[0] = ns;
	args[1] = me;
	args[2] = psprintf(INT64_FORMAT, ttl_ms);
	args[3] = psprintf("%d", nedges);
	for (i = 0; i < nedges; i++)
	{
		args[4 + 2 * i] = edge_ids[i];
		args[5 + 2 * i] = edges[i];
	}
	redis_run_script(nodes, set_nodes(set, nodes), SCRIPT_DETECT, 0, NULL,
					 4 + 2 * nedges, args, NULL, 0, 0, false, enough_answered,
					 results);
	*npath = 0;
	for (i = 0; i < set->n && path == NULL; i++)
	{
		redisReply *rep = results[i].reply;
		int			j;

		if (!is_cycle(&results[i]) || !cycle_counts(results, set->n, i))
			continue;
		*npath = (int) rep->elements - 1;
		path = palloc(*npath * sizeof(char *));
		for (j = 0; j < *npath; j++)
			path[j] = pstrdup(rep->element[j + 1]->str);
	}
	redis_results_free(results, set->n);
	return path;
}

/*
 * The wait of session me is over: its edge goes.  A node that did not
 * answer (down, restarting with its data, timed out) gets the delete again
 * first thing on its next connection, like a release, so an edge the node
 * keeps or reloads cannot outlive the wait into the session's next
 * transaction.  Never ERRORs.
 */
void
redis_proto_forget_edge(RedisNodeSet *set, const char *ns, const char *me)
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	const char *argv[2];
	RedisCommand cmd;
	char	   *fmt = NULL;
	size_t		len = 0;
	int			nkeys = 0;
	int			confirmed = 0;
	int			i;

	argv[0] = "DEL";
	argv[1] = redis_key(ns, "waitfor", me);
	cmd.argc = 2;
	cmd.argv = argv;
	cmd.argvlen = NULL;
	redis_run(nodes, set_nodes(set, nodes), &cmd, NULL, 0, 0, true,
			  enough_answered, results);
	for (i = 0; i < set->n; i++)
	{
		int			flen;

		if (results[i].outcome == RNODE_OK || results[i].not_awaited)
			continue;
		if (fmt == NULL &&
			(flen = redisFormatCommandArgv(&fmt, cmd.argc, cmd.argv, NULL)) > 0)
			len = (size_t) flen;
		if (fmt != NULL)
			redis_send_givebacks(&nodes[i], 1, &fmt, &len, &nkeys, NULL, 1,
								 false, &confirmed);
	}
	if (fmt != NULL)
		redisFreeCommand(fmt);
	redis_results_free(results, set->n);
}
