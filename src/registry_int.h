/*-------------------------------------------------------------------------
 *
 * registry_int.h
 *	  What the two halves of the registry share: one key at a time
 *	  (registry.c) and many keys at once (registry_many.c).  Not for other
 *	  layers: they use lockext.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_REGISTRY_INT_H
#define LOCKEXT_REGISTRY_INT_H

#include "lockext.h"

extern DlockEntry *registry_entry_for(const char *key, int keylen);
extern void registry_forget_if_unheld(DlockEntry *entry);
extern void registry_reserve_sub_slot(DlockEntry *entry);
extern void registry_add_hold(DlockEntry *entry, DlockScope scope);
extern void registry_count_failed_acquire(int64 wait_us, MemoryContext cxt);

#endif							/* LOCKEXT_REGISTRY_INT_H */
