/*-------------------------------------------------------------------------
 *
 * liveness.h
 *	  The interface of liveness.c: is a holder's process there, and can it act?.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_LIVENESS_H
#define LOCKEXT_LIVENESS_H

#include "lockext_base.h"

/* liveness.c: is a holder's process there, and can it act? */
typedef enum HolderLiveness
{
	HOLDER_ACTIVE,
	HOLDER_STOPPED,				/* SIGSTOP, a debugger: cannot act now */
	HOLDER_GONE					/* exited, or its pid is another's now */
} HolderLiveness;

extern uint64 liveness_my_start(void);
extern HolderLiveness liveness_of(int pid, uint64 start);

#endif							/* LOCKEXT_LIVENESS_H */
