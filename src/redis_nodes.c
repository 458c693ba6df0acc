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
 * forgot.  A reload that leaves the node list as it was keeps the set and
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

/* The parser zero-fills a RedisUrl, so equal URLs compare equal bytewise. */
static bool
same_url(const RedisUrl *a, const RedisUrl *b)
{
	return memcmp(a, b, sizeof(RedisUrl)) == 0;
}

/* Does the current node set already reflect the configured URLs? */
static bool
same_nodes(const RedisNodeSet *set)
{
	int			i;

	if ((set ? set->n : 0) != config_n)
		return false;
	for (i = 0; i < config_n; i++)
		if (!same_url(&set->nodes[i].url, &config_urls[i]))
			return false;
	return true;
}

/*
 * The configured node set, NULL when none.  The caller borrows it; a hold
 * that keeps it must take a reference (refcount++).
 */
RedisNodeSet *
lockext_redis_nodes(void)
{
	if (current_generation != config_generation && same_nodes(current_set))
		current_generation = config_generation;
	if (current_generation != config_generation)
	{
		RedisNodeSet *set = NULL;

		if (config_n > 0)
		{
			int			i;

			set = MemoryContextAllocZero(TopMemoryContext,
										 offsetof(RedisNodeSet, nodes) +
										 config_n * sizeof(RedisNode));
			set->refcount = 1;
			set->n = config_n;
			/* the parsed URLs are zero-padded, so equal sets hash equal */
			set->fingerprint = hash_bytes_extended((const unsigned char *) config_urls,
												   config_n * sizeof(RedisUrl), 0);
			if (set->fingerprint == 0)
				set->fingerprint = 1;	/* 0 means "nothing to renew" */
			for (i = 0; i < config_n; i++)
			{
				set->nodes[i].url = config_urls[i];
				set->nodes[i].set_fp = set->fingerprint;
				set->nodes[i].index = i;
				redis_url_display(&set->nodes[i].url, set->nodes[i].display,
								  sizeof(set->nodes[i].display));
			}
		}
		redis_nodeset_release(current_set);
		current_set = set;
		current_generation = config_generation;
	}
	return current_set;
}
