/*-------------------------------------------------------------------------
 *
 * redis_proto.c
 *	  The Redis lock protocol: owner values, and acquire, release, extend,
 *	  wait and holder over a set of N nodes.
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

/* The random part of owner values that only this backend writes. */
#define OWNER_PREFIX_LEN LOCKEXT_SESSION_ID_LEN

static inline bool
reply_is_int(const RedisResult *r, long long value)
{
	return r->outcome == RNODE_OK && r->reply->type == REDIS_REPLY_INTEGER &&
		r->reply->integer == value;
}

/*
 * Stop waiting once a majority granted the acquire, or once so many said
 * no that no majority can grant it: a paused node must not hold up every
 * attempt of a wait (what it may still grant is given back).
 */
static bool
enough_granted(const RedisResult *results, int n)
{
	int			granted = 0;
	int			denied = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (results[i].outcome != RNODE_OK)
			continue;
		if (results[i].reply->type == REDIS_REPLY_ARRAY &&
			results[i].reply->elements >= 2 &&
			results[i].reply->element[0]->type == REDIS_REPLY_INTEGER &&
			results[i].reply->element[0]->integer == 1)
			granted++;
		else
			denied++;
	}
	return granted >= quorum_of(n) || denied > n - quorum_of(n);
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

static char *
redis_key(const char *ns, const char *kind, const char *key)
{
	return psprintf("%s:%s:%s", ns, kind, key);
}



static void
append_node_outcome(StringInfo detail, RedisNode *node, const char *what)
{
	if (detail == NULL)
		return;
	appendStringInfo(detail, "%s%s: %s", detail->len > 0 ? "; " : "",
					 node->display, what);
}

static const char *
failure_text(RedisResult *r)
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
 * The SQLSTATE for an error reply that is the server's considered answer
 * rather than a sign of an outage, or 0.  Scripts pass on the error code
 * of the command that failed inside them, so it is looked for anywhere;
 * an ACL denial inside a script reads differently (Redis 7.0, and again
 * from 7.2: "ERR ACL failure in script: ...").
 */
static int
refusal_errcode(const char *msg)
{
	if (strstr(msg, "WRONGTYPE") != NULL)
		return ERRCODE_WRONG_OBJECT_TYPE;
	if (strstr(msg, "NOPERM") != NULL ||
		strstr(msg, "can't run this command") != NULL ||
		strstr(msg, "ACL failure in script") != NULL)
		return ERRCODE_INSUFFICIENT_PRIVILEGE;
	if (strstr(msg, "OOM ") != NULL)
		return ERRCODE_OUT_OF_MEMORY;
	if (strstr(msg, "LOCKEXT_FENCE") != NULL)
		return ERRCODE_DATA_CORRUPTED;
	return 0;
}

/* What a node refused, as a SQLSTATE, or 0. */
static int
refusal_of(const RedisResult *r)
{
	if (r->refusal != 0)
		return r->refusal;
	if (r->outcome == RNODE_ERROR_REPLY && r->reply != NULL)
		return refusal_errcode(r->reply->str);
	return 0;
}

/*
 * Send the acquire script for keys[0..n) (ACQUIRE for one, ACQUIRE_MANY
 * for more).  If we never learn a node's answer (time-out, cancel,
 * termination), the compare-and-delete of our values follows the acquire
 * on the same connection, and again on the next one: no ghost.
 */
static void
run_acquire(RedisNodeSet *set, RedisHold **holds, const char **keys, int n,
			int64 lease_ms, RedisResult *results)
{
	RedisRelease *rel = palloc0(n * sizeof(RedisRelease));
	const char *ns = holds[0]->ns;
	const char **rkeys = palloc((2 * n + 1) * sizeof(char *));
	const char **args = palloc((n + 2) * sizeof(char *));
	const char *lease = psprintf(INT64_FORMAT, lease_ms);
	const char *prefix = pnstrdup(redis_owner_of(holds[0]), OWNER_PREFIX_LEN);
	size_t		undo_len;
	char	   *undo;
	int			i;

	for (i = 0; i < n; i++)
	{
		rel[i].key = keys[i];
		rel[i].hold = holds[i];
	}
	if (n == 1)
	{
		rkeys[0] = redis_key(ns, "lock", keys[0]);
		rkeys[1] = psprintf("%s:fence", ns);
		rkeys[2] = redis_key(ns, "waiting", keys[0]);
		args[0] = redis_owner_of(holds[0]);
		args[1] = lease;
		args[2] = prefix;
	}
	else
	{
		rkeys[0] = psprintf("%s:fence", ns);
		args[0] = lease;
		args[1] = prefix;
		for (i = 0; i < n; i++)
		{
			rkeys[1 + i] = redis_key(ns, "lock", keys[i]);
			rkeys[1 + n + i] = redis_key(ns, "waiting", keys[i]);
			args[2 + i] = redis_owner_of(holds[i]);
		}
	}
	undo = redis_format_release(rel, n, &undo_len);

	PG_TRY();
	{
		RedisNode  *nodes[LOCKEXT_MAX_NODES];

		redis_run_script(nodes, set_nodes(set, nodes),
						 n == 1 ? SCRIPT_ACQUIRE : SCRIPT_ACQUIRE_MANY,
						 2 * n + 1, rkeys, n + 2, args, undo, undo_len, 0,
						 false, enough_granted, results);
	}
	PG_FINALLY();
	{
		if (undo)
			redisFreeCommand(undo);
	}
	PG_END_TRY();
}

/*
 * Take keys[0..n) in Redis for holds[0..n) (fresh RedisHolds on one node
 * set), all or none, in one round trip per node.  out->tokens[i] is each
 * key's token (out->token the largest); when a key is held by another,
 * out->busy_index names it, with its holder and remaining lease.
 */
void
redis_proto_acquire_many(RedisHold **holds, const char **keys, int n,
						 int64 lease_ms, RedisAcquireResult *out)
{
	RedisNodeSet *set = holds[0]->set;
	RedisResult results[LOCKEXT_MAX_NODES];
	int			quorum = quorum_of(set->n);
	int			granted = 0;
	int			held = 0;
	int			unknown = 0;
	int64		start = lockext_now_us();
	int64		validity_us;
	int			refusal;
	int			i;
	int			k;

	memset(out, 0, sizeof(*out));
	out->holder_pttl_ms = -1;
	out->tokens = palloc0(n * sizeof(int64));
	initStringInfo(&out->detail);
	for (k = 0; k < n; k++)
	{
		redis_make_owner(holds[k]);
		/* the hold keeps the namespace it was taken in */
		Assert(holds[k]->ns != NULL);	/* the caller's namespace */
	}

	run_acquire(set, holds, keys, n, lease_ms, results);

	for (i = 0; i < set->n; i++)
	{
		RedisResult *r = &results[i];
		redisReply *rep = r->reply;

		if (r->outcome == RNODE_OK && rep->type == REDIS_REPLY_ARRAY &&
			rep->elements >= 2 && rep->element[0]->type == REDIS_REPLY_INTEGER)
		{
			/* {1, token...} or {0, [position,] owner, pttl} */
			int			at = (n == 1) ? 1 : 2;

			if (rep->element[0]->integer == 1 && (int) rep->elements == n + 1)
			{
				granted++;
				for (k = 0; k < n; k++)
					out->tokens[k] = Max(out->tokens[k],
										 rep->element[k + 1]->integer);
				append_node_outcome(&out->detail, &set->nodes[i], "granted");
			}
			else if (rep->element[0]->integer == 0 &&
					 (int) rep->elements >= at + 2 &&
					 rep->element[at]->type == REDIS_REPLY_STRING)
			{
				int			busy = 0;

				if (n > 1 && rep->element[1]->type == REDIS_REPLY_INTEGER)
					busy = (int) Min(Max(rep->element[1]->integer - 1, 0), n - 1);
				held++;
				out->holder_pttl_ms = Max(out->holder_pttl_ms,
										  rep->element[at + 1]->integer);
				if (out->holder == NULL)
				{
					out->holder = pstrdup(rep->element[at]->str);
					out->busy_index = busy;
				}
				append_node_outcome(&out->detail, &set->nodes[i],
									n > 1 ?
									psprintf("\"%s\" held by %s", keys[busy],
											 redis_describe_owner(rep->element[at]->str)) :
									psprintf("held by %s",
											 redis_describe_owner(rep->element[at]->str)));
			}
			else
				append_node_outcome(&out->detail, &set->nodes[i], "unexpected reply");
		}
		else if ((refusal = refusal_of(r)) != 0)
		{
			/* the first kind of refusal seen names the error */
			if (out->refusal == 0)
				out->refusal = refusal;
			append_node_outcome(&out->detail, &set->nodes[i],
								psprintf("refused (%s)",
										 rep != NULL ? rep->str : r->detail));
		}
		else
		{
			/* a timed-out acquire has its undo behind it already */
			if (r->not_awaited)
				unknown++;
			append_node_outcome(&out->detail, &set->nodes[i], failure_text(r));
		}
	}
	redis_results_free(results, set->n);
	for (k = 0; k < n; k++)
		out->token = Max(out->token, out->tokens[k]);

	out->elapsed_us = lockext_now_us() - start;
	validity_us = lease_ms * 1000 - out->elapsed_us - redis_drift_us(lease_ms);
	if (granted >= quorum && validity_us > 0)
	{
		out->status = REDIS_ACQ_GRANTED;
		for (k = 0; k < n; k++)
		{
			holds[k]->token = out->tokens[k];
			holds[k]->lease_ms = lease_ms;
			holds[k]->valid_until_us = start + lease_ms * 1000 -
				redis_drift_us(lease_ms);
		}
		return;
	}

	/*
	 * Not held: give back what was granted, so nobody waits for it, and
	 * what a node whose answer we stopped waiting for may still grant
	 * (behind the acquire on the same connection, so it runs after it).
	 */
	out->granted = granted;
	if (granted > 0 || unknown > 0)
	{
		RedisRelease *rel = palloc0(n * sizeof(RedisRelease));
		char		ignored[8];

		for (k = 0; k < n; k++)
		{
			rel[k].key = keys[k];
			rel[k].hold = holds[k];
		}
		(void) redis_proto_release_many(rel, n, true, ignored, sizeof(ignored));
	}

	/*
	 * Busy when the answers leave room for another holder's majority (or
	 * we were just too slow); otherwise too many nodes failed to answer.
	 */
	if (granted >= quorum)
		out->status = REDIS_ACQ_EXPIRED;	/* granted too slowly */
	else if (granted + held >= quorum)
		out->status = REDIS_ACQ_BUSY;
	else if (out->refusal != 0)
		out->status = REDIS_ACQ_REFUSED;
	else
		out->status = REDIS_ACQ_OUTAGE;
}

void
redis_proto_acquire(RedisHold *hold, const char *key, int64 lease_ms,
					RedisAcquireResult *out)
{
	redis_proto_acquire_many(&hold, &key, 1, lease_ms, out);
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
				append_node_outcome(detail, &set->nodes[i], "renewed");
			}
			else
			{
				lost++;
				append_node_outcome(detail, &set->nodes[i], "no longer held");
			}
		}
		else
			append_node_outcome(detail, &set->nodes[i], failure_text(r));
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
			append_node_outcome(&detail, &set->nodes[i], failure_text(r));
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

/* A node's DETECT answer: the edges of a cycle (non-empty), or not. */
static bool
is_cycle(const RedisResult *r)
{
	return r->outcome == RNODE_OK && r->reply->type == REDIS_REPLY_ARRAY &&
		r->reply->elements > 0;
}

static bool
same_cycle(const redisReply *a, const redisReply *b)
{
	size_t		k;

	if (a->elements != b->elements)
		return false;
	for (k = 0; k < a->elements; k++)
	{
		const redisReply *x = a->element[k];
		const redisReply *y = b->element[k];

		if (x->type != REDIS_REPLY_STRING || y->type != REDIS_REPLY_STRING ||
			x->len != y->len || memcmp(x->str, y->str, x->len) != 0)
			return false;
	}
	return true;
}

/*
 * Deadlock detection across instances (deadlock.c): publish the wait-for
 * edges (edge_ids[i] waits as edges[i] says), with a time to live, on
 * every node, and follow them from session me.  Returns the edges of a
 * cycle through me that a majority of the nodes sees, the same on each
 * ("waiter|edge" each), or NULL.  Decides on the first majority of nodes
 * to answer: a paused node does not hold the check up (it still gets the
 * edges when it wakes).  May ERROR (cancel).
 */
char	  **
redis_proto_detect(RedisNodeSet *set, const char *ns, const char *me,
				   const char **edge_ids, const char **edges, int nedges,
				   int64 ttl_ms, int *npath)
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	const char **args = palloc((5 + 2 * nedges) * sizeof(char *));
	char	  **path = NULL;
	int			i;

	args[0] = ns;
	args[1] = me;
	args[2] = psprintf(INT64_FORMAT, ttl_ms);
	/* on one node a free key is free; on a quorum it may be a skipped node */
	args[3] = set->n == 1 ? "1" : "0";
	args[4] = psprintf("%d", nedges);
	for (i = 0; i < nedges; i++)
	{
		args[5 + 2 * i] = edge_ids[i];
		args[6 + 2 * i] = edges[i];
	}
	redis_run_script(nodes, set_nodes(set, nodes), SCRIPT_DETECT, 0, NULL,
					 5 + 2 * nedges, args, NULL, 0, 0, false, enough_answered,
					 results);
	*npath = 0;
	for (i = 0; i < set->n && path == NULL; i++)
	{
		redisReply *rep = results[i].reply;
		int			votes = 0;
		int			j;

		if (!is_cycle(&results[i]))
			continue;
		for (j = 0; j < set->n; j++)
			if (is_cycle(&results[j]) && same_cycle(rep, results[j].reply))
				votes++;
		if (votes < quorum_of(set->n))
			continue;
		*npath = (int) rep->elements;
		path = palloc(*npath * sizeof(char *));
		for (j = 0; j < *npath; j++)
			path[j] = pstrdup(rep->element[j]->str);
	}
	redis_results_free(results, set->n);
	return path;
}

/* The wait of session me is over: its edge goes.  Never ERRORs. */
void
redis_proto_forget_edge(RedisNodeSet *set, const char *ns, const char *me)
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	const char *argv[2];
	RedisCommand cmd;

	argv[0] = "DEL";
	argv[1] = redis_key(ns, "waitfor", me);
	cmd.argc = 2;
	cmd.argv = argv;
	cmd.argvlen = NULL;
	redis_run(nodes, set_nodes(set, nodes), &cmd, NULL, 0, 0, true,
			  enough_answered, results);
	redis_results_free(results, set->n);
}
