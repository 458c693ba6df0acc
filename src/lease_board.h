/*-------------------------------------------------------------------------
 *
 * lease_board.h
 *	  The interface of lease_board.c: the lease ends the keeper renewed,
 *	  in shared memory, one slot per renewable hold.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_LEASE_BOARD_H
#define LOCKEXT_LEASE_BOARD_H

#include "port/atomics.h"
#include "utils/dsa.h"

#include "lockext_base.h"

/* Who a slot is for: a row of the shared lock table, never reused. */
typedef struct LeaseBoardId
{
	int32		pid;
	uint64		proc_start;
	uint64		seq;
} LeaseBoardId;

/* What the keeper last wrote for that row. */
typedef struct LeaseBoardValue
{
	TimestampTz lease_end;
	int64		lease_until_us; /* monotonic */
	int64		renewals;
} LeaseBoardValue;

typedef struct LeaseSlot LeaseSlot;

/* The keeper's side: it alone assigns slots and writes them. */
extern void lease_board_keeper_attach(dsa_area *area, pg_atomic_uint64 *dirp);
extern void lease_board_reset_used(void);
extern bool lease_board_adopt(uint32 slot, const LeaseBoardId *id);
extern uint32 lease_board_assign(const LeaseBoardId *id,
								 const LeaseBoardValue *value);
extern void lease_board_free(uint32 slot);
extern LeaseSlot *lease_board_slot(uint32 slot);
extern void lease_board_write(LeaseSlot *s, TimestampTz lease_end,
							  int64 lease_until_us);

/* Anyone's (may attach a DSA segment: not on the release path). */
extern bool lease_board_read(dsa_area *area, dsa_pointer dir, uint32 slot,
							 const LeaseBoardId *id, LeaseBoardValue *value);

#endif							/* LOCKEXT_LEASE_BOARD_H */
