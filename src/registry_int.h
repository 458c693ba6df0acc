/*-------------------------------------------------------------------------
 *
 * registry_int.h
 *	  What the parts of the registry share: one key at a time
 *	  (registry.c), many keys at once (registry_many.c), and the release
 *	  path that ends holds (release.c).  Not for other layers: they use
 *	  lockext.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_REGISTRY_INT_H
#define LOCKEXT_REGISTRY_INT_H

#include "lockext.h"

#include "access/xact.h"
#include "utils/hsearch.h"
#include "utils/resowner.h"

/* The registry of this backend's holds. */
typedef struct RegistryState
{
	HTAB	   *table;			/* DlockEntry by hash of the key */
	/* entries with transaction-scoped holds: transaction end is O(those) */
	dlist_head	xact_entries;
	int			xact_entry_count;
	/*
	 * entries with session holds: the first one tells in O(1) whether
	 * pg_advisory_unlock_all() or DISCARD ALL took the session locks
	 */
	dlist_head	session_entries;
	int			session_entry_count;
} RegistryState;

extern RegistryState registry_state;

extern DlockEntry *registry_entry_for(const char *key, int keylen);
extern void registry_forget_if_unheld(DlockEntry *entry);
extern void registry_reserve_sub_slot(DlockEntry *entry);
extern void registry_add_hold(DlockEntry *entry, DlockScope scope);
extern void registry_count_failed_acquire(int64 wait_us, MemoryContext cxt);
extern void registry_clear_session_holds(DlockEntry *entry);

/* release.c: the release path; nothing there ERRORs or pallocs */
extern void release_end_scope(DlockEntry *entry, DlockScope scope,
							  bool lockmgr_releases, bool is_abort);
extern void release_end_xact_holds(DlockEntry *entry, bool lockmgr_releases,
								   bool is_abort);
extern void release_end_holds(DlockEnding *ends, int n, bool lockmgr_releases,
							  bool is_abort);
extern void release_subxact_callback(SubXactEvent event,
									 SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);
extern void release_resowner_callback(ResourceReleasePhase phase,
									  bool isCommit, bool isTopLevel,
									  void *arg);
extern void release_exit_callback(int code, Datum arg);

#endif							/* LOCKEXT_REGISTRY_INT_H */
