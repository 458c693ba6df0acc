/*-------------------------------------------------------------------------
 *
 * views.c
 *	  SQL functions behind lockext's views, reading shared state:
 *	  dlock_locks (every hold and wait on this instance, by key text),
 *	  dlock_stats (per-database counters) and dlock_redis_nodes (the Redis
 *	  nodes as the lease keeper sees them), and whether the keeper runs.
 *
 * Like pg_stat_activity with its query text, other roles' rows of
 * dlock_locks, and who holds a key in dlock_holder(), are shown only to
 * superusers and members of pg_read_all_stats.  Keys of another database
 * whose encoding differs from this one's are shown as escaped bytes
 * unless they are plain ASCII: their bytes are not text here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid_d.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "common/string.h"
#include "mb/pg_wchar.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "lockext.h"
#include "keeper_state.h"
#include "local_lock.h"
#include "shared_area.h"
#include "shared_locks.h"
#include "shared_stats.h"
#include "views.h"

typedef struct LocksScan
{
	ReturnSetInfo *rsinfo;
	bool		see_all;
	char	   *instance;
} LocksScan;

static const char *
kind_scope(int kind)
{
	switch (kind)
	{
		case LOCKEXT_ROW_XACT:
			return "transaction";
		case LOCKEXT_ROW_SESSION:
			return "session";
		default:
			return NULL;		/* a wait: the scope is not known yet */
	}
}

/* application_name of a live backend, or NULL. */
static char *
backend_appname(int pid)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = lockext_local_beentry(i);

		if (local->backendStatus.st_procpid == pid)
			return pstrdup(local->backendStatus.st_appname);
	}
	return NULL;
}

/* Does the current user see other roles' holds and waits? */
static bool
sees_all(void)
{
	return superuser() || has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
}

/* The role of a live backend of this instance, InvalidOid if none. */
static Oid
backend_role(int pid)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
		PgBackendStatus *be = &lockext_local_beentry(i)->backendStatus;

		if (be->st_procpid == pid)
			return be->st_userid;
	}
	return InvalidOid;
}

/*
 * dlock_holder(): may the current user see who holds a key (instance,
 * pid, database, application_name)?  The dlock_locks rule: a holder of a
 * role whose privileges the user has, on this instance, or anyone to
 * superusers and pg_read_all_stats.  A holder on another instance has no
 * role we could check.
 */
bool
views_may_see_holder(const DlockHolderInfo *info)
{
	Oid			role;

	if (sees_all())
		return true;
	if (info->instance == NULL || strcmp(info->instance, lockext_instance_name()) != 0)
		return false;
	role = backend_role(info->pid);
	return OidIsValid(role) && has_privs_of_role(GetUserId(), role);
}

static int
database_encoding(Oid dboid)
{
	HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	int			encoding = -1;

	if (HeapTupleIsValid(tup))
	{
		encoding = ((Form_pg_database) GETSTRUCT(tup))->encoding;
		ReleaseSysCache(tup);
	}
	return encoding;
}

/* A key of database dboid as text here: escaped bytes when not ours. */
static Datum
key_text(Oid dboid, const char *key, int keylen)
{
	StringInfoData buf;
	int			i;

	if ((dboid == MyDatabaseId ||
		 pg_is_ascii(key) ||
		 database_encoding(dboid) == GetDatabaseEncoding()) &&
		pg_verifymbstr(key, keylen, true))
		return CStringGetTextDatum(key);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "\\x");
	for (i = 0; i < keylen; i++)
		appendStringInfo(&buf, "%02x", (unsigned char) key[i]);
	return CStringGetTextDatum(buf.data);
}

static void
lock_row(const SharedLockRow *row, const char *key, int kind, void *arg)
{
	LocksScan  *scan = (LocksScan *) arg;
	Datum		values[15];
	bool		nulls[15] = {false};
	const char *scope = kind_scope(kind);
	char	   *db;
	char	   *user;
	char	   *app;
	TimestampTz lease_end;
	int64		renewals;

	if (!scan->see_all && !has_privs_of_role(GetUserId(), row->userid))
		return;
	db = get_database_name(row->dboid);
	user = GetUserNameFromId(row->userid, true);
	app = backend_appname(row->key.pid);

	values[0] = key_text(row->dboid, key, row->keylen);
	values[1] = scope ? CStringGetTextDatum(scope) : (Datum) 0;
	nulls[1] = (scope == NULL);
	values[2] = CStringGetTextDatum(row->backend);
	values[3] = CStringGetTextDatum(row->state == 'w' ? "waiting" :
									row->state == 'l' ? "lost" : "held");
	values[4] = Int32GetDatum(row->key.pid);
	values[5] = db ? CStringGetTextDatum(db) : (Datum) 0;
	nulls[5] = (db == NULL);
	values[6] = user ? CStringGetTextDatum(user) : (Datum) 0;
	nulls[6] = (user == NULL);
	values[7] = app ? CStringGetTextDatum(app) : (Datum) 0;
	nulls[7] = (app == NULL);
	values[8] = Int64GetDatum(row->token);
	nulls[8] = !row->has_token;
	values[9] = TimestampTzGetDatum(row->since);
	nulls[9] = (row->state == 'w');
	values[10] = TimestampTzGetDatum(row->since);
	nulls[10] = (row->state != 'w');
	shared_locks_row_lease(row, &lease_end, NULL, &renewals);
	values[11] = TimestampTzGetDatum(lease_end);
	nulls[11] = (lease_end == 0);
	values[12] = Int64GetDatum(renewals);	/* by the lease keeper */
	/* a waiter's blocker: the remote holder Redis named, else local */
	values[13] = CStringGetTextDatum(row->blocker_instance[0] ?
									 row->blocker_instance : scan->instance);
	nulls[13] = (row->state != 'w');
	values[14] = Int32GetDatum(row->blocker_pid);
	nulls[14] = (row->state != 'w' || row->blocker_pid == 0);
	tuplestore_putvalues(scan->rsinfo->setResult, scan->rsinfo->setDesc,
						 values, nulls);
}

PG_FUNCTION_INFO_V1(dlock_locks_internal);
Datum
dlock_locks_internal(PG_FUNCTION_ARGS)
{
	LocksScan	scan;
	uint64		missing;

	InitMaterializedSRF(fcinfo, 0);
	scan.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	scan.see_all = sees_all();
	scan.instance = lockext_instance_name();
	missing = shared_locks_scan(lock_row, &scan);
	if (missing > 0)
		ereport(WARNING,
				(errmsg("%llu dlock holds and waits are missing from dlock_locks",
						(unsigned long long) missing),
				 errdetail("lockext.max_tracked_locks (%d) was reached; locking goes on without them.",
						   lockext_max_tracked_locks),
				 errhint("Raise lockext.max_tracked_locks and reload the configuration.")));
	return (Datum) 0;
}

/* The lease keeper's pid, or NULL when it is not running. */
PG_FUNCTION_INFO_V1(dlock_keeper_pid);
Datum
dlock_keeper_pid(PG_FUNCTION_ARGS)
{
	int			pid = keeper_state_pid();

	(void) fcinfo;
	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(pid);
}

/* dlock_stats: one row per database with counters (dropped ones hidden). */
static void
stats_row(Oid dboid, const uint64 *c, TimestampTz reset_at, void *arg)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	Datum		values[DLOCK_NSTATS + 2];
	bool		nulls[DLOCK_NSTATS + 2] = {false};
	int			i;

	values[0] = ObjectIdGetDatum(dboid);
	for (i = 0; i < DLOCK_NSTATS; i++)
	{
		if (i == DLOCK_STAT_WAIT_US || i == DLOCK_STAT_WAIT_MAX_US)
			values[i + 1] = Float8GetDatum(c[i] / 1000.0);	/* ms */
		else
			values[i + 1] = Int64GetDatum((int64) c[i]);
	}
	values[DLOCK_NSTATS + 1] = TimestampTzGetDatum(reset_at);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

PG_FUNCTION_INFO_V1(dlock_stats_internal);
Datum
dlock_stats_internal(PG_FUNCTION_ARGS)
{
	InitMaterializedSRF(fcinfo, 0);
	shared_stats_scan(stats_row, fcinfo->resultinfo);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(dlock_stats_reset);
Datum
dlock_stats_reset(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	shared_stats_reset();
	PG_RETURN_VOID();
}

/*
 * dlock_redis_nodes: the Redis nodes as the lease keeper last saw them
 * (it pings each once a second); state "unknown" when it is not running.
 */
PG_FUNCTION_INFO_V1(dlock_redis_nodes_internal);
Datum
dlock_redis_nodes_internal(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	KeeperNodeStatus *nodes;
	bool		keeper_runs = keeper_state_pid() != 0;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	shared_area_require_preloaded("dlock_redis_nodes");
	n = keeper_state_nodes(&nodes);
	for (i = 0; i < n; i++)
	{
		KeeperNodeStatus *st = &nodes[i];
		Datum		values[7];
		bool		nulls[7] = {false};
		const char *state;

		state = !keeper_runs ? "unknown" :
			st->state == 'c' ? "connected" :
			st->state == 'o' ? "connecting" : "disconnected";
		values[0] = CStringGetTextDatum(st->node);
		values[1] = CStringGetTextDatum(state);
		values[2] = Float8GetDatum(st->rtt_us / 1000.0);
		nulls[2] = (st->rtt_us == 0);
		values[3] = Int64GetDatum((int64) st->errors);
		values[4] = CStringGetTextDatum(st->last_error);
		nulls[4] = (st->last_error_at == 0);
		values[5] = TimestampTzGetDatum(st->last_error_at);
		nulls[5] = (st->last_error_at == 0);
		values[6] = TimestampTzGetDatum(st->checked_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
