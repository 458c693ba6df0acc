/*-------------------------------------------------------------------------
 *
 * redis_checks.c
 *	  What a Redis node must be for lockext to use it, checked at connect
 *	  from the INFO replies pipelined with the handshake (redis_conn.c):
 *	  Redis 6.2 or later, and no eviction of keys (which may evict a held
 *	  lock).
 *
 * A node that fails a check is refused with 55000; a node found too old
 * is remembered, so that what a caller pipelined behind the check does
 * not run there on every call.  Nothing here raises an ERROR or pallocs
 * (the release path connects too); a refused version is logged once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "redis_conn_int.h"

/* Was an INFO reply not the text of its section?  Then why says so. */
static bool
info_refused(redisReply *r, const char *section, char *why, size_t whylen)
{
	if (r->type == REDIS_REPLY_STRING)
		return false;
	snprintf(why, whylen, "INFO %s was refused: %s", section,
			 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	return true;
}

/*
 * The value of field name in an INFO reply, into buf (cut to fit); false
 * when the reply has no such field.
 */
static bool
info_field(redisReply *r, const char *name, char *buf, size_t buflen)
{
	char		pattern[64];
	const char *v;
	size_t		i;

	snprintf(pattern, sizeof(pattern), "\n%s:", name);
	v = strstr(r->str, pattern);
	if (v == NULL)
		return false;
	v += strlen(pattern);
	for (i = 0; i < buflen - 1 && v[i] > ' '; i++)
		buf[i] = v[i];
	buf[i] = '\0';
	return true;
}

/*
 * A node that may evict keys may evict a held lock.  maxmemory 0 means no
 * limit, hence no eviction whatever the policy.  False, with why filled,
 * when the node must not be used.
 */
bool
rcheck_eviction(redisReply *r, char *why, size_t whylen)
{
	char		maxmemory[32];
	char		policy[32];

	if (info_refused(r, "memory", why, whylen))
		return false;
	if (!info_field(r, "maxmemory", maxmemory, sizeof(maxmemory)) ||
		!info_field(r, "maxmemory_policy", policy, sizeof(policy)))
		return true;			/* not a Redis that evicts */
	if (strtoll(maxmemory, NULL, 10) == 0 || strcmp(policy, "noeviction") == 0)
		return true;
	snprintf(why, whylen, "maxmemory-policy is %s with maxmemory set, so the node may evict held locks",
			 policy);
	return false;
}

/*
 * The oldest Redis lockext runs on: BLPOP's fractional timeouts (the waits)
 * need 6.0, and 6.2 is the oldest release lockext is tested against.
 */
#define MIN_MAJOR 6
#define MIN_MINOR 2

/*
 * A node found too old is refused at once, without connecting, for this
 * long: the commands pipelined behind the check ran there (lock keys that
 * expire with their leases, nobody renewing them), and that happens again
 * at most this often, not on every call.
 */
#define RECHECK_OLD_US (10 * USECS_PER_SEC)

static void
old_node_why(RedisNode *node, char *why, size_t whylen)
{
	snprintf(why, whylen, "Redis %s is older than %d.%d", node->version,
			 MIN_MAJOR, MIN_MINOR);
}

/*
 * Was node found too old lately?  Then it is refused at once (why says
 * why), without connecting.
 */
bool
rcheck_known_old(RedisNode *node, char *why, size_t whylen)
{
	if (!node->too_old || lockext_now_us() - node->too_old_at_us >= RECHECK_OLD_US)
		return false;
	old_node_why(node, why, whylen);
	return true;
}

/*
 * Is the server (INFO server) recent enough?  False, with why filled, when
 * it must not be used; the first refusal of a version is logged (the
 * keeper's too, which has nobody else to tell).  A server that names no
 * redis_version is not refused: nothing says it lacks what lockext uses.
 */
bool
rcheck_version(RedisNode *node, redisReply *r, char *why, size_t whylen)
{
	char		version[sizeof(node->version)];
	char	   *end;
	long long	major;
	long long	minor = 0;

	if (info_refused(r, "server", why, whylen))
		return false;
	if (!info_field(r, "redis_version", version, sizeof(version)))
		return true;
	major = strtoll(version, &end, 10);
	if (*end == '.')
		minor = strtoll(end + 1, NULL, 10);
	if (major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR))
	{
		strlcpy(node->version, version, sizeof(node->version));
		node->too_old = false;
		return true;
	}
	if (!node->too_old || strcmp(node->version, version) != 0)
		ereport(LOG,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Redis node %s runs a version of Redis lockext does not support",
						node->display),
				 errdetail("It runs Redis %s.", version),
				 errhint("lockext needs Redis %d.%d or later.", MIN_MAJOR, MIN_MINOR)));
	strlcpy(node->version, version, sizeof(node->version));
	node->too_old = true;
	node->too_old_at_us = lockext_now_us();
	old_node_why(node, why, whylen);
	return false;
}

/* The first node of set refused for its version at its last connect. */
const RedisNode *
redis_too_old_node(const RedisNodeSet *set)
{
	int			i;

	for (i = 0; i < set->n; i++)
		if (set->nodes[i].too_old)
			return &set->nodes[i];
	return NULL;
}
