/*-------------------------------------------------------------------------
 *
 * views.h
 *	  The interface of views.c: the SQL functions behind the views.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_VIEWS_H
#define LOCKEXT_VIEWS_H

#include "lockext.h"

/* views.c */
extern bool views_may_see_holder(const DlockHolderInfo *info);

#endif							/* LOCKEXT_VIEWS_H */
