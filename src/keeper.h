/*-------------------------------------------------------------------------
 *
 * keeper.h
 *	  The interface of keeper.c: the lease keeper, a background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_KEEPER_H
#define LOCKEXT_KEEPER_H

#include "lockext_base.h"

/* keeper.c: the lease keeper (a background worker) */
extern void keeper_register(void);

#endif							/* LOCKEXT_KEEPER_H */
