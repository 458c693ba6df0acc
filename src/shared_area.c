/*-------------------------------------------------------------------------
 *
 * shared_area.c
 *	  The DSA area that lockext's shared tables live in (the lock table,
 *	  shared_locks.c; the counters, shared_stats.c; the releases handed to
 *	  the keeper, keeper_state.c), and the LWLock tranche they share.
 *
 * Preloaded, a small control struct is reserved at server start
 * (shmem_request_hook / shmem_startup_hook, as pg_stat_statements does),
 * and the area itself is created by the first process that needs it, so
 * it grows with use.  The modules that use it reserve their own control
 * structs with their own hooks; this one knows none of them.
 *
 * Not preloaded, on PostgreSQL 17 and later, the control structs come from
 * the DSM registry instead (shared_area_named_struct), created by the
 * first backend that needs them: the lock table and the counters need no
 * process started with the server, so dlock_locks and dlock_stats work
 * for the advisory backend.  (Preloaded, the structs stay in the main
 * shared memory on every version: one layout for all, and the keeper
 * finds them at its start without a DSM segment.)  Before 17, without
 * preloading there is no area.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/dsa.h"
#include "utils/memutils.h"

#include "lockext_base.h"
#include "shared_area.h"

typedef struct SharedAreaCtl
{
	LWLock		lock;			/* protects handle */
	int			tranche;
	dsa_handle	handle;			/* DSM_HANDLE_INVALID until first use */
} SharedAreaCtl;

static SharedAreaCtl *ctl = NULL;
static dsa_area *area = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

static void
shared_area_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SharedAreaCtl)));
}

static void
ctl_init(void *ptr)
{
	SharedAreaCtl *c = ptr;

	c->tranche = LWLockNewTrancheId();
	LWLockInitialize(&c->lock, c->tranche);
	c->handle = DSM_HANDLE_INVALID;
}

static void
shared_area_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ctl = ShmemInitStruct("lockext area", MAXALIGN(sizeof(SharedAreaCtl)), &found);
	if (!found)
		ctl_init(ctl);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * This module's control struct: reserved at server start when preloaded,
 * else from the DSM registry (17 and later).  False when there is none.
 * May ERROR.
 */
static bool
have_ctl(void)
{
	if (ctl == NULL && !lockext_preloaded)
		ctl = lockext_named_struct("lockext area", sizeof(SharedAreaCtl),
								   ctl_init);
	return ctl != NULL;
}

/*
 * A module's control struct when lockext was not preloaded: from the DSM
 * registry on 17 and later, init() run by the first process that asks
 * (with the area's tranche known); NULL before 17, or when preloaded (the
 * module reserved its struct at server start).  May ERROR: call it only
 * where that is allowed, never from the release path.
 */
void *
shared_area_named_struct(const char *name, Size size, void (*init) (void *ptr))
{
	if (lockext_preloaded || !have_ctl())
		return NULL;
	return lockext_named_struct(name, size, init);
}

/*
 * From _PG_init while preloading, before the modules that use the area
 * install theirs: their startup hooks run after this one.
 */
void
shared_area_install_hooks(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = shared_area_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = shared_area_shmem_startup;
}

/* The tranche of every LWLock lockext keeps in shared memory. */
int
shared_area_tranche(void)
{
	return ctl->tranche;
}

/*
 * The area, attached (or created) if need be; NULL when there is none
 * (not preloaded, before 17).  May ERROR (out of memory, the DSM
 * registry): call it only where that is allowed.
 */
dsa_area *
shared_area_get(void)
{
	MemoryContext oldcxt;

	if (area != NULL)
		return area;
	if (!have_ctl())
		return NULL;
	LWLockRegisterTranche(ctl->tranche, "lockext");
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	LWLockAcquire(&ctl->lock, LW_EXCLUSIVE);
	if (ctl->handle == DSM_HANDLE_INVALID)
	{
		area = dsa_create(ctl->tranche);
		dsa_pin(area);
		ctl->handle = dsa_get_handle(area);
	}
	else
		area = dsa_attach(ctl->handle);
	/* kept for the life of the process, past resource owners */
	dsa_pin_mapping(area);
	LWLockRelease(&ctl->lock);
	MemoryContextSwitchTo(oldcxt);
	return area;
}

/* The area if this process is attached already.  Never ERRORs. */
dsa_area *
shared_area_attached(void)
{
	return area;
}

static pg_noreturn void
refuse(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s needs lockext in shared_preload_libraries", what),
			 errhint("Add lockext to shared_preload_libraries and restart the server.")));
}

/*
 * ERROR for a view or function that needs the shared area: preloading, or
 * (17 and later) the DSM registry.
 */
void
shared_area_require(const char *what)
{
	if (shared_area_get() == NULL)
		refuse(what);
}

/* ERROR for a view or function of the lease keeper's: preloading only. */
void
shared_area_require_preloaded(const char *what)
{
	if (!lockext_preloaded)
		refuse(what);
	shared_area_require(what);
}
