/*-------------------------------------------------------------------------
 *
 * redis_acquire.c
 *	  Taking Redis locks over a set of N nodes: one key, or many all or
 *	  none.
 *
 * A lock is held when a majority (N/2+1) of the nodes granted it within
 * its validity: lease - elapsed - drift (1% of the lease + 2 ms); a single
 * node is a quorum of one.  The acquire goes to all nodes at once.  Many
 * keys go in canonical order, in chunks of LOCKEXT_SCRIPT_MAX_KEYS, a
 * script per chunk, all pipelined on each node's connection: one round
 * trip, and no script long enough to stall a node for everyone else.  A
 * chunk refused on a node stops those behind it there (ACQUIRE_MANY's
 * guard), and what the chunks before it granted is given back: all or
 * none across chunks, and two acquirers of overlapping sets still meet at
 * their first common key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "redis.h"

/* The random part of owner values that only this backend writes. */
#define OWNER_PREFIX_LEN LOCKEXT_SESSION_ID_LEN

/*
 * Stop waiting once a majority granted the acquire (or chunk c of ncmds
 * per node, as redis_run_many() lays them out), or once so many said no
 * that no majority can grant it: a paused node must not hold up every
 * attempt of a wait (what it may still grant is given back).
 */
static bool
granted_or_refused(const RedisResult *results, int n, int ncmds, int c)
{
	int			granted = 0;
	int			denied = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		const RedisResult *r = &results[i * ncmds + c];

		if (r->outcome != RNODE_OK)
			continue;
		if (r->reply->type == REDIS_REPLY_ARRAY && r->reply->elements >= 2 &&
			r->reply->element[0]->type == REDIS_REPLY_INTEGER &&
			r->reply->element[0]->integer == 1)
			granted++;
		else
			denied++;
	}
	return granted >= quorum_of(n) || denied > n - quorum_of(n);
}

static bool
enough_granted(const RedisResult *results, int n)
{
	return granted_or_refused(results, n, 1, 0);
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
 * The keys and arguments of ACQUIRE_MANY for keys[from..from+m): a chunk
 * after the first is guarded by the lock before it (see the script).
 * rkeys needs room for 2m+2, args for m+3.  Returns the number of keys.
 */
static int
acquire_many_args(RedisHold **holds, const char **keys, int from, int m,
				  const char *lease, const char *prefix, const char **rkeys,
				  const char **args, int *nargs)
{
	const char *ns = holds[0]->ns;
	int			i;

	rkeys[0] = psprintf("%s:fence", ns);
	args[0] = lease;
	args[1] = prefix;
	for (i = 0; i < m; i++)
	{
		rkeys[1 + i] = redis_key(ns, "lock", keys[from + i]);
		rkeys[1 + m + i] = redis_key(ns, "waiting", keys[from + i]);
		args[2 + i] = redis_owner_of(holds[from + i]);
	}
	*nargs = m + 2;
	if (from == 0)
		return 2 * m + 1;
	rkeys[2 * m + 1] = redis_key(ns, "lock", keys[from - 1]);
	args[(*nargs)++] = redis_owner_of(holds[from - 1]);
	return 2 * m + 2;
}

static RedisRelease *
releases_of(RedisHold **holds, const char **keys, int n)
{
	RedisRelease *rel = palloc0(n * sizeof(RedisRelease));
	int			i;

	for (i = 0; i < n; i++)
	{
		rel[i].key = keys[i];
		rel[i].hold = holds[i];
	}
	return rel;
}

/*
 * One chunk: the acquire script for keys[0..n) (ACQUIRE for one,
 * ACQUIRE_MANY for more), EVALSHA when the nodes have it.  If we never
 * learn a node's answer (time-out, cancel, termination), the
 * compare-and-delete of our values follows the acquire on the same
 * connection, and again on the next one: no ghost.
 */
static void
run_acquire_one(RedisNodeSet *set, RedisHold **holds, const char **keys,
				int n, const char *lease, const char *prefix,
				RedisResult *results)
{
	const char **rkeys = palloc((2 * n + 1) * sizeof(char *));
	const char **args = palloc((n + 2) * sizeof(char *));
	int			nkeys = 3;
	int			nargs = 3;
	size_t		undo_len;
	char	   *undo;

	if (n == 1)
	{
		rkeys[0] = redis_key(holds[0]->ns, "lock", keys[0]);
		rkeys[1] = psprintf("%s:fence", holds[0]->ns);
		rkeys[2] = redis_key(holds[0]->ns, "waiting", keys[0]);
		args[0] = redis_owner_of(holds[0]);
		args[1] = lease;
		args[2] = prefix;
	}
	else
		nkeys = acquire_many_args(holds, keys, 0, n, lease, prefix, rkeys,
								  args, &nargs);
	undo = redis_format_release(releases_of(holds, keys, n), n, &undo_len);

	PG_TRY();
	{
		RedisNode  *nodes[LOCKEXT_MAX_NODES];

		redis_run_script(nodes, set_nodes(set, nodes),
						 n == 1 ? SCRIPT_ACQUIRE : SCRIPT_ACQUIRE_MANY,
						 nkeys, rkeys, nargs, args, undo, undo_len, 0,
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
 * Many chunks: an EVAL per chunk, all pipelined on each node's connection
 * (one round trip), each chunk's release its undo where the answers are
 * not learned.  A script runs alone on a node: one of many thousand keys
 * would stall every other client there for as long.
 */
static void
run_acquire_chunks(RedisNodeSet *set, RedisHold **holds, const char **keys,
				   int n, const char *lease, const char *prefix,
				   RedisResult *results)
{
	int			nchunks = redis_nchunks(n);
	int			most = 2 * LOCKEXT_SCRIPT_MAX_KEYS + 2;
	RedisRelease *rel = releases_of(holds, keys, n);
	char	  **cmds = palloc0(nchunks * sizeof(char *));
	size_t	   *lens = palloc0(nchunks * sizeof(size_t));
	char	  **undo = palloc0(nchunks * sizeof(char *));
	size_t	   *undo_len = palloc0(nchunks * sizeof(size_t));
	const char **rkeys = palloc(most * 2 * sizeof(char *));
	const char **args = rkeys + most;
	size_t	   *rlens = palloc(most * 2 * sizeof(size_t));
	const char **argv = palloc((3 + most * 2) * sizeof(char *));
	size_t	   *argvlen = palloc((3 + most * 2) * sizeof(size_t));
	int			c;

	PG_TRY();
	{
		RedisNode  *nodes[LOCKEXT_MAX_NODES];

		for (c = 0; c < nchunks; c++)
		{
			int			from = c * LOCKEXT_SCRIPT_MAX_KEYS;
			int			nargs;
			int			nkeys = acquire_many_args(holds, keys, from,
												  redis_chunk_len(n, c), lease,
												  prefix, rkeys, args, &nargs);
			char		nkeys_str[16];
			RedisCommand cmd;
			char	   *fmt;
			int			len;
			int			k;

			for (k = 0; k < nkeys; k++)
				rlens[k] = strlen(rkeys[k]);
			for (k = 0; k < nargs; k++)
				rlens[most + k] = strlen(args[k]);
			redis_script_eval_argv(SCRIPT_ACQUIRE_MANY, nkeys, rkeys, rlens,
								   nargs, args, rlens + most, nkeys_str, &cmd,
								   argv, argvlen);
			len = redisFormatCommandArgv(&fmt, cmd.argc, cmd.argv, cmd.argvlen);
			if (len < 0)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory")));
			cmds[c] = fmt;
			lens[c] = len;
			undo[c] = redis_format_release(rel + from, redis_chunk_len(n, c),
										   &undo_len[c]);
		}
		redis_run_many_undo(nodes, set_nodes(set, nodes),
							(const char *const *) cmds, lens, nchunks,
							(const char *const *) undo, undo_len, nchunks,
							false, granted_or_refused, results);
	}
	PG_FINALLY();
	{
		for (c = 0; c < nchunks; c++)
		{
			if (cmds[c])
				redisFreeCommand(cmds[c]);
			if (undo[c])
				redisFreeCommand(undo[c]);
		}
	}
	PG_END_TRY();
}

/*
 * Send the acquire of keys[0..n) to every node of the set: node i's
 * answer to chunk c goes to results[i * redis_nchunks(n) + c].
 */
static void
run_acquire(RedisNodeSet *set, RedisHold **holds, const char **keys, int n,
			int64 lease_ms, RedisResult *results)
{
	const char *lease = psprintf(INT64_FORMAT, lease_ms);
	const char *prefix = pnstrdup(redis_owner_of(holds[0]), OWNER_PREFIX_LEN);

	if (redis_nchunks(n) == 1)
		run_acquire_one(set, holds, keys, n, lease, prefix, results);
	else
		run_acquire_chunks(set, holds, keys, n, lease, prefix, results);
}

/* What a node answered to all the chunks of an acquire. */
typedef enum NodeAnswer
{
	NODE_GRANTED,				/* every chunk */
	NODE_HELD,					/* a key is held by another */
	NODE_OTHER					/* refused, no answer, or nonsense */
} NodeAnswer;

/* Did the node grant this chunk of m locks: {1, a token per lock}? */
static bool
chunk_granted(const RedisResult *r, int m)
{
	return r->outcome == RNODE_OK && r->reply->type == REDIS_REPLY_ARRAY &&
		(int) r->reply->elements == m + 1 &&
		r->reply->element[0]->type == REDIS_REPLY_INTEGER &&
		r->reply->element[0]->integer == 1;
}

/*
 * A node's answers res[c] to the chunks c of an acquire of keys[0..n):
 * granted when it granted every chunk (its tokens go into out->tokens),
 * else what its first chunk not granted says (those behind it took
 * nothing).  Notes the first busy key in canonical order of all nodes,
 * its holder, and the longest remaining lease.  Sets *some when the node
 * may hold some of the keys: a chunk granted, or an answer not awaited
 * (a timed-out acquire has its undo behind it already).
 */
static NodeAnswer
read_node(const RedisResult *res, int n, const char **keys, RedisNode *node,
		  RedisAcquireResult *out, bool *some)
{
	int			nchunks = redis_nchunks(n);
	int			first = nchunks;
	const RedisResult *r;
	redisReply *rep;
	int			refusal;
	int			c;

	for (c = nchunks - 1; c >= 0; c--)
		if (chunk_granted(&res[c], redis_chunk_len(n, c)))
			*some = true;
		else
		{
			first = c;
			*some |= res[c].not_awaited;
		}
	if (first == nchunks)
	{
		int			k;

		for (k = 0; k < n; k++)
		{
			const redisReply *tokens = res[k / LOCKEXT_SCRIPT_MAX_KEYS].reply;

			out->tokens[k] = Max(out->tokens[k],
								 tokens->element[k % LOCKEXT_SCRIPT_MAX_KEYS + 1]->integer);
		}
		redis_append_outcome(&out->detail, node, "granted");
		return NODE_GRANTED;
	}

	r = &res[first];
	rep = r->reply;
	if (r->outcome == RNODE_OK && rep->type == REDIS_REPLY_ARRAY &&
		rep->elements >= 2 && rep->element[0]->type == REDIS_REPLY_INTEGER)
	{
		/* {0, [position,] owner, pttl} */
		int			at = (n == 1) ? 1 : 2;

		if (rep->element[0]->integer == 0 && (int) rep->elements >= at + 2 &&
			rep->element[at]->type == REDIS_REPLY_STRING)
		{
			int			busy = first * LOCKEXT_SCRIPT_MAX_KEYS;

			if (n > 1 && rep->element[1]->type == REDIS_REPLY_INTEGER)
				busy += (int) Min(Max(rep->element[1]->integer - 1, 0),
								  redis_chunk_len(n, first) - 1);
			out->holder_pttl_ms = Max(out->holder_pttl_ms,
									  rep->element[at + 1]->integer);
			if (out->holder == NULL || busy < out->busy_index)
			{
				out->holder = pstrdup(rep->element[at]->str);
				out->busy_index = busy;
			}
			redis_append_outcome(&out->detail, node, n > 1 ?
								psprintf("\"%s\" held by %s", keys[busy],
										 redis_describe_owner(rep->element[at]->str)) :
								psprintf("held by %s",
										 redis_describe_owner(rep->element[at]->str)));
			return NODE_HELD;
		}
		redis_append_outcome(&out->detail, node, "unexpected reply");
	}
	else if ((refusal = refusal_of(r)) != 0)
	{
		/* the first kind of refusal seen names the error */
		if (out->refusal == 0)
			out->refusal = refusal;
		redis_append_outcome(&out->detail, node,
							psprintf("refused (%s)",
									 rep != NULL ? rep->str : r->detail));
	}
	else
		redis_append_outcome(&out->detail, node, redis_failure_text(r));
	return NODE_OTHER;
}

/*
 * Take keys[0..n) in Redis for holds[0..n) (fresh RedisHolds on one node
 * set), all or none, in one round trip per node (a script per chunk of
 * LOCKEXT_SCRIPT_MAX_KEYS, pipelined).  out->tokens[i] is each key's
 * token (out->token the largest); when a key is held by another,
 * out->busy_index names the first in canonical order, with its holder and
 * the longest remaining lease.
 */
void
redis_proto_acquire_many(RedisHold **holds, const char **keys, int n,
						 int64 lease_ms, RedisAcquireResult *out)
{
	RedisNodeSet *set = holds[0]->set;
	int			nchunks = redis_nchunks(n);
	RedisResult *results = palloc0(set->n * nchunks * sizeof(RedisResult));
	int			quorum = quorum_of(set->n);
	int			granted = 0;
	int			held = 0;
	bool		some = false;
	int64		start = lockext_now_us();
	int64		validity_us;
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
		switch (read_node(&results[i * nchunks], n, keys, &set->nodes[i],
						  out, &some))
		{
			case NODE_GRANTED:
				granted++;
				break;
			case NODE_HELD:
				held++;
				break;
			case NODE_OTHER:
				break;
		}
	redis_results_free(results, set->n * nchunks);
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
	 * Not held: give back what was granted, so nobody waits for it (also
	 * the chunks a node granted before one it refused), and what a node
	 * whose answer we stopped waiting for may still grant (behind the
	 * acquire on the same connection, so it runs after it).
	 */
	out->granted = granted;
	if (some)
	{
		char		ignored[8];

		(void) redis_proto_release_many(releases_of(holds, keys, n), n, true,
										ignored, sizeof(ignored));
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
