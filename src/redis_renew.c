/*-------------------------------------------------------------------------
 *
 * redis_renew.c
 *	  The lease keeper's renewal of many Redis locks at once: batched
 *	  compare-and-PEXPIRE commands of up to 1,000 locks each, pipelined
 *	  to every node, done once a majority answered them all.
 *
 * The keeper sends this every round for thousands of leases, so the
 * commands are written straight into one buffer kept across calls rather
 * than formatted from argument vectors, and a round costs one round trip
 * of the majority plus the bytes, however many batches it takes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "redis.h"

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

/* EVAL EXTEND_MANY for m renewals, appended to buf. */
static void
append_batch(StringInfo buf, const RedisRenewal *renewals, int m)
{
	static const char *src = NULL;
	static size_t src_len;
	char		num[MAXINT8LEN + 1];
	int			num_len;
	int64		lease_of = -1;
	int			i;

	if (src == NULL)
	{
		src = redis_script_source(SCRIPT_EXTEND_MANY);
		src_len = strlen(src);
	}
	/* EVAL <script> <m> <keys...> <unique part, lease ms>... */
	appendStringInfo(buf, "*%d\r\n", 3 + 3 * m);
	append_bulk(buf, "EVAL", 4);
	append_bulk(buf, src, src_len);
	num_len = pg_ltoa(m, num);
	append_bulk(buf, num, num_len);
	for (i = 0; i < m; i++)
		append_bulk(buf, renewals[i].lockkey, renewals[i].lockkey_len);
	for (i = 0; i < m; i++)
	{
		append_bulk(buf, renewals[i].owner, renewals[i].owner_len);
		if (renewals[i].lease_ms != lease_of)
		{
			num_len = pg_lltoa(renewals[i].lease_ms, num);
			lease_of = renewals[i].lease_ms;
		}
		append_bulk(buf, num, num_len);
	}
}

/*
 * What a majority of the n nodes said of lock k of batch c (m locks): 1
 * renewed, 0 not ours, -1 neither.
 */
static int
verdict(const RedisResult *results, int n, int ncmds, int c, int m, int k)
{
	int			renewed = 0;
	int			lost = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		const RedisResult *r = &results[i * ncmds + c];
		const redisReply *rep = r->reply;

		if (r->outcome != RNODE_OK || rep->type != REDIS_REPLY_ARRAY ||
			(int) rep->elements != m)
			continue;			/* no answer */
		if (rep->element[k]->type == REDIS_REPLY_INTEGER &&
			rep->element[k]->integer == 1)
			renewed++;
		else
			lost++;
	}
	if (renewed >= quorum_of(n))
		return 1;
	return lost >= quorum_of(n) ? 0 : -1;
}

/* The locks of the renewal in progress, for batch_settled(). */
static int	renew_total;

/*
 * Has a majority renewed each lock of batch c, or said it is not ours?
 * Replies that disagree (a node that lost the keys answers first) leave
 * it open: the third node's answer is worth a short wait.
 */
static bool
batch_settled(const RedisResult *results, int n, int ncmds, int c)
{
	int			m = redis_chunk_len(renew_total, c);
	int			k;

	for (k = 0; k < m; k++)
		if (verdict(results, n, ncmds, c, m, k) < 0)
			return false;
	return true;
}

/*
 * The lease keeper's renewal of many locks at once: compare-and-PEXPIRE
 * of each lock for its lease, LOCKEXT_SCRIPT_MAX_KEYS locks per command, all commands
 * pipelined to every node of set at once, done when a majority answered
 * them all and agreed on each lock (a stopped node delays nothing).  outcome[i]: the lease end,
 * as a monotonic time in microseconds, when a majority renewed it in time;
 * 0 when a majority said it is no longer ours (lost); -1 when too few
 * nodes answered to tell (the keeper tries again soon).  Never renews a
 * key that is not ours: it only extends.
 */
void
redis_proto_extend_many(RedisNodeSet *set, const RedisRenewal *renewals,
						int n, int64 *outcome)
{
	static StringInfoData buf = {NULL, 0, 0, 0};
	int			ncmds = redis_nchunks(n);
	const char **cmds;
	size_t	   *lens;
	RedisResult *results;
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	int64		start;
	int64		now;
	int			c;

	if (n == 0)
		return;
	if (buf.data == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&buf);
		MemoryContextSwitchTo(oldcxt);
	}
	cmds = palloc(ncmds * sizeof(char *));
	lens = palloc(ncmds * sizeof(size_t));
	results = palloc(set->n * ncmds * sizeof(RedisResult));

	/* all batches in one buffer: offsets first, it may move as it grows */
	resetStringInfo(&buf);
	for (c = 0; c < ncmds; c++)
	{
		lens[c] = buf.len;
		append_batch(&buf, renewals + c * LOCKEXT_SCRIPT_MAX_KEYS,
					 redis_chunk_len(n, c));
		lens[c] = buf.len - lens[c];
	}
	for (c = 0; c < ncmds; c++)
		cmds[c] = c == 0 ? buf.data : cmds[c - 1] + lens[c - 1];

	/* a lease starts no earlier than its command is sent */
	start = lockext_now_us();
	renew_total = n;
	redis_run_many(nodes, set_nodes(set, nodes), cmds, lens, ncmds, false,
				   batch_settled, results);
	now = lockext_now_us();

	for (c = 0; c < ncmds; c++)
	{
		int			m = redis_chunk_len(n, c);
		int			k;

		for (k = 0; k < m; k++)
		{
			int			i = c * LOCKEXT_SCRIPT_MAX_KEYS + k;
			int64		lease_ms = renewals[i].lease_ms;
			int64		end = start + lease_ms * 1000 - redis_drift_us(lease_ms);
			int			v = verdict(results, set->n, ncmds, c, m, k);

			if (v == 1 && end > now)
				outcome[i] = end;
			else
				outcome[i] = v == 0 ? 0 : -1;
		}
	}
	redis_results_free(results, set->n * ncmds);
	pfree(results);
	pfree(lens);
	pfree(cmds);
}
