/*-------------------------------------------------------------------------
 *
 * keeper_state.h
 *	  The interface of keeper_state.c: what the lease keeper and the backends share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_KEEPER_STATE_H
#define LOCKEXT_KEEPER_STATE_H

#include "lockext_base.h"

/*
 * keeper_state.c: what the keeper shares with backends and views: whether
 * it runs, its wake-up, the Redis nodes as it sees them, and the releases
 * handed over to it.
 */
#define LOCKEXT_MAX_NODE_STATUS 15	/* as many as lockext.redis_nodes takes */

typedef struct KeeperNodeStatus
{
	char		node[256];		/* the URL, password masked */
	char		state;			/* 'c' connected, 'o' connecting, 'd' not */
	int64		rtt_us;			/* last round trip; 0: none yet */
	uint64		errors;
	char		last_error[256];
	TimestampTz last_error_at;	/* 0: none */
	TimestampTz checked_at;
} KeeperNodeStatus;

extern void keeper_state_install_hooks(void);
extern void keeper_state_running(bool running);
extern int	keeper_state_pid(void);
extern void keeper_state_set_wake(TimestampTz wake_at);
extern void keeper_state_poke(TimestampTz due);
extern void keeper_state_publish_nodes(const KeeperNodeStatus *nodes, int n);
extern int	keeper_state_nodes(KeeperNodeStatus **nodes);
extern void keeper_state_adopt(uint64 set_fp);
extern bool keeper_state_adopted(uint64 set_fp);

#endif							/* LOCKEXT_KEEPER_STATE_H */
