/*-------------------------------------------------------------------------
 *
 * pg_compat.h
 *	  What differs between the PostgreSQL major versions lockext builds
 *	  against (15 to 18): every PG_VERSION_NUM test of the source is here,
 *	  each behind a name the code uses on every version.
 *
 * Included by lockext_base.h (so by every file), after postgres.h; the declarations a macro needs
 * come from the headers its users include already.  Built and tested:
 * 15 (Debian 12), 17 (trixie), 18 (sid); 16 is compiled only (see
 * README, "Supported versions").
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_COMPAT_H
#define PG_COMPAT_H

/*
 * 18 replaced the pg_attribute_noreturn() suffix by a pg_noreturn prefix
 * (C11 _Noreturn); before, the GCC attribute works as a prefix too.
 */
#if PG_VERSION_NUM < 180000
#define pg_noreturn pg_attribute_noreturn()
#endif

/* 18: the ExecutorRun hook lost execute_once. */
#if PG_VERSION_NUM >= 180000
#define LOCKEXT_EXECUTOR_RUN_PARAMS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count
#define LOCKEXT_EXECUTOR_RUN_ARGS queryDesc, direction, count
#else
#define LOCKEXT_EXECUTOR_RUN_PARAMS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once
#define LOCKEXT_EXECUTOR_RUN_ARGS queryDesc, direction, count, execute_once
#endif

/*
 * The i-th (1-based) entry of the backend activity snapshot: renamed in
 * 16, the index still 1-based.
 */
#if PG_VERSION_NUM >= 160000
#define lockext_local_beentry(i) pgstat_get_local_beentry_by_index(i)
#else
#define lockext_local_beentry(i) pgstat_fetch_stat_local_beentry(i)
#endif

/* Our PGPROC's index in ProcGlobal->allProcs: 17 dropped PGPROC.pgprocno. */
#if PG_VERSION_NUM >= 170000
#define LOCKEXT_MY_PROCNO ((uint32) MyProcNumber)
#else
#define LOCKEXT_MY_PROCNO ((uint32) MyProc->pgprocno)
#endif

/* 17 added "orstronger": we ask for exactly the mode, as before. */
#if PG_VERSION_NUM >= 170000
#define lockext_lock_held_by_me(tag, mode) LockHeldByMe(tag, mode, false)
#else
#define lockext_lock_held_by_me(tag, mode) LockHeldByMe(tag, mode)
#endif

/*
 * A wait event set in TopMemoryContext, freed by us alone.  17 takes a
 * ResourceOwner instead of the context: NULL, since CurrentResourceOwner
 * would ERROR inside the release callbacks (a PANIC after commit).
 */
#if PG_VERSION_NUM >= 170000
#define lockext_create_wait_event_set(nevents) CreateWaitEventSet(NULL, nevents)
#else
#define lockext_create_wait_event_set(nevents) \
	CreateWaitEventSet(TopMemoryContext, nevents)
#endif

/*
 * dshash_parameters of a table with fixed-size keys compared bytewise.
 * 17 added copy_function before tranche_id: positional initializers left
 * it NULL, and the first insert called it.
 */
#if PG_VERSION_NUM >= 170000
#define LOCKEXT_DSHASH_PARAMETERS(key, entry) \
	{ .key_size = (key), .entry_size = (entry), \
	  .compare_function = dshash_memcmp, .hash_function = dshash_memhash, \
	  .copy_function = dshash_memcpy, .tranche_id = 0 }
#else
#define LOCKEXT_DSHASH_PARAMETERS(key, entry) \
	{ .key_size = (key), .entry_size = (entry), \
	  .compare_function = dshash_memcmp, .hash_function = dshash_memhash, \
	  .tranche_id = 0 }
#endif

/*
 * A GUC's "extra" data: 16 frees it with guc_free() (pfree in its own
 * context), so it must come from guc_malloc(); before, from malloc().
 * Both return NULL on failure at LOG.
 */
#if PG_VERSION_NUM >= 160000
#define lockext_guc_malloc(size) guc_malloc(LOG, size)
#define lockext_guc_free(ptr) guc_free(ptr)
#else
#define lockext_guc_malloc(size) malloc(size)
#define lockext_guc_free(ptr) free(ptr)
#endif

/*
 * A named custom wait event (17; wait_events.c resolves each name once per
 * process): before 17 every extension wait is plain "Extension".
 */
#if PG_VERSION_NUM >= 170000
#define lockext_wait_event_new(name) WaitEventExtensionNew(name)
#else
#define lockext_wait_event_new(name) ((void) (name), PG_WAIT_EXTENSION)
#endif

/*
 * A struct in the DSM registry (17), created by the first process that
 * asks and init()ed once: lockext's control structs when the library was
 * not preloaded.  Before 17 there is none: NULL.  May ERROR.
 */
#if PG_VERSION_NUM >= 170000
#include "storage/dsm_registry.h"
static inline void *
lockext_named_struct(const char *name, Size size, void (*init) (void *ptr))
{
	bool		found;

	return GetNamedDSMSegment(name, size, init, &found);
}
#else
static inline void *
lockext_named_struct(const char *name, Size size, void (*init) (void *ptr))
{
	(void) name;
	(void) size;
	(void) init;
	return NULL;
}
#endif

#endif							/* PG_COMPAT_H */
