/*-------------------------------------------------------------------------
 *
 * views.c
 *	  SQL functions behind lockext's views, reading shared state:
 *	  dlock_locks (every hold and wait on this instance, by key text), and
 *	  whether the lease keeper runs.
 *
 * Like pg_stat_activity with its query text, other roles' rows are shown
 * only to superusers and members of pg_read_all_stats.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid_d.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "lockext.h"

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
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);

		if (local->backendStatus.st_procpid == pid)
			return pstrdup(local->backendStatus.st_appname);
	}
	return NULL;
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

	if (!scan->see_all && !has_privs_of_role(GetUserId(), row->userid))
		return;
	db = get_database_name(row->dboid);
	user = GetUserNameFromId(row->userid, true);
	app = backend_appname(row->key.pid);

	values[0] = CStringGetTextDatum(key);
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
	values[11] = TimestampTzGetDatum(row->lease_expires_at);
	nulls[11] = (row->lease_expires_at == 0);
	values[12] = Int64GetDatum(row->renewals);	/* by the lease keeper */
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
	scan.see_all = superuser() ||
		has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
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
	int			pid = shared_locks_keeper_pid();

	(void) fcinfo;
	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(pid);
}
