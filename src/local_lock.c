/*-------------------------------------------------------------------------
 *
 * local_lock.c
 *	  The advisory backend: dlocks in PostgreSQL's own lock manager.
 *
 * A key maps to an advisory-type LOCKTAG in a tag space of its own
 * (database, 64-bit key hash, LOCKEXT_TAG_SPACE), so waiters queue FIFO,
 * deadlocks are detected, and everything shows in pg_locks.  Session holds
 * use AccessExclusiveLock and transaction holds ExclusiveLock: both
 * conflict with everything, and the distinct modes let us tell which of
 * our holds pg_advisory_unlock_all() has taken away.  Fencing tokens come
 * from the extension's sequence, drawn after the grant.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "storage/lmgr.h"
#include "utils/backend_status.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "lockext.h"
#include "local_lock.h"
#include "shared_locks.h"

#define FENCE_SEQ_NAME "dlock_fence_seq"

/* A busy lock's report names the holder at most this often (us). */
#define HOLDER_LOOKUP_US 1000000

/* OID of the extension's fence sequence, looked up once per backend. */
static Oid	fence_seq_oid = InvalidOid;

static void
fence_seq_invalidate(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == fence_seq_oid)
		fence_seq_oid = InvalidOid;
}

void
local_lock_init(void)
{
	CacheRegisterRelcacheCallback(fence_seq_invalidate, (Datum) 0);
}

void
local_lock_set_tag(LOCKTAG *tag, uint64 hash)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (hash >> 32),
						 (uint32) hash, LOCKEXT_TAG_SPACE);
}

static inline LOCKMODE
scope_mode(DlockScope scope)
{
	return scope == DLOCK_SCOPE_SESSION ? LOCKEXT_SESSION_LOCKMODE :
		LOCKEXT_XACT_LOCKMODE;
}

/* The local lock's tag of entry (derived: entries are many). */
static inline LOCKTAG *
entry_tag(DlockEntry *entry)
{
	static LOCKTAG tag;

	local_lock_set_tag(&tag, entry->hash);
	return &tag;
}

/*
 * The pid of a backend (another one, with others_only) that holds key's
 * local lock, or 0: what pg_locks would show.  GetLockStatusData() copies
 * the whole lock table under every partition lock: dlock_holder() asks
 * for it, and lockext_report_busy() at most once a second.
 */
static int
holder_pid(uint64 hash, bool others_only)
{
	LOCKTAG		tag;
	LockData   *data;
	int			pid = 0;
	int			i;

	local_lock_set_tag(&tag, hash);
	data = GetLockStatusData();
	for (i = 0; i < data->nelements && pid == 0; i++)
	{
		LockInstanceData *inst = &data->locks[i];

		if (inst->holdMask != 0 &&
			(!others_only || inst->pid != MyProcPid) &&
			memcmp(&inst->locktag, &tag, sizeof(LOCKTAG)) == 0)
			pid = inst->pid;
	}
	pfree(data->locks);
	pfree(data);
	return pid;
}

/* The snapshot's entries. */
typedef struct SnapHolder
{
	LOCKTAG		tag;			/* the hash key */
	int			pid;
} SnapHolder;

typedef struct SnapWait
{
	int			pid;			/* the hash key */
	LOCKTAG		tag;
} SnapWait;

static void
take_snapshot(LocalLockSnapshot *snap)
{
	LockData   *data = GetLockStatusData();
	HASHCTL		hctl;
	int			i;

	hctl.keysize = sizeof(LOCKTAG);
	hctl.entrysize = sizeof(SnapHolder);
	hctl.hcxt = CurrentMemoryContext;
	snap->holders = hash_create("lockext lock holders", 64, &hctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	hctl.keysize = sizeof(int);
	hctl.entrysize = sizeof(SnapWait);
	snap->waits = hash_create("lockext lock waits", 64, &hctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (i = 0; i < data->nelements; i++)
	{
		LockInstanceData *inst = &data->locks[i];
		bool		found;

		if (inst->locktag.locktag_type != LOCKTAG_ADVISORY ||
			inst->locktag.locktag_field4 != LOCKEXT_TAG_SPACE)
			continue;
		if (inst->holdMask != 0)
		{
			SnapHolder *h = hash_search(snap->holders, &inst->locktag,
										HASH_ENTER, &found);

			if (!found)
				h->pid = inst->pid;
		}
		if (inst->waitLockMode != NoLock)
		{
			SnapWait   *w = hash_search(snap->waits, &inst->pid, HASH_ENTER,
										NULL);

			w->tag = inst->locktag;
		}
	}
	pfree(data->locks);
	pfree(data);
}

/*
 * For deadlock detection across instances (a WaitBlockerFn; snapshot is a
 * LocalLockSnapshot, zeroed before the first call): whom waiter_pid waits
 * for in the lock manager for key hash of database dboid, or 0 when it
 * does not wait there now.  All calls of one check read one copy of the
 * lock table, taken at the first: GetLockStatusData() takes every
 * partition lock.
 */
int
local_lock_blocker(void *snapshot, int waiter_pid, Oid dboid, uint64 hash)
{
	LocalLockSnapshot *snap = (LocalLockSnapshot *) snapshot;
	LOCKTAG		tag;
	SnapWait   *w;
	SnapHolder *h;

	if (snap->holders == NULL)
		take_snapshot(snap);
	SET_LOCKTAG_ADVISORY(tag, dboid, (uint32) (hash >> 32), (uint32) hash,
						 LOCKEXT_TAG_SPACE);
	w = hash_search(snap->waits, &waiter_pid, HASH_FIND, NULL);
	if (w == NULL || memcmp(&w->tag, &tag, sizeof(LOCKTAG)) != 0)
		return 0;				/* that wait is over */
	h = hash_search(snap->holders, &tag, HASH_FIND, NULL);
	return (h != NULL && h->pid != waiter_pid) ? h->pid : 0;
}

/*
 * 55P03 for a lock not acquired: "within N seconds" after a wait, without
 * it for a try-once call (timeout 0).  The detail names the holder: what
 * the backend saw (busy_detail: Redis's answer), else the local holder's
 * pid, looked up at most once a second (a copy of the whole lock table).
 * Shared by the SQL layer and the local queue's own timed-out wait.
 */
void
lockext_report_busy(const char *key, uint64 hash, int64 timeout_ms,
					const char *busy_detail)
{
	char	   *msg;
	char	   *detail;

	if (timeout_ms == 0)
		msg = psprintf("could not acquire lock \"%s\"", key);
	else
	{
		double		secs = timeout_ms / 1000.0;

		/* like errmsg_plural, but for non-integers: 1 second, 0.3 seconds */
		msg = psprintf(secs == 1.0 ?
					   "could not acquire lock \"%s\" within %g second" :
					   "could not acquire lock \"%s\" within %g seconds",
					   key, secs);
	}

	if (busy_detail != NULL)
		detail = psprintf(timeout_ms == 0 ?
						  "Another session holds the lock: %s." :
						  "Another session held the lock for the whole timeout: %s.",
						  busy_detail);
	else
	{
		static int64 last_lookup_us = 0;
		int64		now_us = lockext_now_us();
		int			pid = 0;

		/* a retry loop must not copy the lock table at every failure */
		if (last_lookup_us == 0 || now_us - last_lookup_us >= HOLDER_LOOKUP_US)
		{
			last_lookup_us = now_us;
			pid = holder_pid(hash, true);
		}

		if (pid != 0)
			detail = psprintf("Lock \"%s\" is held by process %d.", key, pid);
		else
			detail = pstrdup(timeout_ms == 0 ?
							 "Another session holds the lock." :
							 "Another session held the lock for the whole timeout.");
	}

	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg_internal("%s", msg),
			 errdetail_internal("%s", detail)));
}

/*
 * Wait in the lock manager for at most timeout_ms (-1: forever).  The bound
 * is lock_timeout at a GUC nest level of our own, as ri_triggers.c does;
 * its error becomes our 55P03.  Cancel, statement_timeout, termination
 * and the deadlock detector work as for any lock wait.
 */
static void
local_lock_wait(DlockEntry *entry, LOCKMODE mode, bool session,
				int64 timeout_ms)
{
	int			nestlevel = NewGUCNestLevel();
	MemoryContext oldcxt = CurrentMemoryContext;
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d",
			 (timeout_ms < 0 || timeout_ms > INT_MAX) ? 0 : (int) timeout_ms);
	(void) set_config_option("lock_timeout", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* dlock_locks shows the wait; the registry ends it */
	shared_locks_wait_start(entry, NULL, 0);
	PG_TRY();
	{
		(void) LockAcquire(entry_tag(entry), mode, session, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
		{
			FlushErrorState();
			lockext_report_busy(entry->key, entry->hash, timeout_ms, NULL);
		}
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Take the local lock of entry in scope's mode.  Shared with the Redis
 * backend, which queues locally first.
 */
bool
local_lock_acquire(DlockEntry *entry, DlockScope scope, int64 timeout_ms)
{
	LOCKMODE	mode = scope_mode(scope);
	bool		session = (scope == DLOCK_SCOPE_SESSION);
	bool		other_scope_held = session ? entry->xact_holds > 0 :
		entry->session_holds > 0;

	/*
	 * Holding the key in the other mode, we conflict with every waiter, so
	 * the lock manager grants at once (ProcSleep puts a holder ahead of the
	 * queue).  A no-wait attempt would fail on the queued waiters instead.
	 */
	if (other_scope_held)
	{
		(void) LockAcquire(entry_tag(entry), mode, session, false);
		return true;
	}

	/* Uncontended fast path: no GUC juggling. */
	if (LockAcquire(entry_tag(entry), mode, session, true) != LOCKACQUIRE_NOT_AVAIL)
		return true;
	if (timeout_ms == 0)
		return false;

	local_lock_wait(entry, mode, session, timeout_ms);
	return true;
}

void
local_lock_release(DlockEntry *entry, DlockScope scope, bool lockmgr_releases)
{
	/* at transaction end and at exit the lock manager drops it itself */
	if (lockmgr_releases)
		return;
	(void) LockRelease(entry_tag(entry), scope_mode(scope),
					   scope == DLOCK_SCOPE_SESSION);
}

bool
local_lock_still_held(DlockEntry *entry, DlockScope scope)
{
	return lockext_lock_held_by_me(entry_tag(entry), scope_mode(scope));
}

/*
 * The fence sequence's OID, InvalidOid when the extension is gone.
 * get_extension_schema() is not exported before PostgreSQL 16.
 */
static Oid
lookup_fence_seq(void)
{
	Oid			extoid = get_extension_oid("lockext", true);
	Oid			nspid = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;

	if (!OidIsValid(extoid))
		return InvalidOid;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		nspid = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(nspid))
		return InvalidOid;
	return get_relname_relid(FENCE_SEQ_NAME, nspid);
}

/*
 * Lock the fence sequence (as nextval() would) and make sure it still
 * exists: the lock also brings in the invalidations of a DROP EXTENSION
 * that committed while we waited for the dlock, which the lock manager's
 * grant of an advisory lock does not.
 */
static Oid
lock_fence_seq(void)
{
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		Oid			seq = OidIsValid(fence_seq_oid) ? fence_seq_oid :
			lookup_fence_seq();

		if (!OidIsValid(seq))
			break;
		LockRelationOid(seq, RowExclusiveLock);
		if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(seq)))
		{
			fence_seq_oid = seq;
			return seq;
		}
		/* dropped (maybe re-created): look it up afresh */
		UnlockRelationOid(seq, RowExclusiveLock);
		fence_seq_oid = InvalidOid;
	}
	return InvalidOid;
}

/*
 * One sequence (CACHE 1) for all keys: values strictly increase across
 * backends, hence for successive holders of any key.  A read-only
 * transaction (or a standby) cannot advance a sequence; its locks carry no
 * token, which is harmless since it cannot write what a token would fence.
 */
static void
advisory_draw_token(DlockEntry *entry)
{
	Oid			seq;

	if (XactReadOnly)
	{
		entry->has_token = false;
		return;
	}
	seq = lock_fence_seq();
	if (!OidIsValid(seq))
	{
		if (!OidIsValid(get_extension_oid("lockext", true)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension \"lockext\" was dropped while lock \"%s\" was being acquired",
							entry->key),
					 errdetail("The lock was given back: it cannot have a fencing token without the extension's sequence."),
					 errhint("Create the extension again with CREATE EXTENSION lockext.")));
		/* re-created, the sequence continues above every token issued */
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sequence \"%s\" of extension \"lockext\" does not exist",
						FENCE_SEQ_NAME),
				 errhint("Reinstall the extension with DROP EXTENSION lockext; CREATE EXTENSION lockext;.")));
	}
	entry->token = nextval_internal(seq, false);
	entry->has_token = true;
}

static bool
advisory_acquire(DlockEntry *entry, DlockScope scope, int64 timeout_ms,
				 int64 lease_ms pg_attribute_unused(),
				 char **busy_detail pg_attribute_unused())
{
	return local_lock_acquire(entry, scope, timeout_ms);
}

static void
advisory_release(DlockEntry *entry, DlockScope scope, bool lockmgr_releases,
				 bool is_abort pg_attribute_unused())
{
	local_lock_release(entry, scope, lockmgr_releases);
}

/* A local lock has no lease: held means nothing to renew. */
static bool
advisory_extend(DlockEntry *entry pg_attribute_unused(), int64 lease_ms pg_attribute_unused())
{
	return true;
}

/* The name other instances and dlock_holder() know this instance by. */
char *
lockext_instance_name(void)
{
	char		host[256];

	if (cluster_name && cluster_name[0] != '\0')
		return pstrdup(cluster_name);
	if (gethostname(host, sizeof(host)) != 0)
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	return psprintf("%s:%d", host, PostPortNumber);
}

static bool
advisory_holder(const char *key pg_attribute_unused(),
				int keylen pg_attribute_unused(), uint64 hash,
				DlockHolderInfo *info)
{
	int			pid = holder_pid(hash, false);
	int			i;
	int			nbackends;

	if (pid == 0)
		return false;

	memset(info, 0, sizeof(*info));
	info->instance = lockext_instance_name();
	info->pid = pid;
	info->lease_left_ms = -1;

	nbackends = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= nbackends; i++)
	{
		LocalPgBackendStatus *local = lockext_local_beentry(i);
		PgBackendStatus *be = &local->backendStatus;

		if (be->st_procpid != pid)
			continue;
		if (OidIsValid(be->st_databaseid))
			info->database = get_database_name(be->st_databaseid);
		info->application_name = pstrdup(be->st_appname);
		break;
	}
	return true;
}

const DlockBackend advisory_backend = {
	.name = "advisory",
	.acquire = advisory_acquire,
	.release = advisory_release,
	.still_held = local_lock_still_held,
	.draw_token = advisory_draw_token,
	.extend = advisory_extend,
	.holder = advisory_holder,
};
