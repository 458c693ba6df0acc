/*-------------------------------------------------------------------------
 *
 * sql_api.c
 *	  The SQL-callable functions of lockext and the module's entry point.
 *
 * Every function validates its arguments here (NULL key 22004; empty or
 * over-long key, bad timeout or lease 22023) and then works through the
 * registry.  The functions are declared non-strict so a NULL key is an
 * error, not a silent NULL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "lockext.h"
#include "keeper.h"
#include "keeper_state.h"
#include "local_lock.h"
#include "registry.h"
#include "shared_area.h"
#include "shared_locks.h"
#include "shared_stats.h"
#include "views.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Nesting of statements and executor runs in this backend, as
 * pg_stat_statements counts it, and the query context of the outermost
 * executor run: a function whose call expression lives there was called by
 * the top-level statement itself (not by a function or procedure it runs).
 */
static int	exec_nested_level = 0;
static MemoryContext toplevel_query_cxt = NULL;

static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

static void
lockext_executor_run(LOCKEXT_EXECUTOR_RUN_PARAMS)
{
	MemoryContext saved_cxt = toplevel_query_cxt;

	if (exec_nested_level == 0)
		toplevel_query_cxt = queryDesc->estate->es_query_cxt;
	exec_nested_level++;
	PG_TRY();
	{
		if (prev_executor_run)
			prev_executor_run(LOCKEXT_EXECUTOR_RUN_ARGS);
		else
			standard_ExecutorRun(LOCKEXT_EXECUTOR_RUN_ARGS);
	}
	PG_FINALLY();
	{
		exec_nested_level--;
		toplevel_query_cxt = saved_cxt;
	}
	PG_END_TRY();
}

static void
lockext_executor_finish(QueryDesc *queryDesc)
{
	MemoryContext saved_cxt = toplevel_query_cxt;

	if (exec_nested_level == 0)
		toplevel_query_cxt = queryDesc->estate->es_query_cxt;
	exec_nested_level++;
	PG_TRY();
	{
		if (prev_executor_finish)
			prev_executor_finish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		exec_nested_level--;
		toplevel_query_cxt = saved_cxt;
	}
	PG_END_TRY();
}

/* Utility statements nest too: CALL, DO, EXPLAIN ANALYZE run queries. */
static void
lockext_process_utility(PlannedStmt *pstmt, const char *queryString,
						bool readOnlyTree, ProcessUtilityContext context,
						ParamListInfo params, QueryEnvironment *queryEnv,
						DestReceiver *dest, QueryCompletion *qc)
{
	MemoryContext saved_cxt = toplevel_query_cxt;
	bool		saved_alter_system = lockext_in_alter_system;
	volatile Oid dropped_db = InvalidOid;

	if (exec_nested_level == 0)
		toplevel_query_cxt = NULL;
	if (IsA(pstmt->utilityStmt, AlterSystemStmt))
		lockext_in_alter_system = true;
	if (IsA(pstmt->utilityStmt, DropdbStmt))
		dropped_db = get_database_oid(((DropdbStmt *) pstmt->utilityStmt)->dbname,
									  true);
	exec_nested_level++;
	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		exec_nested_level--;
		toplevel_query_cxt = saved_cxt;
		lockext_in_alter_system = saved_alter_system;
	}
	PG_END_TRY();
	/* COPY FROM into a foreign table; DISCARD ALL took our session locks */
	registry_statement_end();
	/* dlock_stats must not hand its counters to a later database's OID */
	if (OidIsValid(dropped_db))
		shared_stats_forget_db(dropped_db);
}

/*
 * Only GUCs and hooks here: this may run in the postmaster (preloading),
 * whose hook variables its children inherit.
 */
void
_PG_init(void)
{
	lockext_define_gucs();
	registry_install_hooks();
	/* shared state and the lease keeper only when loaded at server start */
	if (process_shared_preload_libraries_in_progress)
	{
		shared_area_install_hooks();
		shared_locks_install_hooks();
		shared_stats_install_hooks();
		keeper_state_install_hooks();
		keeper_register();
	}

	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = lockext_executor_run;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = lockext_executor_finish;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = lockext_process_utility;
}

/* A key as text, validated; *keylen receives its length. */
static char *
key_from_text(text *t, int *keylen)
{
	char	   *key = text_to_cstring(t);

	*keylen = strlen(key);
	if (*keylen == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lock key must not be empty")));
	if (*keylen > LOCKEXT_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lock key is too long"),
				 errdetail("The key is %d bytes long; the limit is %d bytes.",
						   *keylen, LOCKEXT_MAX_KEY_BYTES)));
	return key;
}

/* Argument 0 as a validated key; *keylen receives its length. */
static char *
get_key_arg(FunctionCallInfo fcinfo, int *keylen)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("lock key must not be null")));
	return key_from_text(PG_GETARG_TEXT_PP(0), keylen);
}

/* Timeout in ms: NULL the GUC, 0 try once, -1 forever (Infinity). */
static int64
get_timeout_arg(FunctionCallInfo fcinfo, int argno)
{
	float8		secs;
	float8		ms;

	if (PG_ARGISNULL(argno))
		return lockext_wait_timeout_ms;
	secs = PG_GETARG_FLOAT8(argno);
	if (isnan(secs) || secs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid lock timeout: %g", secs),
				 errdetail("The timeout must be 0 (try once), a positive number of seconds, or Infinity (wait forever).")));
	ms = ceil(secs * 1000.0);
	if (isinf(secs) || ms > INT_MAX)
		return -1;
	return (int64) ms;
}

/* Lease in ms: NULL the GUC; must be positive and finite. */
static int64
get_lease_arg(FunctionCallInfo fcinfo, int argno)
{
	float8		secs;
	float8		ms;

	if (PG_ARGISNULL(argno))
		return lockext_lease_ms;
	secs = PG_GETARG_FLOAT8(argno);
	if (isnan(secs) || secs <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid lock lease: %g", secs),
				 errdetail("The lease must be a positive number of seconds.")));
	/* a shorter lease would end within the clock-drift allowance */
	if (secs * 1000.0 < lockext_min_lease_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid lock lease: %g", secs),
				 errdetail("The lease must be at least %g seconds.",
						   lockext_min_lease_ms / 1000.0)));
	ms = ceil(secs * 1000.0);
	if (ms > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid lock lease: %g", secs),
				 errdetail("The lease must not exceed %d seconds.", INT_MAX / 1000)));
	return (int64) ms;
}

/*
 * A transaction-scoped lock taken by the top-level statement outside a
 * transaction block ends with that statement: warn, as SET LOCAL does.
 * Called from a function or procedure the lock covers the rest of its
 * work, so those calls (their expressions live elsewhere) stay quiet.
 */
static void
warn_if_released_at_once(FunctionCallInfo fcinfo, const char *funcname)
{
	if (toplevel_query_cxt == NULL || fcinfo->flinfo == NULL ||
		fcinfo->flinfo->fn_mcxt != toplevel_query_cxt || IsTransactionBlock())
		return;
	/* 25P01, as WarnNoTransactionBlock() for SET LOCAL */
	ereport(WARNING,
			(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
			 errmsg("%s can only be used in transaction blocks", funcname),
			 errdetail("The lock was released at once, at the end of the statement."),
			 errhint("Call it inside BEGIN ... COMMIT, or use the session-scoped variant.")));
}

static Datum
acquire_common(FunctionCallInfo fcinfo, DlockScope scope, bool try_only)
{
	int			keylen;
	char	   *key = get_key_arg(fcinfo, &keylen);
	int64		timeout_ms = try_only ? 0 : get_timeout_arg(fcinfo, 1);
	int64		lease_ms = get_lease_arg(fcinfo, try_only ? 1 : 2);
	DlockEntry *entry;
	char	   *busy = NULL;

	/*
	 * 55000, as PostgreSQL uses for a feature its configuration turned off
	 * (e.g. track_commit_timestamp): nothing is wrong with the call.
	 */
	if (scope == DLOCK_SCOPE_SESSION && !lockext_session_locks)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("session-scoped locks are disabled"),
				 errdetail("lockext.session_locks is off, as it should be where a connection pooler in transaction mode shares server sessions among clients."),
				 errhint("Use dlock_acquire() or dlock_try_acquire() inside a transaction: transaction-scoped locks end with the transaction.")));

	entry = registry_acquire(key, keylen, scope, timeout_ms, lease_ms, &busy);
	if (entry != NULL && scope == DLOCK_SCOPE_XACT)
		warn_if_released_at_once(fcinfo, try_only ?
								 "dlock_try_acquire()" : "dlock_acquire()");
	if (try_only)
		PG_RETURN_BOOL(entry != NULL);
	if (entry == NULL)
		lockext_report_busy(key, registry_hash_key(key, keylen), timeout_ms,
							busy);
	if (!entry->has_token)
		PG_RETURN_NULL();
	PG_RETURN_INT64(entry->token);
}

PG_FUNCTION_INFO_V1(dlock_acquire);
Datum
dlock_acquire(PG_FUNCTION_ARGS)
{
	return acquire_common(fcinfo, DLOCK_SCOPE_XACT, false);
}

PG_FUNCTION_INFO_V1(dlock_try_acquire);
Datum
dlock_try_acquire(PG_FUNCTION_ARGS)
{
	return acquire_common(fcinfo, DLOCK_SCOPE_XACT, true);
}

/* One key of an array, and where it stood. */
typedef struct ArrayKey
{
	char	   *key;
	int			len;
	int			pos;
} ArrayKey;

/* The canonical order of keys: by bytes, a prefix first. */
static int
compare_keys(const void *a, const void *b)
{
	const ArrayKey *ka = (const ArrayKey *) a;
	const ArrayKey *kb = (const ArrayKey *) b;
	int			c = memcmp(ka->key, kb->key, Min(ka->len, kb->len));

	if (c != 0)
		return c;
	return (ka->len > kb->len) - (ka->len < kb->len);
}

/*
 * dlock_acquire_all / dlock_try_acquire_all: every key of the array, in
 * transaction scope, all or none.  The whole array is validated first;
 * duplicates count once; the keys are taken in the canonical order.
 */
static Datum
acquire_all_common(FunctionCallInfo fcinfo, bool try_only)
{
	int64		timeout_ms = try_only ? 0 : get_timeout_arg(fcinfo, 1);
	int64		lease_ms = get_lease_arg(fcinfo, try_only ? 1 : 2);
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	ArrayKey   *sorted;
	char	  **keys;
	int		   *lens;
	int		   *distinct_of;
	DlockEntry **entries;
	int			n = 0;
	int			failed;
	char	   *busy = NULL;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("lock keys must not be null")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &elem_nulls, &nelems);
	if (nelems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lock keys must not be an empty array")));
	sorted = palloc(nelems * sizeof(ArrayKey));
	for (i = 0; i < nelems; i++)
	{
		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("lock key must not be null"),
					 errdetail("Element %d of the array is null.", i + 1)));
		sorted[i].key = key_from_text(DatumGetTextPP(elems[i]), &sorted[i].len);
		sorted[i].pos = i;
	}
	qsort(sorted, nelems, sizeof(ArrayKey), compare_keys);

	keys = palloc(nelems * sizeof(char *));
	lens = palloc(nelems * sizeof(int));
	distinct_of = palloc(nelems * sizeof(int));
	for (i = 0; i < nelems; i++)
	{
		if (n == 0 || compare_keys(&sorted[i], &sorted[i - 1]) != 0)
		{
			keys[n] = sorted[i].key;
			lens[n++] = sorted[i].len;
		}
		distinct_of[sorted[i].pos] = n - 1;
	}

	entries = palloc(n * sizeof(DlockEntry *));
	failed = registry_acquire_many(keys, lens, n, timeout_ms, lease_ms,
								   entries, &busy);
	if (failed < 0)
		warn_if_released_at_once(fcinfo, try_only ?
								 "dlock_try_acquire_all()" : "dlock_acquire_all()");
	if (try_only)
		PG_RETURN_BOOL(failed < 0);
	if (failed >= 0)
		lockext_report_busy(keys[failed],
							registry_hash_key(keys[failed], lens[failed]),
							timeout_ms, busy);

	/* the tokens, in the order of the input array */
	{
		Datum	   *tokens = palloc(nelems * sizeof(Datum));
		bool	   *nulls = palloc(nelems * sizeof(bool));
		int			dims[1] = {nelems};
		int			lbs[1] = {1};

		for (i = 0; i < nelems; i++)
		{
			DlockEntry *entry = entries[distinct_of[i]];

			tokens[i] = Int64GetDatum(entry->token);
			nulls[i] = !entry->has_token;
		}
		PG_RETURN_ARRAYTYPE_P(construct_md_array(tokens, nulls, 1, dims, lbs,
												 INT8OID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	}
}

PG_FUNCTION_INFO_V1(dlock_acquire_all);
Datum
dlock_acquire_all(PG_FUNCTION_ARGS)
{
	return acquire_all_common(fcinfo, false);
}

PG_FUNCTION_INFO_V1(dlock_try_acquire_all);
Datum
dlock_try_acquire_all(PG_FUNCTION_ARGS)
{
	return acquire_all_common(fcinfo, true);
}

PG_FUNCTION_INFO_V1(dlock_acquire_session);
Datum
dlock_acquire_session(PG_FUNCTION_ARGS)
{
	return acquire_common(fcinfo, DLOCK_SCOPE_SESSION, false);
}

PG_FUNCTION_INFO_V1(dlock_try_acquire_session);
Datum
dlock_try_acquire_session(PG_FUNCTION_ARGS)
{
	return acquire_common(fcinfo, DLOCK_SCOPE_SESSION, true);
}

/*
 * Did the lease keeper find this hold lost?  *lease_end, when asked for,
 * receives the lease end the keeper renewed it to (else the backend's).
 */
static bool
hold_lost(DlockEntry *entry, DlockScope scope, TimestampTz *lease_end)
{
	TimestampTz end = entry->lease_expires_at;
	bool		lost = false;

	if (!shared_locks_hold_state(entry, scope, &end, NULL, &lost))
		end = entry->lease_expires_at;
	if (lease_end)
		*lease_end = end;
	return lost;
}

static void
report_lost(const char *key)
{
	ereport(WARNING,
			(errmsg("lock \"%s\" was lost", key),
			 errdetail("The lease keeper found the lock no longer held in Redis: it was deleted, flushed or taken over.")));
}

PG_FUNCTION_INFO_V1(dlock_release);
Datum
dlock_release(PG_FUNCTION_ARGS)
{
	int			keylen;
	char	   *key = get_key_arg(fcinfo, &keylen);
	DlockEntry *entry = registry_lookup(key, keylen);

	if (entry != NULL && entry->session_holds > 0 &&
		hold_lost(entry, DLOCK_SCOPE_SESSION, NULL))
	{
		/* the bookkeeping goes; the caller learns the lock was not held */
		(void) registry_release_session(entry);
		report_lost(key);
		PG_RETURN_BOOL(false);
	}
	if (entry != NULL && registry_release_session(entry))
		PG_RETURN_BOOL(true);

	if (entry != NULL && entry->xact_holds > 0)
		ereport(WARNING,
				(errmsg("lock \"%s\" is not held in session scope", key),
				 errhint("Transaction-scoped locks are released when the transaction ends.")));
	else
		ereport(WARNING,
				(errmsg("lock \"%s\" is not held", key)));
	PG_RETURN_BOOL(false);
}

PG_FUNCTION_INFO_V1(dlock_release_all);
Datum
dlock_release_all(PG_FUNCTION_ARGS)
{
	(void) fcinfo;				/* no arguments */
	PG_RETURN_INT32(registry_release_all_session());
}

PG_FUNCTION_INFO_V1(dlock_extend);
Datum
dlock_extend(PG_FUNCTION_ARGS)
{
	int			keylen;
	char	   *key = get_key_arg(fcinfo, &keylen);
	int64		lease_ms = get_lease_arg(fcinfo, 1);
	DlockEntry *entry = registry_lookup(key, keylen);

	if (entry == NULL)
	{
		ereport(WARNING,
				(errmsg("lock \"%s\" is not held", key)));
		PG_RETURN_BOOL(false);
	}
	if (hold_lost(entry, entry->session_holds > 0 ? DLOCK_SCOPE_SESSION :
				  DLOCK_SCOPE_XACT, NULL))
	{
		report_lost(key);
		PG_RETURN_BOOL(false);
	}
	if (!entry->backend->extend(entry, lease_ms))
		PG_RETURN_BOOL(false);
	registry_republish(entry);	/* the new lease end */
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(dlock_token);
Datum
dlock_token(PG_FUNCTION_ARGS)
{
	int			keylen;
	char	   *key = get_key_arg(fcinfo, &keylen);
	DlockEntry *entry = registry_lookup(key, keylen);

	if (entry == NULL || !entry->has_token)
		PG_RETURN_NULL();
	PG_RETURN_INT64(entry->token);
}

static void
held_rows(DlockEntry *entry, void *arg)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	int			scope;

	for (scope = 0; scope < 2; scope++)
	{
		int			holds = scope == 0 ? entry->xact_holds : entry->session_holds;
		Datum		values[8];
		bool		nulls[8] = {false};
		TimestampTz lease_end;
		bool		lost;

		if (holds == 0)
			continue;
		lost = hold_lost(entry, scope == 0 ? DLOCK_SCOPE_XACT :
						 DLOCK_SCOPE_SESSION, &lease_end);
		values[0] = CStringGetTextDatum(entry->key);
		values[1] = CStringGetTextDatum(scope == 0 ? "transaction" : "session");
		values[2] = CStringGetTextDatum(entry->backend->name);
		values[3] = Int64GetDatum(entry->token);
		nulls[3] = !entry->has_token;
		values[4] = Int32GetDatum(holds);
		values[5] = TimestampTzGetDatum(entry->acquired_at);
		values[6] = TimestampTzGetDatum(lease_end);
		nulls[6] = (lease_end == 0);
		/* 1.1 adds the state column; a 1.0 install has seven */
		values[7] = CStringGetTextDatum(lost ? "lost" : "held");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

PG_FUNCTION_INFO_V1(dlock_held);
Datum
dlock_held(PG_FUNCTION_ARGS)
{
	InitMaterializedSRF(fcinfo, 0);
	registry_foreach(held_rows, fcinfo->resultinfo);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(dlock_holder);
Datum
dlock_holder(PG_FUNCTION_ARGS)
{
	int			keylen;
	char	   *key = get_key_arg(fcinfo, &keylen);
	DlockEntry *entry = registry_lookup(key, keylen);
	const DlockBackend *backend = entry ? entry->backend : lockext_current_backend();
	DlockHolderInfo info;
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (!backend->holder(key, keylen, registry_hash_key(key, keylen), &info))
		PG_RETURN_NULL();
	/* the lock manager keeps no grant time: we know only our own */
	if (info.since == 0 && entry != NULL && info.pid == MyProcPid)
		info.since = entry->acquired_at;

	/* held, and for how long, is anyone's to know; by whom is not */
	if (!views_may_see_holder(&info))
	{
		info.instance = NULL;
		info.pid = 0;
		info.database = NULL;
		info.application_name = NULL;
	}

	values[0] = info.instance ? CStringGetTextDatum(info.instance) : (Datum) 0;
	nulls[0] = (info.instance == NULL);
	values[1] = Int32GetDatum(info.pid);
	nulls[1] = (info.pid == 0);
	values[2] = info.database ? CStringGetTextDatum(info.database) : (Datum) 0;
	nulls[2] = (info.database == NULL);
	values[3] = info.application_name ?
		CStringGetTextDatum(info.application_name) : (Datum) 0;
	nulls[3] = (info.application_name == NULL);
	values[4] = TimestampTzGetDatum(info.since);
	nulls[4] = (info.since == 0);
	if (info.lease_left_ms >= 0)
	{
		Interval   *iv = palloc0(sizeof(Interval));

		iv->time = info.lease_left_ms * INT64CONST(1000);
		values[5] = IntervalPGetDatum(iv);
	}
	else
		nulls[5] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
