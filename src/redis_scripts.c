/*-------------------------------------------------------------------------
 *
 * redis_scripts.c
 *	  The Lua scripts of the Redis lock protocol, and running them by SHA.
 *
 * Keys of a lock (see redis_proto.c):
 *   <ns>:lock:<key>     the lock (string, PX lease), value = owner
 *   <ns>:fence          fencing counter, a hybrid clock (see ACQUIRE)
 *   <ns>:wake:<key>     wake-up list; release pushes, waiters BLPOP
 *   <ns>:waiting:<key>  set while someone waits (expires by itself)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "common/cryptohash.h"

#include "redis.h"

/*
 * ACQUIRE (keys: lock, fence, waiting; args: owner, lease ms, the
 * backend's owner prefix): a free key is taken with SET NX.  A key already
 * held by a value of this backend (ARGV[3] is the prefix only this backend
 * writes) is a leftover of an acquire whose answer we never saw, or of a
 * release not yet confirmed: the backend holds nothing there (the registry
 * asks only then), so it takes the key over rather than wait for itself.
 * A key held by another returns its owner and remaining lease, and flags
 * that someone waits, in the same atomic step, so the holder's release
 * cannot miss the waiter.
 *
 * A counter that is not a number (someone wrote it) is refused before
 * anything is taken, with an error naming its key (LOCKEXT_FENCE).
 *
 * The token is max(counter + 1, Redis TIME in microseconds): a hybrid
 * clock.  A counter lost to FLUSHALL, eviction, a restart without data or
 * the promotion of a lagging replica restarts from the clock, above every
 * token handed out before, as long as the servers' clocks do not go back
 * and fewer than a million grants a second are made on average.
 *
 * RELEASE (keys: fence, then lock, wake, waiting per lock; args: owner,
 * wake ttl, token per lock): compare-and-delete of many locks at once.
 * Pushes a wake-up only when a waiter flagged itself.  With a quorum
 * (token > 0) it raises the node's counter to the token the quorum gave,
 * so counters of nodes that missed grants catch up.  Returns how many
 * locks were still ours.
 *
 * EXTEND (keys: lock; args: owner, lease ms): compare-and-PEXPIRE.
 * HOLDER (keys: lock): the owner and remaining lease, or nothing.
 * ACQUIRE_MANY (keys: fence, then the locks, then their waiting flags;
 * args: lease ms, the backend's owner prefix, an owner per lock): ACQUIRE
 * of every lock, all or none, atomically.  The first lock held by another
 * undoes the locks taken before it, flags that someone waits for it, and
 * returns {0, its position, its owner, its remaining lease}; otherwise
 * {1, a token per lock} (consecutive values of the hybrid clock).  Many
 * locks are taken in chunks, pipelined (redis_proto.c): a chunk after the
 * first also gets the last lock of the chunk before and its owner (a last
 * key and a last argument), and takes nothing, returning {0, 0}, unless
 * that lock is ours: a chunk refused on a node stops the chunks behind it
 * there, so contenders still meet at their first common key.
 *
 * DETECT (no declared keys; args: namespace, session id, edge ttl ms,
 * the number of edges, then session id and edge per edge): publishes the
 * wait-for edges (<ns>:waitfor:<session> =
 * "<holder>|<in Redis>|<can act>|<since>|<instance>|<pid>|<stamp>|<key>",
 * see deadlock.c), then follows them from the caller's own session.  An
 * edge is followed only while its wait is live: a wait on Redis while no
 * other value holds that key (the waiter got it, or someone else did:
 * that wait is over), a wait in a local queue while the edge of the
 * session that published it ("<session>:<stamp>") still carries that
 * stamp, i.e. is still the latest look of a wait still going on.  Returns
 * nothing, or a cycle: first a '1' or '0' per edge, whether this node
 * shows the holder's value for a wait on Redis ('1' for a local wait),
 * then the edges (without stamps, so every node gives the same).  A key
 * the node lacks is followed but not shown held: on a quorum a grant may
 * have skipped the node, and the caller counts an edge only when a
 * majority shows its holder.
 *
 * EXTEND_MANY (keys: locks; args: owner's unique part, lease ms per lock):
 * the lease keeper's batched compare-and-PEXPIRE; 1 or 0 per lock.  The
 * unique part ends with the first '|' of the value and no other hold's
 * value starts with it, so comparing it alone is comparing the value.
 *
 * RELEASE, EXTEND and EXTEND_MANY read a lock with redis.pcall: a key of
 * another type (someone's list where our string was) is not ours, and must
 * not fail the whole script: every other lock of the batch would fail too.
 */
static const char *const script_src[NSCRIPTS] = {
	"local f = redis.call('GET', KEYS[2])\n"
	"if f and not tonumber(f) then\n"
	"  return redis.error_reply('LOCKEXT_FENCE ' .. KEYS[2])\n"
	"end\n"
	"if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
	"  local v = redis.call('GET', KEYS[1])\n"
	"  if v ~= ARGV[1] and string.sub(v, 1, #ARGV[3]) ~= ARGV[3] then\n"
	"    local ttl = redis.call('PTTL', KEYS[1])\n"
	"    redis.call('SET', KEYS[3], '1', 'PX', math.max(ttl, 0) + 1000)\n"
	"    return {0, v, ttl}\n"
	"  end\n"
	"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
	"end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local c = tonumber(f or '0') + 1\n"
	"if c < now then c = now end\n"
	"redis.call('SET', KEYS[2], string.format('%.0f', c))\n"
	"return {1, c}\n",

	"local released = 0\n"
	"local top, topstr = 0, nil\n"
	"for i = 1, #ARGV / 3 do\n"
	"  local k, a = 3 * i - 1, 3 * i - 2\n"
	"  if redis.pcall('GET', KEYS[k]) == ARGV[a] then\n"
	"    redis.call('DEL', KEYS[k])\n"
	"    released = released + 1\n"
	"    if redis.call('EXISTS', KEYS[k + 2]) == 1 then\n"
	"      redis.pcall('LPUSH', KEYS[k + 1], '1')\n"
	"      redis.pcall('LTRIM', KEYS[k + 1], 0, 0)\n"
	"      redis.pcall('PEXPIRE', KEYS[k + 1], ARGV[a + 1])\n"
	"    end\n"
	"  end\n"
	"  local tok = tonumber(ARGV[a + 2])\n"
	"  if tok > top then top, topstr = tok, ARGV[a + 2] end\n"
	"end\n"
	"if top > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') < top then\n"
	"  redis.call('SET', KEYS[1], topstr)\n"
	"end\n"
	"return released\n",

	"if redis.pcall('GET', KEYS[1]) == ARGV[1] then\n"
	"  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
	"end\n"
	"return 0\n",

	"local v = redis.call('GET', KEYS[1])\n"
	"if not v then return {} end\n"
	"return {v, redis.call('PTTL', KEYS[1])}\n",

	"local r = {}\n"
	"for i = 1, #KEYS do\n"
	"  local u = ARGV[2 * i - 1]\n"
	"  local v = redis.pcall('GET', KEYS[i])\n"
	"  if type(v) == 'string' and string.sub(v, 1, #u) == u then\n"
	"    r[i] = redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])\n"
	"  else\n"
	"    r[i] = 0\n"
	"  end\n"
	"end\n"
	"return r\n",

	"local n = math.floor((#KEYS - 1) / 2)\n"
	"local lease, prefix = ARGV[1], ARGV[2]\n"
	"if #KEYS > 2 * n + 1 and redis.pcall('GET', KEYS[#KEYS]) ~= ARGV[#ARGV] then\n"
	"  return {0, 0}\n"
	"end\n"
	"local f = redis.call('GET', KEYS[1])\n"
	"if f and not tonumber(f) then\n"
	"  return redis.error_reply('LOCKEXT_FENCE ' .. KEYS[1])\n"
	"end\n"
	"for i = 1, n do\n"
	"  local k, o = KEYS[1 + i], ARGV[2 + i]\n"
	"  if not redis.call('SET', k, o, 'NX', 'PX', lease) then\n"
	"    local v = redis.call('GET', k)\n"
	"    if v ~= o and string.sub(v, 1, #prefix) ~= prefix then\n"
	"      for j = 1, i - 1 do\n"
	"        if redis.call('GET', KEYS[1 + j]) == ARGV[2 + j] then\n"
	"          redis.call('DEL', KEYS[1 + j])\n"
	"        end\n"
	"      end\n"
	"      local ttl = redis.call('PTTL', k)\n"
	"      redis.call('SET', KEYS[1 + n + i], '1', 'PX', math.max(ttl, 0) + 1000)\n"
	"      return {0, i, v, ttl}\n"
	"    end\n"
	"    redis.call('SET', k, o, 'PX', lease)\n"
	"  end\n"
	"end\n"
	"local t = redis.call('TIME')\n"
	"local c = tonumber(t[1]) * 1000000 + tonumber(t[2]) - 1\n"
	"local last = tonumber(f or '0')\n"
	"if c < last then c = last end\n"
	"local r = {1}\n"
	"for i = 1, n do r[i + 1] = c + i end\n"
	"redis.call('SET', KEYS[1], string.format('%.0f', c + n))\n"
	"return r\n",

	"local ns, me, ttl = ARGV[1], ARGV[2], ARGV[3]\n"
	"for i = 0, tonumber(ARGV[4]) - 1 do\n"
	"  redis.call('SET', ns .. ':waitfor:' .. ARGV[5 + 2 * i], ARGV[6 + 2 * i], 'PX', ttl)\n"
	"end\n"
	"local pat = '^([^|]*)|(%d)|(%d)|(%-?%d+)|([^|]*)|(%d+)|([^|]*)|(.*)$'\n"
	"local path, held, seen, cur = {''}, {}, {}, me\n"
	"for hop = 1, 100 do\n"
	"  local e = redis.call('GET', ns .. ':waitfor:' .. cur)\n"
	"  if not e then return {} end\n"
	"  local holder, r, a, since, inst, pid, stamp, key = string.match(e, pat)\n"
	"  if not holder then return {} end\n"
	"  local h = '1'\n"
	"  if r == '1' then\n"
	"    local v = redis.call('GET', ns .. ':lock:' .. key)\n"
	"    if v and string.sub(v, 1, #holder) ~= holder then return {} end\n"
	"    if not v then h = '0' end\n"
	"  else\n"
	"    local by, s = string.match(stamp, '^([^:]*):(.*)$')\n"
	"    local p = by and redis.call('GET', ns .. ':waitfor:' .. by)\n"
	"    if not p then return {} end\n"
	"    local _, pr, _, _, _, _, ps = string.match(p, pat)\n"
	"    if pr ~= '1' or ps ~= s then return {} end\n"
	"  end\n"
	"  held[#held + 1] = h\n"
	"  path[#path + 1] = table.concat({cur, holder, r, a, since, inst, pid, key}, '|')\n"
	"  if holder == me then\n"
	"    path[1] = table.concat(held)\n"
	"    return path\n"
	"  end\n"
	"  if seen[holder] then return {} end\n"
	"  seen[holder] = true\n"
	"  cur = holder\n"
	"end\n"
	"return {}\n",
};

static char script_sha[NSCRIPTS][41];

const char *
redis_script_source(int script)
{
	return script_src[script];
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

static inline bool
is_noscript(const RedisResult *r)
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
		else if (is_noscript(&results[i]))
		{
			answered++;
			noscript++;
		}
	}
	return noscript > 0 && answered >= quorum_of(n);
}

/*
 * Will EVALSHA find the script on every node?  Only where the connection
 * ran it, or sent it by EVAL, before: a node whose answer is not awaited
 * (a quorum answered first) is never sent EVAL after its NOSCRIPT, and
 * would miss the command (a grant short of a node after a restart).
 */
static bool
all_have_script(RedisNode **nodes, int n, int script)
{
	int			i;

	for (i = 0; i < n; i++)
		if (nodes[i]->ctx == NULL ||
			(nodes[i]->scripts_loaded & (1U << script)) == 0)
			return false;
	return true;
}

/*
 * After a run: where the script is now (EVAL ran it, or will: its answer
 * was not awaited), or is not.
 */
static void
note_scripts(RedisNode **nodes, int n, int script, bool by_sha,
			 const RedisResult *results)
{
	int			i;

	for (i = 0; i < n; i++)
		if (is_noscript(&results[i]) ||
			(by_sha && results[i].not_awaited))
			/* an EVALSHA not waited for may have been refused: EVAL next */
			nodes[i]->scripts_loaded &= ~(1U << script);
		else if (!by_sha && nodes[i]->ctx != NULL &&
				 (results[i].outcome == RNODE_OK || results[i].not_awaited))
			nodes[i]->scripts_loaded |= 1U << script;
}

/* The arguments of EVALSHA (by_sha) or EVAL of a script; returns argc. */
static int
script_argv(int script, bool by_sha, int nkeys, const char **keys,
			int nargs, const char **args, char *nkeys_str,
			const char **argv, size_t *argvlen)
{
	int			argc = 0;
	int			i;

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

/*
 * Run a script on the given nodes: EVAL until every connection has had
 * it, then EVALSHA, and EVAL (which caches it again) on the nodes that
 * answer NOSCRIPT after a SCRIPT FLUSH.  undo, when given, is sent behind
 * it where its answer is not learned (see redis_run).
 */
void
redis_run_script(RedisNode **nodes, int n, int script, int nkeys,
				 const char **keys, int nargs, const char **args,
				 const char *undo, size_t undo_len, int64 extra_ms, bool quiet,
				 RedisEnoughFn enough, RedisResult *results)
{
	/* the one-key scripts fit on the stack; many keys are allocated */
	const char *argv_small[3 + 7];
	size_t		argvlen_small[3 + 7];
	bool		small = (nkeys + nargs <= 7);
	const char **argv = small ? argv_small :
		palloc((3 + nkeys + nargs) * sizeof(char *));
	size_t	   *argvlen = small ? argvlen_small :
		palloc((3 + nkeys + nargs) * sizeof(size_t));
	char		nkeys_str[16];
	RedisCommand cmd;
	RedisNode  *again[LOCKEXT_MAX_NODES];
	int			again_at[LOCKEXT_MAX_NODES];
	int			nagain = 0;
	bool		by_sha = all_have_script(nodes, n, script);
	int			i;

	cmd.argc = script_argv(script, by_sha, nkeys, keys, nargs, args,
						   nkeys_str, argv, argvlen);
	cmd.argv = argv;
	cmd.argvlen = argvlen;
	script_enough = enough;
	redis_run(nodes, n, &cmd, undo, undo_len, extra_ms, quiet,
			  enough ? enough_or_noscript : NULL, results);
	note_scripts(nodes, n, script, by_sha, results);

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
		cmd.argv = argv;
		cmd.argvlen = argvlen;
		redis_run(again, nagain, &cmd, undo, undo_len, extra_ms, quiet, NULL, res2);
		note_scripts(again, nagain, script, false, res2);
		for (i = 0; i < nagain; i++)
			results[again_at[i]] = res2[i];
	}
}

/*
 * The command of a script by EVAL (never needs NOSCRIPT handling), for
 * commands nobody waits for.  argv/argvlen must have room for 3 + nkeys +
 * nargs; keys and args are copied as pointers.
 */
void
redis_script_eval_argv(int script, int nkeys, const char **keys,
					   const size_t *keylens, int nargs, const char **args,
					   const size_t *arglens, char *nkeys_str,
					   RedisCommand *cmd, const char **argv, size_t *argvlen)
{
	int			argc = 0;
	int			i;

	sprintf(nkeys_str, "%d", nkeys);
	argv[argc] = "EVAL";
	argvlen[argc++] = 4;
	argv[argc] = script_src[script];
	argvlen[argc++] = strlen(script_src[script]);
	argv[argc] = nkeys_str;
	argvlen[argc++] = strlen(nkeys_str);
	for (i = 0; i < nkeys; i++)
	{
		argv[argc] = keys[i];
		argvlen[argc++] = keylens[i];
	}
	for (i = 0; i < nargs; i++)
	{
		argv[argc] = args[i];
		argvlen[argc++] = arglens[i];
	}
	cmd->argc = argc;
	cmd->argv = argv;
	cmd->argvlen = argvlen;
}
