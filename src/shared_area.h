/*-------------------------------------------------------------------------
 *
 * shared_area.h
 *	  The interface of shared_area.c: the DSA area of lockext's shared tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_SHARED_AREA_H
#define LOCKEXT_SHARED_AREA_H

#include "lockext_base.h"

/*
 * shared_area.c: the DSA area of lockext's shared tables, and their LWLock
 * tranche (needs shared_preload_libraries before PostgreSQL 17).
 */
extern void shared_area_install_hooks(void);
extern int	shared_area_tranche(void);
extern struct dsa_area *shared_area_get(void);
extern struct dsa_area *shared_area_attached(void);
extern void shared_area_require(const char *what);
extern void shared_area_require_preloaded(const char *what);
extern void *shared_area_named_struct(const char *name, Size size,
									  void (*init) (void *ptr));

#endif							/* LOCKEXT_SHARED_AREA_H */
