/*-------------------------------------------------------------------------
 *
 * shared_area.c
 *	  The DSA area that lockext's shared tables live in (the lock table,
 *	  shared_locks.c; the counters, shared_stats.c; the releases handed to
 *	  the keeper, keeper_state.c), and the LWLock tranche they share.
 *
 * Needs shared_preload_libraries: a small control struct is reserved at
 * server start (shmem_request_hook / shmem_startup_hook, as
 * pg_stat_statements does), and the area itself is created by the first
 * process that needs it, so it grows with use.  The modules that use it
 * reserve their own control structs with their own hooks; this one knows
 * none of them.
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
shared_area_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ctl = ShmemInitStruct("lockext area", MAXALIGN(sizeof(SharedAreaCtl)), &found);
	if (!found)
	{
		ctl->tranche = LWLockNewTrancheId();
		LWLockInitialize(&ctl->lock, ctl->tranche);
		ctl->handle = DSM_HANDLE_INVALID;
	}
	LWLockRelease(AddinShmemInitLock);
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
 * The area, attached (or created) if need be; NULL without preloading.
 * May ERROR (out of memory): call it only where that is allowed.
 */
dsa_area *
shared_area_get(void)
{
	MemoryContext oldcxt;

	if (area != NULL)
		return area;
	if (ctl == NULL)
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

/* ERROR for a view or function that needs lockext preloaded. */
void
shared_area_require(const char *what)
{
	if (shared_area_get() == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs lockext in shared_preload_libraries", what),
				 errhint("Add lockext to shared_preload_libraries and restart the server.")));
}
