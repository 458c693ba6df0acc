/*-------------------------------------------------------------------------
 *
 * redis_renew.c
 *	  The lease keeper's renewal of many Redis locks at once: one batched
 *	  compare-and-PEXPIRE command per node for up to 1,000 locks.
 *
 * The keeper sends this every round for thousands of leases, so the
 * command is written straight into one buffer kept across calls rather
 * than formatted from argument vectors.
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

/*
 * The lease keeper's renewal of many locks at once: compare-and-PEXPIRE
 * of each lock for its lease, up to 1000 locks per command, on every node
 * of set.  outcome[i]: the lease end, as a monotonic time in microseconds,
 * when a majority renewed it in time; 0 when a majority said it is no
 * longer ours (lost); -1 when too few nodes answered to tell.  Never renews a key that is not ours: it only extends.
 */
void
redis_proto_extend_many(RedisNodeSet *set, const RedisRenewal *renewals,
						int n, int64 *outcome)
{
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
			int64		end = start + lease_ms * 1000 - redis_drift_us(lease_ms);

			if (renewed[i] >= quorum_of(set->n) && end > now)
				outcome[done + i] = end;
			else if (lost[i] >= quorum_of(set->n))
				outcome[done + i] = 0;
			else
				outcome[done + i] = -1;
		}
	}
}
