/*-------------------------------------------------------------------------
 *
 * redis_nodes.c
 *	  The configured set of Redis nodes, built from lockext.redis_nodes.
 *
 * guc.c parses the setting and hands the URLs over (redis_nodes_configure,
 * which must not fail); the set itself, with one connection slot per node,
 * is built lazily on first use.  A node set is refcounted: the
 * configuration holds one reference and every Redis hold another, so
 * changing lockext.redis_nodes never strands a held lock on nodes we
 * forgot.  A set's nodes are kept in a canonical order, so the same nodes
 * listed in another order are the same set (the same fingerprint, the same
 * index for each node); a reload that leaves the set as it was keeps it and
 * its open connections.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"

#include "redis.h"

/* The URLs configured (GUC extra data, stable until the next assign). */
static const RedisUrl *config_urls = NULL;
static int	config_n = 0;
static uint64 config_generation = 0;

/* The node set built from them, and the generation it reflects. */
static RedisNodeSet *current_set = NULL;
static uint64 current_generation = 0;

/* The setting changed (a GUC assign hook): cannot fail. */
void
redis_nodes_configure(const RedisUrl *urls, int n)
{
	config_urls = urls;
	config_n = n;
	config_generation++;
}

void
redis_nodeset_release(RedisNodeSet *set)
{
	int			i;

	if (set == NULL || --set->refcount > 0)
		return;
	for (i = 0; i < set->n; i++)
	{
		redis_disconnect(&set->nodes[i]);
		redis_forget_redo(&set->nodes[i]);
	}
	pfree(set);
}

/*
 * The node set in use, as it is: never rebuilt and never an ERROR, for
 * process exit.  NULL when none.
 */
RedisNodeSet *
lockext_redis_nodes_in_use(void)
{
	return current_set;
}

/*
 * The order of nodes in a set: by their parsed URLs, bytewise (the parser
 * zero-fills a RedisUrl, so equal URLs compare equal).  A set is the same
 * whichever order lockext.redis_nodes lists it in, and a node's index means
 * the same node in every process (hand-overs to the keeper name nodes by
 * index).
 */
static int
url_cmp(const void *a, const void *b)
{
	return memcmp(*(const RedisUrl *const *) a, *(const RedisUrl *const *) b,
				  sizeof(RedisUrl));
}

/*
 * Put the configured URLs in canonical order; does the current node set
 * already reflect them?
 */
static bool
sort_config(const RedisUrl **sorted)
{
	bool		same = (current_set ? current_set->n : 0) == config_n;
	int			i;

	for (i = 0; i < config_n; i++)
		sorted[i] = &config_urls[i];
	qsort(sorted, config_n, sizeof(RedisUrl *), url_cmp);
	for (i = 0; same && i < config_n; i++)
		same = memcmp(&current_set->nodes[i].url, sorted[i], sizeof(RedisUrl)) == 0;
	return same;
}

/*
 * The configured node set, NULL when none.  The caller borrows it; a hold
 * that keeps it must take a reference (refcount++).
 */
RedisNodeSet *
lockext_redis_nodes(void)
{
	const RedisUrl *sorted[LOCKEXT_MAX_NODES];

	if (current_generation == config_generation)
		return current_set;
	if (!sort_config(sorted))
	{
		RedisNodeSet *set = NULL;

		if (config_n > 0)
		{
			uint64		fp = 0;
			int			i;

			set = MemoryContextAllocZero(TopMemoryContext,
										 offsetof(RedisNodeSet, nodes) +
										 config_n * sizeof(RedisNode));
			set->refcount = 1;
			set->n = config_n;
			for (i = 0; i < config_n; i++)
				fp = hash_combine64(fp, hash_bytes_extended((const unsigned char *) sorted[i],
															sizeof(RedisUrl), 0));
			set->fingerprint = fp != 0 ? fp : 1;	/* 0: "nothing to renew" */
			for (i = 0; i < config_n; i++)
			{
				set->nodes[i].url = *sorted[i];
				set->nodes[i].set_fp = set->fingerprint;
				set->nodes[i].index = i;
				redis_url_display(&set->nodes[i].url, set->nodes[i].display,
								  sizeof(set->nodes[i].display));
			}
		}
		redis_nodeset_release(current_set);
		current_set = set;
	}
	current_generation = config_generation;
	return current_set;
}
