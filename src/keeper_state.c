/*-------------------------------------------------------------------------
 *
 * keeper_state.c
 *	  What the lease keeper and the backends share besides the lock table:
 *	  whether the keeper runs and when it next wakes, the state of each
 *	  Redis node as the keeper sees it (dlock_redis_nodes), and the node
 *	  sets the keeper was configured with.  (Releases a backend could not
 *	  finish reach the keeper through their rows in the lock table.)
 *
 * A backend publishing a lease that falls due before the keeper's planned
 * wake-up sets the keeper's latch; otherwise the keeper sleeps until the
 * next renewal falls due.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "lockext_base.h"
#include "keeper_state.h"
#include "shared_area.h"

/* Hand-overs waiting for the keeper beyond this many are refused. */
#define MAX_HANDOVERS 10000
/* How many node sets the keeper remembers having been configured with. */
#define MAX_ADOPTED 64

typedef struct KeeperShared
{
	pg_atomic_uint32 pid;		/* 0: the keeper is not running */
	pg_atomic_uint32 procno;	/* its PGPROC, for its latch */
	pg_atomic_uint64 wake_at;	/* TimestampTz of its planned wake-up */

	LWLock		lock;			/* protects what follows */
	int			nnodes;
	KeeperNodeStatus nodes[LOCKEXT_MAX_NODE_STATUS];
	uint64		adopted[MAX_ADOPTED];	/* node sets it renewed on, a ring */
	int			nadopted;
} KeeperShared;

static KeeperShared *ks = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

static void
keeper_state_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(KeeperShared)));
}

static void
keeper_state_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ks = ShmemInitStruct("lockext keeper", MAXALIGN(sizeof(KeeperShared)), &found);
	if (!found)
	{
		memset(ks, 0, sizeof(*ks));
		pg_atomic_init_u32(&ks->pid, 0);
		pg_atomic_init_u32(&ks->procno, 0);
		pg_atomic_init_u64(&ks->wake_at, 0);
		LWLockInitialize(&ks->lock, shared_area_tranche());
	}
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init while preloading: reserve the control struct. */
void
keeper_state_install_hooks(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = keeper_state_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = keeper_state_shmem_startup;
}

/* The keeper starts (running) or exits. */
void
keeper_state_running(bool running)
{
	if (ks == NULL)
		return;
	if (running)
		pg_atomic_write_u32(&ks->procno, LOCKEXT_MY_PROCNO);
	pg_atomic_write_u32(&ks->pid, running ? MyProcPid : 0);
}

int
keeper_state_pid(void)
{
	return ks ? (int) pg_atomic_read_u32(&ks->pid) : 0;
}

/* The keeper plans to wake at wake_at at the latest. */
void
keeper_state_set_wake(TimestampTz wake_at)
{
	if (ks != NULL)
		pg_atomic_write_u64(&ks->wake_at, (uint64) wake_at);
}

/*
 * A lease that needs the keeper by due was published: wake the keeper if
 * it plans to sleep past that.  Never ERRORs.
 */
void
keeper_state_poke(TimestampTz due)
{
	if (ks == NULL || pg_atomic_read_u32(&ks->pid) == 0)
		return;
	if ((uint64) due < pg_atomic_read_u64(&ks->wake_at))
	{
		pg_atomic_write_u64(&ks->wake_at, (uint64) due);
		SetLatch(&ProcGlobal->allProcs[pg_atomic_read_u32(&ks->procno)].procLatch);
	}
}

/* The keeper: what it sees of each node now. */
void
keeper_state_publish_nodes(const KeeperNodeStatus *nodes, int n)
{
	if (ks == NULL)
		return;
	n = Min(n, LOCKEXT_MAX_NODE_STATUS);
	LWLockAcquire(&ks->lock, LW_EXCLUSIVE);
	memcpy(ks->nodes, nodes, n * sizeof(KeeperNodeStatus));
	ks->nnodes = n;
	LWLockRelease(&ks->lock);
}

/* A palloc'd copy of the nodes' state as the keeper last saw it. */
int
keeper_state_nodes(KeeperNodeStatus **nodes)
{
	int			n;

	*nodes = palloc(LOCKEXT_MAX_NODE_STATUS * sizeof(KeeperNodeStatus));
	if (ks == NULL)
		return 0;
	LWLockAcquire(&ks->lock, LW_SHARED);
	n = ks->nnodes;
	memcpy(*nodes, ks->nodes, n * sizeof(KeeperNodeStatus));
	LWLockRelease(&ks->lock);
	return n;
}

/* The keeper: it renews on the node set set_fp, the configured one. */
void
keeper_state_adopt(uint64 set_fp)
{
	if (ks == NULL || keeper_state_adopted(set_fp))
		return;
	LWLockAcquire(&ks->lock, LW_EXCLUSIVE);
	ks->adopted[ks->nadopted++ % MAX_ADOPTED] = set_fp;
	LWLockRelease(&ks->lock);
}

/* Has the keeper (this one or an earlier one) been configured with set_fp? */
bool
keeper_state_adopted(uint64 set_fp)
{
	bool		found = false;
	int			i;

	if (ks == NULL)
		return false;
	LWLockAcquire(&ks->lock, LW_SHARED);
	for (i = 0; i < Min(ks->nadopted, MAX_ADOPTED) && !found; i++)
		found = (ks->adopted[i] == set_fp);
	LWLockRelease(&ks->lock);
	return found;
}
