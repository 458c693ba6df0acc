/*-------------------------------------------------------------------------
 *
 * redis_release.c
 *	  Releasing Redis locks in sweeps: many locks per command, pipelined to
 *	  every node, under one deadline.
 *
 * A release is the compare-and-delete of a value that belongs to one hold
 * alone, so sending it twice is harmless: releases that could not be
 * confirmed stay with their nodes and are sent again on the next
 * connection (redis_conn.c).  Everything here runs after the commit
 * record, on the abort path and at exit: it never ERRORs, never pallocs
 * and never looks at interrupts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "redis.h"

/*
 * The formatted RELEASE command for rel[0..m-1], all of one node set and
 * namespace, or NULL when out of memory.  malloc only: this runs where a
 * palloc failure would be a PANIC.
 */
char *
redis_format_release(const RedisRelease *rel, int m, size_t *len)
{
	const RedisHold *first = rel[0].hold;
	int			nkeys = 1 + 3 * m;
	int			nargs = 3 * m;
	const char **keys = malloc((nkeys + nargs) * sizeof(char *));
	size_t	   *lens = malloc((nkeys + nargs) * sizeof(size_t));
	const char **argv = malloc((3 + nkeys + nargs) * sizeof(char *));
	size_t	   *argvlen = malloc((3 + nkeys + nargs) * sizeof(size_t));
	size_t		room = 64 + strlen(first->ns);
	char	   *buf;
	char	   *p;
	char	   *cmd = NULL;
	char		nkeys_str[16];
	RedisCommand rc;
	int			i;
	int			flen;

	for (i = 0; i < m; i++)
		room += 3 * (strlen(first->ns) + strlen(rel[i].key) + 16) + 64 +
			redis_hold_owner_len(rel[i].hold) + 1;
	buf = malloc(room);
	if (keys == NULL || lens == NULL || argv == NULL || argvlen == NULL ||
		buf == NULL)
		goto done;

#define PUT(idx, ...) \
	do { \
		int w = snprintf(p, room - (p - buf), __VA_ARGS__); \
		keys[idx] = p; lens[idx] = w; p += w + 1; \
	} while (0)

	p = buf;
	PUT(0, "%s:fence", first->ns);
	for (i = 0; i < m; i++)
	{
		const RedisHold *h = rel[i].hold;

		PUT(1 + 3 * i, "%s:lock:%s", h->ns, rel[i].key);
		PUT(2 + 3 * i, "%s:wake:%s", h->ns, rel[i].key);
		PUT(3 + 3 * i, "%s:waiting:%s", h->ns, rel[i].key);
		keys[nkeys + 3 * i] = p;
		lens[nkeys + 3 * i] = redis_hold_owner(h, p, room - (p - buf));
		p += lens[nkeys + 3 * i] + 1;
		PUT(nkeys + 3 * i + 1, INT64_FORMAT, Max(h->lease_ms, 1000));
		/* one node's counter is already monotonic: no raise needed */
		PUT(nkeys + 3 * i + 2, INT64_FORMAT, h->set->n > 1 ? h->token : 0);
	}
#undef PUT

	/* EVAL, not EVALSHA: nobody may be there to resend after NOSCRIPT */
	redis_script_eval_argv(SCRIPT_RELEASE, nkeys, keys, lens, nargs,
						   keys + nkeys, lens + nkeys, nkeys_str, &rc,
						   argv, argvlen);
	flen = redisFormatCommandArgv(&cmd, rc.argc, rc.argv, rc.argvlen);
	if (flen < 0)
		cmd = NULL;
	*len = flen < 0 ? 0 : flen;

done:
	free(keys);
	free(lens);
	free(argv);
	free(argvlen);
	free(buf);
	return cmd;
}

static void
append_nodes(char *detail, size_t size, RedisNodeSet *set)
{
	int			i;

	for (i = 0; i < set->n; i++)
	{
		size_t		used = strlen(detail);

		snprintf(detail + used, size - used, "%s%s", used > 0 ? ", " : "",
				 set->nodes[i].display);
	}
}

/*
 * Who waits for the confirmation of the release of rel[0..m): their tags
 * (NULL when none has one, or out of memory: then nobody hears of it).
 */
static RedisGiveback *
new_giveback(RedisNodeSet *set, const RedisRelease *rel, int m)
{
	RedisGiveback *gb;
	int			i;

	for (i = 0; i < m && rel[i].tag == NULL; i++)
		;
	if (i == m || (gb = malloc(offsetof(RedisGiveback, tags) +
							   m * sizeof(void *))) == NULL)
		return NULL;
	gb->refs = 1;				/* the sender's, until the copies are queued */
	gb->confirmed = 0;
	gb->quorum = quorum_of(set->n);
	gb->ntags = m;
	for (i = 0; i < m; i++)
		gb->tags[i] = rel[i].tag;
	return gb;
}

/*
 * Release m holds of one node set and namespace: LOCKEXT_SCRIPT_MAX_KEYS locks per
 * command, all commands pipelined to every node.  Returns how many
 * releases a majority did not confirm.
 */
static int
release_group(RedisNodeSet *set, RedisRelease *group, int m, bool wait)
{
	int			ncmds = redis_nchunks(m);
	char	  **cmds = calloc(ncmds, sizeof(char *));
	size_t	   *lens = calloc(ncmds, sizeof(size_t));
	int		   *nkeys = calloc(ncmds, sizeof(int));
	int		   *confirmed = calloc(ncmds, sizeof(int));
	int		   *at = calloc(ncmds, sizeof(int));
	RedisGiveback **gbs = calloc(ncmds, sizeof(RedisGiveback *));
	int			lost = 0;

	if (cmds == NULL || lens == NULL || nkeys == NULL || confirmed == NULL ||
		at == NULL || gbs == NULL)
		lost = m;				/* out of memory: the leases will do it */
	else
	{
		RedisNode  *nodes[LOCKEXT_MAX_NODES];
		int			nsent = 0;
		int			c;
		int			j;

		for (c = 0; c < ncmds; c++)
		{
			int			k = redis_chunk_len(m, c);

			cmds[nsent] = redis_format_release(group + c * LOCKEXT_SCRIPT_MAX_KEYS, k,
										 &lens[nsent]);
			if (cmds[nsent] == NULL)
				lost += k;		/* could not even be formatted */
			else
			{
				at[nsent] = c * LOCKEXT_SCRIPT_MAX_KEYS;
				gbs[nsent] = new_giveback(set, group + c * LOCKEXT_SCRIPT_MAX_KEYS, k);
				nkeys[nsent++] = k;
			}
		}
		redis_send_givebacks(nodes, set_nodes(set, nodes), cmds, lens, nkeys,
							 gbs, nsent, wait, confirmed);
		for (c = 0; c < nsent; c++)
		{
			if (confirmed[c] < quorum_of(set->n))
				lost += nkeys[c];
			else
				for (j = 0; j < nkeys[c]; j++)
					group[at[c] + j].done = true;
			redisFreeCommand(cmds[c]);
			redis_giveback_unref(gbs[c]);	/* the copies keep theirs */
		}
	}
	free(gbs);
	free(cmds);
	free(lens);
	free(nkeys);
	free(confirmed);
	free(at);
	return lost;
}

/*
 * Compare-and-delete many holds, and wake their waiters: for each node set
 * one pipelined sweep carrying up to LOCKEXT_SCRIPT_MAX_KEYS locks per command,
 * under one deadline.  With wait, a release counts as confirmed when a
 * majority of its nodes answered; without, when it was written to a
 * majority's working connections (the answers are read later).  Returns
 * how many releases could not be confirmed, with the nodes in detail;
 * those stay queued for the nodes' next connections, and their leases are
 * the backstop.  Never ERRORs, never pallocs and never looks at
 * interrupts: it runs after the commit record, on the abort path and at
 * exit.  Clears rel[i].hold of the holds it handled.
 */
int
redis_proto_release_many(RedisRelease *rel, int n, bool wait, char *detail,
						 size_t detail_size)
{
	RedisRelease *group = malloc(n * sizeof(RedisRelease));
	int		   *from = malloc(n * sizeof(int));
	int			unconfirmed = 0;
	int			i;

	if (detail_size > 0)
		detail[0] = '\0';
	for (i = 0; i < n; i++)
	{
		RedisHold  *head = rel[i].hold;
		int			m = 0;
		int			lost;
		int			j;

		if (head == NULL)
			continue;
		/* gather the holds of the same node set and namespace */
		for (j = i; j < n; j++)
			if (rel[j].hold != NULL && rel[j].hold->set == head->set &&
				strcmp(rel[j].hold->ns, head->ns) == 0)
			{
				if (group != NULL && from != NULL)
				{
					group[m] = rel[j];
					group[m].done = false;
					from[m] = j;
				}
				m++;
				rel[j].hold = NULL;
			}
		if (group == NULL || from == NULL)
			lost = m;
		else
		{
			lost = release_group(head->set, group, m, wait);
			for (j = 0; j < m; j++)
				rel[from[j]].done = group[j].done;
		}
		if (lost > 0 && detail_size > 0 && detail[0] == '\0')
			append_nodes(detail, detail_size, head->set);
		unconfirmed += lost;
	}
	free(group);
	free(from);
	return unconfirmed;
}
