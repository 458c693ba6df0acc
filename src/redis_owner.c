/*-------------------------------------------------------------------------
 *
 * redis_owner.c
 *	  Owner values: what a Redis lock key holds, ours alone per hold
 *	  (unique|instance|pid|database|since|application_name), how a hold
 *	  renders its own, and how one read from Redis is understood.
 *
 * A hold keeps only what varies (a counter, the time, a kept application
 * name); the rest is this process's, given once (redis_proto_identify) or
 * built at the first acquire.  Rendering never ERRORs or allocates: the
 * release path renders owner values too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "owner_value.h"
#include "redis.h"

/* Who this process is, in owner values (redis_proto_identify). */
static struct
{
	const char *session_id;
	const char *instance;
}			identity;

/*
 * Tell the protocol who this process is: its session id (the prefix of
 * its owner values) and its instance's name.  The layer above does, before
 * the first acquire; kept for the life of the process.
 */
void
redis_proto_identify(const char *session_id, const char *instance)
{
	if (identity.session_id == NULL)
	{
		identity.session_id = MemoryContextStrdup(TopMemoryContext, session_id);
		identity.instance = MemoryContextStrdup(TopMemoryContext, instance);
	}
}

/* The owner values' middle part: instance|pid|database, built once. */
static char *owner_middle = NULL;

/*
 * The owner value, unique per hold and readable by dlock_holder():
 * unique|instance|pid|database|since|application_name.  The unique part
 * is the session id (random, drawn once per backend) and a counter of
 * holds: as unique as a fresh random value, without the cost of drawing
 * one per transaction.  A hold keeps only what varies (the counter, the
 * time, a pointer to the application name), not the value: holds are
 * many.
 */
void
redis_make_owner(RedisHold *hold)
{
	static uint64 holds = 0;

	if (owner_middle == NULL)
	{
		char	   *instance = pstrdup(identity.instance);
		char	   *db = get_database_name(MyDatabaseId);
		char	   *m;
		int			i;

		/* '|' separates fields; only the last one may contain it */
		for (i = 0; instance[i]; i++)
			if (instance[i] == '|')
				instance[i] = '_';
		for (i = 0; db && db[i]; i++)
			if (db[i] == '|')
				db[i] = '_';
		m = psprintf("%s|%d|%s", instance, MyProcPid, db ? db : "");
		owner_middle = MemoryContextStrdup(TopMemoryContext, m);
	}
	hold->seq = ++holds;
	hold->since = GetCurrentTimestamp();
	hold->text = redis_string_kept(application_name ? application_name : "");
	hold->owner_given = false;
}

/*
 * Write hold's owner value into buf (size bytes, or none with size 0);
 * returns its length, as snprintf does.  Never ERRORs or allocates: the
 * release path renders owner values too.
 */
int
redis_hold_owner(const RedisHold *hold, char *buf, size_t size)
{
	if (hold->owner_given)
		return snprintf(buf, size, "%s", hold->text);
	return snprintf(buf, size, "%s%016llx|%s|" INT64_FORMAT "|%s",
					identity.session_id, (unsigned long long) hold->seq,
					owner_middle, hold->since, hold->text);
}

/* The length of hold's owner value.  Never ERRORs. */
int
redis_hold_owner_len(const RedisHold *hold)
{
	char		one;

	return redis_hold_owner(hold, &one, 1);
}

/* hold's owner value, palloc'd.  May ERROR. */
char *
redis_owner_of(const RedisHold *hold)
{
	int			len = redis_hold_owner_len(hold);
	char	   *buf = palloc(len + 1);

	redis_hold_owner(hold, buf, len + 1);
	return buf;
}

/*
 * A string kept for the life of the process (holds point to it): a
 * namespace, an application name.  A session sees few.
 */
const char *
redis_string_kept(const char *str)
{
	static List *kept = NIL;
	ListCell   *lc;
	MemoryContext oldcxt;

	foreach(lc, kept)
		if (strcmp(lfirst(lc), str) == 0)
			return lfirst(lc);
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	kept = lappend(kept, pstrdup(str));
	MemoryContextSwitchTo(oldcxt);
	return llast(kept);
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
const char *
redis_describe_owner(const char *value)
{
	DlockHolderInfo info;

	memset(&info, 0, sizeof(info));
	if (!redis_parse_owner(value, &info))
		return "an unknown owner";
	return psprintf("pid %d on %s", info.pid, info.instance);
}

