/*-------------------------------------------------------------------------
 *
 * redis_proto.c
 *	  The Redis lock protocol: Lua scripts, owner values, and acquire,
 *	  release, extend and holder over a set of N nodes.
 *
 * A lock is held when a majority (N/2+1) of the nodes granted it within
 * its validity: lease - elapsed - drift (1% of the lease + 2 ms); a single
 * node is a quorum of one.  Every step goes to all nodes at once
 * (redis_run).  The lock value is an owner string unique to this hold, so
 * release, extend and verification are compare-and-act scripts.  Keys:
 *   <ns>:lock:<key>  the lock (string, PX lease)
 *   <ns>:fence       fencing counter (INCR in the acquire script)
 *   <ns>:wake:<key>  wake-up list; release pushes, waiters BLPOP
 *   <ns>:waiting:<key>  set while someone waits (expires by itself)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "commands/dbcommands.h"
#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "lockext.h"
#include "owner_value.h"

enum
{
	SCRIPT_ACQUIRE,
	SCRIPT_RELEASE,
	SCRIPT_EXTEND,
	SCRIPT_HOLDER,
	NSCRIPTS
};

/*
 * ACQUIRE (keys: lock, fence, waiting): a free key is taken with SET NX; a
 * key that is already ours (a retried call) is renewed; either way the
 * fence counter gives the new token.  A key held by another returns its
 * owner and remaining lease, and flags that someone waits, in the same
 * atomic step, so the holder's release cannot miss the waiter.
 *
 * RELEASE (keys: lock, wake, fence, waiting): compare-and-delete; pushes a
 * wake-up only when a waiter flagged itself, so an uncontended release is
 * three cheap calls.  With a quorum (token > 0) it also raises each node's
 * fence counter to the token the quorum gave, so counters of nodes that
 * missed grants catch up and the next holder's largest value is larger.
 */
static const char *const script_src[NSCRIPTS] = {
	"if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
	"  return {1, redis.call('INCR', KEYS[2])}\n"
	"end\n"
	"local v = redis.call('GET', KEYS[1])\n"
	"if v == ARGV[1] then\n"
	"  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
	"  return {1, redis.call('INCR', KEYS[2])}\n"
	"end\n"
	"local ttl = redis.call('PTTL', KEYS[1])\n"
	"redis.call('SET', KEYS[3], '1', 'PX', math.max(ttl, 0) + 1000)\n"
	"return {0, v, ttl}\n",

	"if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
	"  return 0\n"
	"end\n"
	"redis.call('DEL', KEYS[1])\n"
	"if redis.call('EXISTS', KEYS[4]) == 1 then\n"
	"  redis.call('LPUSH', KEYS[2], '1')\n"
	"  redis.call('LTRIM', KEYS[2], 0, 0)\n"
	"  redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
	"end\n"
	"if ARGV[3] ~= '0' and tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[3]) then\n"
	"  redis.call('SET', KEYS[3], ARGV[3])\n"
	"end\n"
	"return 1\n",

	"if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
	"  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
	"end\n"
	"return 0\n",

	"local v = redis.call('GET', KEYS[1])\n"
	"if not v then return {} end\n"
	"return {v, redis.call('PTTL', KEYS[1])}\n",
};

static char script_sha[NSCRIPTS][41];

static inline int
quorum_of(int n)
{
	return n / 2 + 1;
}

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

/* SHA-1 of each script, as EVALSHA wants it; computed once per backend. */
static void
compute_script_shas(void)
{
	int			i;

	if (script_sha[0][0] != '\0')
		return;
	for (i = 0; i < NSCRIPTS; i++)
	{
		pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA1);
		uint8		digest[20];
		int			j;

		if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
			pg_cryptohash_update(ctx, (const uint8 *) script_src[i],
								 strlen(script_src[i])) < 0 ||
			pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
			elog(ERROR, "could not compute SHA-1 of a lockext script");
		pg_cryptohash_free(ctx);
		for (j = 0; j < 20; j++)
			sprintf(&script_sha[i][j * 2], "%02x", digest[j]);
	}
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


static inline bool
is_noscript(RedisResult *r)
{
	return r->outcome == RNODE_ERROR_REPLY && r->reply != NULL &&
		r->reply->type == REDIS_REPLY_ERROR &&
		strncmp(r->reply->str, "NOSCRIPT", 8) == 0;
}

/* The caller's predicate, for enough_or_noscript(). */
static RedisEnoughFn script_enough = NULL;

/*
 * The EVALSHA round may also stop once a majority answered and some of
 * them need the script again (after a restart or SCRIPT FLUSH): waiting
 * for a paused node would only delay the EVAL to the nodes that are there.
 */
static bool
enough_or_noscript(const RedisResult *results, int n)
{
	int			answered = 0;
	int			noscript = 0;
	int			i;

	if (script_enough && script_enough(results, n))
		return true;
	for (i = 0; i < n; i++)
	{
		if (results[i].outcome == RNODE_OK)
			answered++;
		else if (is_noscript((RedisResult *) &results[i]))
		{
			answered++;
			noscript++;
		}
	}
	return noscript > 0 && answered >= quorum_of(n);
}

/* The arguments of EVALSHA (by_sha) or EVAL of a script; returns argc. */
static int
script_argv(int script, bool by_sha, int nkeys, const char **keys,
			int nargs, const char **args, char *nkeys_str,
			const char **argv, size_t *argvlen)
{
	int			argc = 0;
	int			i;

	Assert(nkeys + nargs <= 7);
	compute_script_shas();
	sprintf(nkeys_str, "%d", nkeys);
	argv[argc++] = by_sha ? "EVALSHA" : "EVAL";
	argv[argc++] = by_sha ? script_sha[script] : script_src[script];
	argv[argc++] = nkeys_str;
	for (i = 0; i < nkeys; i++)
		argv[argc++] = keys[i];
	for (i = 0; i < nargs; i++)
		argv[argc++] = args[i];
	for (i = 0; i < argc; i++)
		argvlen[i] = strlen(argv[i]);
	return argc;
}

static int
set_nodes(RedisNodeSet *set, RedisNode **nodes)
{
	int			i;

	for (i = 0; i < set->n; i++)
		nodes[i] = &set->nodes[i];
	return set->n;
}

/*
 * Run a script on the given nodes: EVALSHA, and EVAL (which caches it
 * again) on the nodes that answer NOSCRIPT after a SCRIPT FLUSH or a
 * restart.
 */
static void
run_script(RedisNode **nodes, int n, int script, int nkeys, const char **keys,
		   int nargs, const char **args, int64 extra_ms, bool quiet,
		   RedisEnoughFn enough, RedisResult *results)
{
	const char *argv[3 + 7];
	size_t		argvlen[3 + 7];
	char		nkeys_str[8];
	RedisNode  *again[LOCKEXT_MAX_NODES];
	int			again_at[LOCKEXT_MAX_NODES];
	int			nagain = 0;
	int			argc;
	int			i;

	argc = script_argv(script, true, nkeys, keys, nargs, args, nkeys_str,
					   argv, argvlen);
	script_enough = enough;
	redis_run(nodes, n, argc, argv, argvlen, extra_ms, quiet,
			  enough ? enough_or_noscript : NULL, results);

	for (i = 0; i < n; i++)
		if (is_noscript(&results[i]))
		{
			redis_results_free(&results[i], 1);
			again_at[nagain] = i;
			again[nagain++] = nodes[i];
		}
	if (nagain > 0)
	{
		RedisResult res2[LOCKEXT_MAX_NODES];

		argv[0] = "EVAL";
		argv[1] = script_src[script];
		argvlen[0] = 4;
		argvlen[1] = strlen(script_src[script]);
		redis_run(again, nagain, argc, argv, argvlen, extra_ms, quiet, NULL, res2);
		for (i = 0; i < nagain; i++)
			results[again_at[i]] = res2[i];
	}
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

void
redis_proto_acquire(RedisHold *hold, const char *key, int64 lease_ms,
					RedisAcquireResult *out)
{
	RedisNodeSet *set = hold->set;
	RedisResult results[LOCKEXT_MAX_NODES];
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	const char *keys[3];
	const char *args[2];
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

	hold->acquire_in_flight = true;
	run_script(nodes, set_nodes(set, nodes), SCRIPT_ACQUIRE, 3, keys, 2, args, 0, false, enough_granted, results);
	hold->acquire_in_flight = false;

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
		else if (r->outcome == RNODE_ERROR_REPLY && rep != NULL &&
				 (refusal = refusal_errcode(rep->str)) != 0)
		{
			/* the first kind of refusal seen names the error */
			if (out->refusal == 0)
				out->refusal = refusal;
			append_node_outcome(&out->detail, &set->nodes[i],
								psprintf("refused (%s)", rep->str));
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
		redis_proto_release(hold, key, true, NULL);

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
 * Compare-and-delete on every node, and wake the waiters.  Never ERRORs
 * and never looks at interrupts: it runs on the abort path and at exit.
 * Returns false (with what happened in detail) unless a majority confirmed,
 * or, without wait, was sent the command over a working connection.
 */
bool
redis_proto_release(RedisHold *hold, const char *key, bool wait,
					StringInfo detail)
{
	RedisNodeSet *set = hold->set;
	RedisResult results[LOCKEXT_MAX_NODES];
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	int			n = 0;
	const char *argv[3 + 7];
	size_t		argvlen[3 + 7];
	/* cppcheck-suppress variableScope ; argv points into it after the if */
	char		nkeys_str[8];
	int			argc = 0;
	const char *keys[4];
	const char *args[3];
	char		lockkey[LOCKEXT_MAX_KEY_BYTES + 160];
	char		wakekey[LOCKEXT_MAX_KEY_BYTES + 160];
	char		waitingkey[LOCKEXT_MAX_KEY_BYTES + 160];
	char		fencekey[160];
	char		wake_ttl[32];
	char		token[32];
	int			ok = 0;
	int			i;

	/* no palloc: this may run where an out-of-memory ERROR is fatal */
	snprintf(lockkey, sizeof(lockkey), "%s:lock:%s", hold->ns, key);
	snprintf(wakekey, sizeof(wakekey), "%s:wake:%s", hold->ns, key);
	snprintf(waitingkey, sizeof(waitingkey), "%s:waiting:%s", hold->ns, key);
	snprintf(fencekey, sizeof(fencekey), "%s:fence", hold->ns);
	snprintf(wake_ttl, sizeof(wake_ttl), INT64_FORMAT, Max(hold->lease_ms, 1000));
	/* one node's counter is already monotonic: no raise needed */
	snprintf(token, sizeof(token), INT64_FORMAT, set->n > 1 ? hold->token : 0);
	keys[0] = lockkey;
	keys[1] = wakekey;
	keys[2] = fencekey;
	keys[3] = waitingkey;
	args[0] = hold->owner;
	args[1] = wake_ttl;
	args[2] = token;

	/*
	 * Without waiting, where a connection is open: EVAL, not EVALSHA, as
	 * nobody reads the answer to send the script again after a NOSCRIPT.
	 * The rest (and everything when waiting) goes the ordinary way.
	 */
	if (!wait)
		argc = script_argv(SCRIPT_RELEASE, false, 4, keys, 3, args,
						   nkeys_str, argv, argvlen);
	for (i = 0; i < set->n; i++)
	{
		if (!wait && redis_send_nowait(&set->nodes[i], argc, argv, argvlen))
			ok++;
		else
			nodes[n++] = &set->nodes[i];
	}
	if (n == 0)
		return true;

	run_script(nodes, n, SCRIPT_RELEASE, 4, keys, 3, args, 0, true,
			   enough_answered, results);
	for (i = 0; i < n; i++)
	{
		if (results[i].outcome == RNODE_OK)
		{
			ok++;
			if (detail)
				append_node_outcome(detail, nodes[i],
									results[i].reply->integer == 1 ? "released" :
									"not held");
		}
		else if (detail)
			append_node_outcome(detail, nodes[i], results[i].detail);
	}
	redis_results_free(results, n);
	return ok >= quorum_of(set->n);
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

	run_script(nodes, set_nodes(set, nodes), SCRIPT_EXTEND, 1, keys, 2, args, 0, false, enough_confirmed, results);
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

/*
 * Wait up to wait_ms for a release to be announced on the key's wake list.
 * Returns early on a wake-up; errors and time-outs just end the wait (the
 * caller retries the acquire, which reports outages properly).
 */
void
redis_proto_wait(RedisNodeSet *set, const char *key, int64 wait_ms)
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	RedisResult results[LOCKEXT_MAX_NODES];
	const char *argv[3];
	size_t		argvlen[3];
	char		secs[32];
	int			i;

	wait_ms = Max(wait_ms, 1);
	snprintf(secs, sizeof(secs), "%.3f", wait_ms / 1000.0);
	argv[0] = "BLPOP";
	argv[1] = redis_key(lockext_namespace, "wake", key);
	argv[2] = secs;
	for (i = 0; i < 3; i++)
		argvlen[i] = strlen(argv[i]);
	for (i = 0; i < set->n; i++)
		nodes[i] = &set->nodes[i];
	/* all of them: a BLPOP left blocked would stall the next command */
	redis_run(nodes, set->n, 3, argv, argvlen, wait_ms, false, NULL, results);
	redis_results_free(results, set->n);
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
	run_script(nodes, set_nodes(set, nodes), SCRIPT_HOLDER, 1, keys, 0, NULL, 0, false, enough_answered, results);

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
