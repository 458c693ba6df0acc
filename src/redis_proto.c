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

#include "commands/dbcommands.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "owner_value.h"
#include "redis.h"

/* The random part of owner values that only this backend writes. */
#define OWNER_PREFIX_LEN 24

static inline bool
reply_is_int(const RedisResult *r, long long value)
{
	return r->outcome == RNODE_OK && r->reply->type == REDIS_REPLY_INTEGER &&
		r->reply->integer == value;
}

/* Stop waiting once a majority granted the acquire. */
static bool
enough_granted(const RedisResult *results, int n)
{
	int			granted = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (results[i].outcome == RNODE_OK &&
			results[i].reply->type == REDIS_REPLY_ARRAY &&
			results[i].reply->elements >= 2 &&
			results[i].reply->element[0]->type == REDIS_REPLY_INTEGER &&
			results[i].reply->element[0]->integer == 1)
			granted++;
	return granted >= quorum_of(n);
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

/* Clock drift allowed for between nodes and us: 1% of the lease + 2 ms. */
static inline int64
drift_us(int64 lease_ms)
{
	return lease_ms * 10 + 2000;
}

static char *
redis_key(const char *ns, const char *kind, const char *key)
{
	return psprintf("%s:%s:%s", ns, kind, key);
}



/*
 * The owner value, unique per hold and readable by dlock_holder():
 * unique|instance|pid|database|since|application_name.  The unique part
 * is a random prefix drawn once per backend and a counter of holds: as
 * unique as a fresh random value, without the cost of drawing one per
 * transaction.  The fixed middle part is built once per backend too.
 */
static void
make_owner(RedisHold *hold)
{
	static char *middle = NULL;
	static char prefix[25];
	static uint64 holds = 0;

	if (middle == NULL)
	{
		char	   *instance = lockext_instance_name();
		char	   *db = get_database_name(MyDatabaseId);
		uint8		rnd[12];
		char	   *m;
		int			i;

		if (!pg_strong_random(rnd, sizeof(rnd)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random lock owner token")));
		for (i = 0; i < (int) sizeof(rnd); i++)
			sprintf(&prefix[i * 2], "%02x", rnd[i]);
		/* '|' separates fields; only the last one may contain it */
		for (i = 0; instance[i]; i++)
			if (instance[i] == '|')
				instance[i] = '_';
		for (i = 0; db && db[i]; i++)
			if (db[i] == '|')
				db[i] = '_';
		m = psprintf("%s|%d|%s", instance, MyProcPid, db ? db : "");
		middle = MemoryContextStrdup(TopMemoryContext, m);
	}
	snprintf(hold->owner, sizeof(hold->owner),
			 "%s%016llx|%s|" INT64_FORMAT "|%s",
			 prefix, (unsigned long long) ++holds, middle, GetCurrentTimestamp(),
			 application_name ? application_name : "");
}

/*
 * How much of an owner value lockext wrote identifies its hold: the unique
 * part and the '|' after it (the whole value if it has none).
 */
size_t
redis_owner_unique_len(const char *owner)
{
	const char *bar = strchr(owner, '|');

	return bar ? (size_t) (bar - owner) + 1 : strlen(owner);
}

/* A field of an owner value as text, or NULL when not valid text here. */
static char *
owner_field_text(OwnerField f)
{
	if (!pg_verifymbstr(f.p, (int) f.len, true))
		return NULL;
	return pnstrdup(f.p, f.len);
}

/*
 * The holder an owner value read from Redis names; false when it is not a
 * value lockext wrote (anyone with access to Redis may write anything).
 */
bool
redis_parse_owner(const char *value, DlockHolderInfo *info)
{
	OwnerValue	v;

	if (!owner_value_parse(value, strlen(value), &v))
		return false;
	info->instance = owner_field_text(v.instance);
	info->database = owner_field_text(v.database);
	info->application_name = owner_field_text(v.application_name);
	if (info->instance == NULL || info->database == NULL ||
		info->application_name == NULL)
		return false;
	if (info->database[0] == '\0')
		info->database = NULL;
	info->pid = v.pid;
	info->since = (TimestampTz) v.since;
	return true;
}

/* Who holds it, for messages: "pid 123 on db1:5432". */
static const char *
describe_owner(const char *value)
{
	DlockHolderInfo info;

	memset(&info, 0, sizeof(info));
	if (!redis_parse_owner(value, &info))
		return "an unknown owner";
	return psprintf("pid %d on %s", info.pid, info.instance);
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
 * an ACL denial inside a script reads differently (Redis 7.0).
 */
static int
refusal_errcode(const char *msg)
{
	if (strstr(msg, "WRONGTYPE") != NULL)
		return ERRCODE_WRONG_OBJECT_TYPE;
	if (strstr(msg, "NOPERM") != NULL ||
		strstr(msg, "can't run this command") != NULL)
		return ERRCODE_INSUFFICIENT_PRIVILEGE;
	if (strstr(msg, "OOM ") != NULL)
		return ERRCODE_OUT_OF_MEMORY;
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
 * Send the acquire script.  If we never learn a node's answer (time-out,
 * cancel, termination), the compare-and-delete of our value follows the
 * acquire on the same connection, and again on the next one: no ghost.
 */
static void
run_acquire(RedisNodeSet *set, const char **keys, const char **args,
			RedisHold *hold, const char *key, RedisResult *results)
{
	RedisRelease rel;
	size_t		undo_len;
	char	   *undo;

	rel.key = key;
	rel.hold = hold;
	undo = redis_format_release(&rel, 1, &undo_len);

	PG_TRY();
	{
		RedisNode  *nodes[LOCKEXT_MAX_NODES];

		redis_run_script(nodes, set_nodes(set, nodes), SCRIPT_ACQUIRE, 3, keys,
						 3, args, undo, undo_len, 0, false, enough_granted,
						 results);
	}
	PG_FINALLY();
	{
		if (undo)
			redisFreeCommand(undo);
	}
	PG_END_TRY();
}

void
redis_proto_acquire(RedisHold *hold, const char *key, int64 lease_ms,
					RedisAcquireResult *out)
{
	RedisNodeSet *set = hold->set;
	RedisResult results[LOCKEXT_MAX_NODES];
	const char *keys[3];
	const char *args[3];
	int			quorum = quorum_of(set->n);
	int			granted = 0;
	int			held = 0;
	int64		start = lockext_now_us();
	int64		validity_us;
	int			refusal;
	int			i;

	memset(out, 0, sizeof(*out));
	out->holder_pttl_ms = -1;
	initStringInfo(&out->detail);
	make_owner(hold);
	/* the hold keeps the namespace it was taken in */
	strlcpy(hold->ns, lockext_namespace, sizeof(hold->ns));
	keys[0] = redis_key(hold->ns, "lock", key);
	keys[1] = psprintf("%s:fence", hold->ns);
	keys[2] = redis_key(hold->ns, "waiting", key);
	args[0] = hold->owner;
	args[1] = psprintf(INT64_FORMAT, lease_ms);
	args[2] = pnstrdup(hold->owner, OWNER_PREFIX_LEN);

	run_acquire(set, keys, args, hold, key, results);

	for (i = 0; i < set->n; i++)
	{
		RedisResult *r = &results[i];
		redisReply *rep = r->reply;

		if (r->outcome == RNODE_OK && rep->type == REDIS_REPLY_ARRAY &&
			rep->elements >= 2 && rep->element[0]->type == REDIS_REPLY_INTEGER)
		{
			if (rep->element[0]->integer == 1)
			{
				granted++;
				out->token = Max(out->token, rep->element[1]->integer);
				append_node_outcome(&out->detail, &set->nodes[i], "granted");
			}
			else if (rep->elements >= 3)
			{
				held++;
				out->holder_pttl_ms = Max(out->holder_pttl_ms,
										  rep->element[2]->integer);
				if (out->holder == NULL)
					out->holder = pstrdup(rep->element[1]->str);
				append_node_outcome(&out->detail, &set->nodes[i],
									psprintf("held by %s",
											 describe_owner(rep->element[1]->str)));
			}
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
			append_node_outcome(&out->detail, &set->nodes[i], failure_text(r));
	}
	redis_results_free(results, set->n);

	validity_us = lease_ms * 1000 - (lockext_now_us() - start) - drift_us(lease_ms);
	if (granted >= quorum && validity_us > 0)
	{
		out->status = REDIS_ACQ_GRANTED;
		hold->token = out->token;
		hold->lease_ms = lease_ms;
		hold->valid_until_us = start + lease_ms * 1000 - drift_us(lease_ms);
		return;
	}

	/* Not held: give back what was granted, so nobody waits for it. */
	out->granted = granted;
	if (granted > 0)
	{
		RedisRelease rel;
		char		ignored[8];

		rel.key = key;
		rel.hold = hold;
		(void) redis_proto_release_many(&rel, 1, true, ignored, sizeof(ignored));
	}

	/*
	 * Busy when the answers leave room for another holder's majority (or
	 * we were just too slow); otherwise too many nodes failed to answer.
	 */
	if (granted + held >= quorum)
		out->status = REDIS_ACQ_BUSY;
	else if (out->refusal != 0)
		out->status = REDIS_ACQ_REFUSED;
	else
		out->status = REDIS_ACQ_OUTAGE;
}

/*
 * The lease keeper's renewal of many locks at once: compare-and-PEXPIRE
 * of each lock for its lease, up to 1000 locks per command, on every node
 * of set.  outcome[i]: the lease end, as a
 * monotonic time in microseconds, when a majority renewed it in time; 0
 * when a majority said it is no longer ours (lost); -1 when too few nodes
 * answered to tell.  Never renews a key that is not ours: it only extends.
 */
/* Append one bulk string of the Redis protocol: $<len>\r\n<bytes>\r\n */
static void
append_bulk(StringInfo buf, const char *p, size_t len)
{
	char		digits[MAXINT8LEN + 1];
	int			ndigits = pg_ulltoa_n((uint64) len, digits);

	enlargeStringInfo(buf, ndigits + len + 5);
	buf->data[buf->len++] = '$';
	memcpy(buf->data + buf->len, digits, ndigits);
	buf->len += ndigits;
	buf->data[buf->len++] = '\r';
	buf->data[buf->len++] = '\n';
	memcpy(buf->data + buf->len, p, len);
	buf->len += len;
	buf->data[buf->len++] = '\r';
	buf->data[buf->len++] = '\n';
	buf->data[buf->len] = '\0';
}

void
redis_proto_extend_many(RedisNodeSet *set, const RedisRenewal *renewals,
						int n, int64 *outcome)
{
	/*
	 * The command is written straight into one buffer kept across calls:
	 * the keeper sends this every round, for thousands of leases.
	 */
	static StringInfoData cmd = {NULL, 0, 0, 0};
	const char *src = redis_script_source(SCRIPT_EXTEND_MANY);
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	int			done;

	if (cmd.data == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&cmd);
		MemoryContextSwitchTo(oldcxt);
	}
	for (done = 0; done < n; done += 1000)
	{
		int			m = Min(1000, n - done);
		int		   *renewed = palloc0(m * sizeof(int));
		int		   *lost = palloc0(m * sizeof(int));
		char		lease[MAXINT8LEN + 1];
		int			lease_len = 0;
		int64		lease_of = -1;
		int64		start = lockext_now_us();
		int64		now;
		int			i;
		int			j;

		/* EVAL <script> <m> <keys...> <unique part, lease ms>... */
		resetStringInfo(&cmd);
		appendStringInfo(&cmd, "*%d\r\n", 3 + 3 * m);
		append_bulk(&cmd, "EVAL", 4);
		append_bulk(&cmd, src, strlen(src));
		lease_len = pg_ltoa(m, lease);
		append_bulk(&cmd, lease, lease_len);
		for (i = 0; i < m; i++)
			append_bulk(&cmd, renewals[done + i].lockkey,
						renewals[done + i].lockkey_len);
		for (i = 0; i < m; i++)
		{
			const RedisRenewal *r = &renewals[done + i];

			append_bulk(&cmd, r->owner, r->owner_len);
			if (r->lease_ms != lease_of)
			{
				lease_len = pg_lltoa(r->lease_ms, lease);
				lease_of = r->lease_ms;
			}
			append_bulk(&cmd, lease, lease_len);
		}
		redis_run_formatted(nodes, set_nodes(set, nodes), cmd.data, cmd.len,
							NULL, 0, 0, false, NULL, results);
		for (j = 0; j < set->n; j++)
		{
			redisReply *rep = results[j].reply;

			if (results[j].outcome != RNODE_OK ||
				rep->type != REDIS_REPLY_ARRAY || (int) rep->elements != m)
				continue;
			for (i = 0; i < m; i++)
			{
				if (rep->element[i]->type == REDIS_REPLY_INTEGER &&
					rep->element[i]->integer == 1)
					renewed[i]++;
				else
					lost[i]++;
			}
		}
		redis_results_free(results, set->n);
		now = lockext_now_us();
		for (i = 0; i < m; i++)
		{
			int64		lease_ms = renewals[done + i].lease_ms;
			int64		end = start + lease_ms * 1000 - drift_us(lease_ms);

			if (renewed[i] >= quorum_of(set->n) && end > now)
				outcome[done + i] = end;
			else if (lost[i] >= quorum_of(set->n))
				outcome[done + i] = 0;
			else
				outcome[done + i] = -1;
		}
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
	args[0] = hold->owner;
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
		lease_ms * 1000 - (lockext_now_us() - start) - drift_us(lease_ms) > 0)
	{
		hold->lease_ms = lease_ms;
		hold->valid_until_us = start + lease_ms * 1000 - drift_us(lease_ms);
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
	return false;
}

/*
 * Wait up to wait_ms for a release to be announced on the key's wake list,
 * on every node at once; the first node that announces one ends the wait.
 * Returns false when the wait failed at once (BLPOP refused, nodes
 * unreachable), so the caller does not retry at full speed; errors are
 * otherwise left to the next acquire, which reports them properly.
 */
bool
redis_proto_wait(RedisNodeSet *set, const char *key, int64 wait_ms)
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	const char *argv[3];
	size_t		argvlen[3];
	RedisCommand cmd;
	char		secs[32];
	bool		waited = false;
	int			i;

	wait_ms = Max(wait_ms, 1);
	snprintf(secs, sizeof(secs), "%.3f", wait_ms / 1000.0);
	argv[0] = "BLPOP";
	argv[1] = redis_key(lockext_namespace, "wake", key);
	argv[2] = secs;
	for (i = 0; i < 3; i++)
		argvlen[i] = strlen(argv[i]);
	cmd.argc = 3;
	cmd.argv = argv;
	cmd.argvlen = argvlen;
	redis_run(nodes, set_nodes(set, nodes), &cmd, NULL, 0, wait_ms, false,
			  enough_woken, results);
	for (i = 0; i < set->n; i++)
	{
		if (results[i].outcome == RNODE_OK)
			waited = true;
		/* a BLPOP still blocked there would stall the next command */
		else if (results[i].outcome == RNODE_TIMED_OUT)
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
redis_proto_holder(RedisNodeSet *set, const char *key, char **owner,
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
	keys[0] = redis_key(lockext_namespace, "lock", key);
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
