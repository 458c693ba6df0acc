/*-------------------------------------------------------------------------
 *
 * registry.h
 *	  The interface of registry.c: the per-backend registry of held dlocks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_REGISTRY_H
#define LOCKEXT_REGISTRY_H

#include "lockext.h"

/* registry.c */
extern void registry_init(void);
extern void registry_install_hooks(void);
extern uint64 registry_hash_key(const char *key, int keylen);
extern DlockEntry *registry_lookup(const char *key, int keylen);
extern DlockEntry *registry_acquire(const char *key, int keylen,
									DlockScope scope, int64 timeout_ms,
									int64 lease_ms, char **busy_detail);
extern int	registry_acquire_many(char **keys, const int *keylens, int n,
								  int64 timeout_ms, int64 lease_ms,
								  DlockEntry **entries, char **busy_detail);
extern bool registry_release_session(DlockEntry *entry);
extern void registry_republish(DlockEntry *entry);
extern int	registry_release_all_session(void);
extern int	registry_count(void);
extern void release_check_session_holds(void);
extern void registry_statement_end(void);
extern void registry_foreach(void (*fn) (DlockEntry *entry, void *arg),
							 void *arg);

#endif							/* LOCKEXT_REGISTRY_H */
