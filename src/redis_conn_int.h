/*-------------------------------------------------------------------------
 *
 * redis_conn_int.h
 *	  What the parts of the Redis connection layer share: connections and
 *	  their command queues (redis_conn.c), the checks of a node at connect
 *	  (redis_checks.c), their TLS transport (redis_tls.c), and waiting on
 *	  them (redis_wait.c).  Not for other layers: they use redis.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_REDIS_CONN_INT_H
#define LOCKEXT_REDIS_CONN_INT_H

#include "redis.h"

typedef enum RedisCmdKind
{
	RCMD_HANDSHAKE,				/* AUTH, SELECT: an error fails the connection */
	RCMD_VERSION,				/* INFO server: the version check */
	RCMD_INFO,					/* INFO memory: the eviction check */
	RCMD_AWAITED,				/* node->awaiting receives the reply */
	RCMD_SKIP,					/* nobody waits; an error reply is logged */
	RCMD_GIVEBACK				/* a release that must be confirmed */
} RedisCmdKind;

typedef struct RedisPending
{
	struct RedisPending *next;
	RedisCmdKind kind;
	int			nkeys;			/* give-back: releases it carries */
	int		   *confirmed;		/* give-back: bumped on its reply, or NULL */
	RedisGiveback *gb;			/* give-back: who waits for a majority, or NULL */
	int64		queued_us;		/* when it was queued: the round trip */
	size_t		len;			/* give-back: the command, to send it again */
	char		cmd[FLEXIBLE_ARRAY_MEMBER];
} RedisPending;

extern uint64 rconn_generation;	/* bumped whenever a connection closes */
extern void rconn_set_failure(RedisNode *node, RedisResult *res,
							  RedisOutcome outcome, const char *what,
							  const char *why);
extern bool rconn_queue(RedisNode *node, RedisCmdKind kind, const char *cmd,
						size_t len, int nkeys, int *confirmed);
extern void rconn_keep_for_redo(RedisNode *node, const char *cmd, size_t len,
								int nkeys, RedisGiveback *gb);
extern bool rconn_queue_giveback(RedisNode *node, const char *cmd, size_t len,
								 int nkeys, int *confirmed, RedisGiveback *gb);
extern bool rconn_connect(RedisNode *node, RedisResult *res);
extern bool rconn_connect_finished(RedisNode *node);
extern bool rconn_flush(RedisNode *node);
extern bool rconn_read(RedisNode *node);
extern void rconn_fail(RedisNode *node, RedisOutcome outcome, const char *what,
					   const char *why, int refusal);
extern bool rconn_ready(RedisNode *node, RedisResult *res, bool *fresh);
extern void rconn_write_now(RedisNode *node);
extern int	rconn_wait_events(RedisNode *node);

/* redis_checks.c: what a node must be to be used */
extern bool rcheck_version(RedisNode *node, struct redisReply *r, char *why,
						   size_t whylen);
extern bool rcheck_eviction(struct redisReply *r, char *why, size_t whylen);
extern bool rcheck_known_old(RedisNode *node, char *why, size_t whylen);

/* redis_tls.c: the transport of rediss:// connections */
extern bool rtls_start(RedisNode *node, char *why, size_t whylen);
extern int	rtls_handshake(RedisNode *node, char *why, size_t whylen);
extern bool rtls_write(RedisNode *node, bool *done, char *why, size_t whylen);
extern bool rtls_read(RedisNode *node, char *why, size_t whylen);
extern bool rtls_pending(RedisNode *node);
extern void rtls_close(RedisNode *node);

/* redis_wait.c: waiting on connections */
typedef enum PumpGoal
{
	PUMP_AWAITED,				/* until every awaited reply is in */
	PUMP_FLUSHED,				/* until everything is written */
	PUMP_ALL_REPLIES			/* until every reply due is in */
} PumpGoal;

extern long rwait_ms_left(int64 deadline_us);
extern int64 rwait_deadline_after(int64 ms);
extern bool rwait_node_busy(RedisNode *node, PumpGoal goal);

#endif							/* LOCKEXT_REDIS_CONN_INT_H */
