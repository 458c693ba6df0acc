/*-------------------------------------------------------------------------
 *
 * wait_events.c
 *	  The wait events lockext reports in pg_stat_activity: named custom
 *	  events (wait_event_type "Extension", wait_event "DlockRedisWait" and
 *	  so on) on PostgreSQL 17 and later, plain "Extension" before.
 *
 * A name's id is allocated once per cluster in shared memory and looked
 * up once per process (WaitEventExtensionNew, which takes a lock and may
 * ERROR when the custom events run out).  So each process resolves the
 * names where an ERROR is allowed (lockext_wait_event(), or
 * lockext_wait_events_prepare() at the start of a Redis acquire), and the
 * waits that may run where it is not (the Redis I/O of the abort path)
 * take lockext_wait_event_cached(), which only reads what is resolved.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/wait_event.h"

#include "lockext_base.h"

/* Indexed by LockextWaitEvent. */
static const char *const wait_event_names[LOCKEXT_NWAIT_EVENTS] = {
	"DlockKeeperMain",
	"DlockRedisWait",
	"DlockRedisIO",
};

static uint32 wait_event_ids[LOCKEXT_NWAIT_EVENTS];
static bool wait_events_resolved = false;

/* Resolve every name in this process, once.  May ERROR. */
void
lockext_wait_events_prepare(void)
{
	uint32		ids[LOCKEXT_NWAIT_EVENTS];
	int			i;

	if (wait_events_resolved)
		return;
	for (i = 0; i < LOCKEXT_NWAIT_EVENTS; i++)
		ids[i] = lockext_wait_event_new(wait_event_names[i]);
	memcpy(wait_event_ids, ids, sizeof(ids));
	wait_events_resolved = true;
}

/* The wait event for ev, resolved if need be.  May ERROR. */
uint32
lockext_wait_event(LockextWaitEvent ev)
{
	lockext_wait_events_prepare();
	return wait_event_ids[ev];
}

/* The wait event for ev if resolved, else plain "Extension".  Never ERRORs. */
uint32
lockext_wait_event_cached(LockextWaitEvent ev)
{
	return wait_events_resolved ? wait_event_ids[ev] : PG_WAIT_EXTENSION;
}
