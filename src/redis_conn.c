/*-------------------------------------------------------------------------
 *
 * redis_conn.c
 *	  Connections to Redis nodes and non-blocking I/O on the latch.
 *
 * One hiredis context per node per backend, in non-blocking mode, reused
 * across calls.  redis_run() sends one command to a set of nodes at once
 * and waits on the latch and all their sockets together, so a quorum costs
 * one round trip of the slowest answering node, cancel and termination
 * work while waiting, and every wait has a time bound: the connect timeout
 * while connecting, the command timeout (plus what a blocking command may
 * legitimately take) while talking.
 *
 * With quiet set (abort path, process exit) nothing here raises an ERROR
 * or looks at interrupts; the time bounds alone end the wait.
 *
 * A connection whose command was interrupted (cancel, or a FATAL that
 * exits without unwinding) still has a reply on its way; such a connection
 * is dropped before its next use rather than misread.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "lockext.h"

typedef enum NodePhase
{
	PHASE_CONNECTING,			/* waiting for the TCP/unix connect */
	PHASE_SENDING,				/* output buffer not yet flushed */
	PHASE_READING,				/* waiting for replies */
	PHASE_DONE
} NodePhase;

/* Drop a node's connection; safe to call on a closed one. */
void
redis_disconnect(RedisNode *node)
{
	if (node->ctx != NULL)
	{
		redisFree(node->ctx);
		node->ctx = NULL;
	}
	node->in_flight = false;
	if (node->fd_reserved)
	{
		ReleaseExternalFD();
		node->fd_reserved = false;
	}
}

static void
set_failure(RedisResult *res, RedisOutcome outcome, const char *what,
			const char *why)
{
	res->outcome = outcome;
	snprintf(res->detail, sizeof(res->detail), "%s%s%s", what,
			 why && why[0] ? ": " : "", why ? why : "");
}

/*
 * Start a non-blocking connect, and queue the handshake (AUTH, SELECT) in
 * front of whatever command follows; its replies are skipped later.
 * Returns false with res filled when the connect failed at once.
 */
static bool
start_connect(RedisNode *node, RedisResult *res)
{
	redisContext *ctx;

	if (!AcquireExternalFD())
	{
		set_failure(res, RNODE_UNREACHABLE, "cannot connect",
					"too many open files in this backend");
		return false;
	}
	node->fd_reserved = true;

	if (node->url.kind == REDIS_URL_UNIX)
		ctx = redisConnectUnixNonBlock(node->url.path);
	else
		ctx = redisConnectNonBlock(node->url.host, node->url.port);

	if (ctx == NULL || ctx->err)
	{
		set_failure(res, RNODE_UNREACHABLE, "cannot connect",
					ctx ? ctx->errstr : "out of memory");
		if (ctx)
			redisFree(ctx);
		ReleaseExternalFD();
		node->fd_reserved = false;
		return false;
	}
	node->ctx = ctx;
	node->handshake_replies = 0;
	node->abandoned_replies = 0;

	if (node->url.has_password)
	{
		if (node->url.user[0] != '\0')
			redisAppendCommand(ctx, "AUTH %s %s", node->url.user,
							   node->url.password);
		else
			redisAppendCommand(ctx, "AUTH %s", node->url.password);
		node->handshake_replies++;
	}
	if (node->url.db != 0)
	{
		redisAppendCommand(ctx, "SELECT %d", node->url.db);
		node->handshake_replies++;
	}
	return true;
}

/* Has a non-blocking connect completed without error? */
static bool
connect_finished(RedisNode *node, RedisResult *res)
{
	int			err = 0;
	socklen_t	len = sizeof(err);

	if (getsockopt(node->ctx->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0)
	{
		set_failure(res, RNODE_UNREACHABLE, "cannot connect", strerror(err));
		return false;
	}
	node->ctx->flags |= REDIS_CONNECTED;
	return true;
}

/* Flush what we can; false on a socket error. */
static bool
flush_output(RedisNode *node, NodePhase *phase, RedisResult *res)
{
	int			done = 0;

	if (redisBufferWrite(node->ctx, &done) != REDIS_OK)
	{
		set_failure(res, RNODE_UNREACHABLE, "cannot send", node->ctx->errstr);
		return false;
	}
	if (done)
		*phase = PHASE_READING;
	return true;
}

/*
 * Skip r if it answers a command nobody waits for any more (a quorum had
 * answered, or a release was sent without waiting).  Nobody will see an
 * error in it otherwise, so it goes to the server log.
 */
static bool
skip_abandoned(RedisNode *node, redisReply *r)
{
	if (node->abandoned_replies == 0 || node->handshake_replies > 0)
		return false;
	node->abandoned_replies--;
	if (r->type == REDIS_REPLY_ERROR)
		ereport(LOG,
				(errmsg("lockext: Redis node %s refused a command whose answer was not awaited: %s",
						node->display, r->str)));
	freeReplyObject(r);
	return true;
}

/* Read what arrived; collects the command's reply after the handshake's. */
static bool
read_input(RedisNode *node, NodePhase *phase, RedisResult *res)
{
	void	   *reply;

	if (redisBufferRead(node->ctx) != REDIS_OK)
	{
		set_failure(res, RNODE_UNREACHABLE, "connection lost",
					node->ctx->errstr);
		return false;
	}
	for (;;)
	{
		redisReply *r;

		if (redisGetReplyFromReader(node->ctx, &reply) != REDIS_OK)
		{
			set_failure(res, RNODE_UNREACHABLE, "protocol error",
						node->ctx->errstr);
			return false;
		}
		if (reply == NULL)
			return true;		/* need more input */
		r = (redisReply *) reply;
		if (skip_abandoned(node, r))
			continue;
		if (node->handshake_replies > 0)
		{
			node->handshake_replies--;
			if (r->type == REDIS_REPLY_ERROR)
			{
				/* Redis's own text never contains the password */
				set_failure(res, RNODE_ERROR_REPLY,
							"authentication or database selection failed",
							r->str);
				freeReplyObject(r);
				return false;
			}
			freeReplyObject(r);
			continue;
		}
		res->reply = r;
		res->outcome = r->type == REDIS_REPLY_ERROR ? RNODE_ERROR_REPLY : RNODE_OK;
		if (r->type == REDIS_REPLY_ERROR)
			set_failure(res, RNODE_ERROR_REPLY, "error", r->str);
		*phase = PHASE_DONE;
		return true;
	}
}

/* Milliseconds until a monotonic deadline (in us), rounded up, >= 0. */
static long
ms_left(int64 deadline_us)
{
	int64		left = deadline_us - lockext_now_us();

	return left <= 0 ? 0 : (long) ((left + 999) / 1000);
}

/*
 * One pass: send argv to every node and collect the replies.  fresh[i]
 * tells whether node i's connection was opened by this pass.
 */
static void
run_once(RedisNode **nodes, int n, int argc, const char **argv,
		 const size_t *argvlen, int64 extra_ms, bool quiet,
		 RedisEnoughFn enough, RedisResult *results, bool *fresh)
{
	NodePhase  *phase = palloc(n * sizeof(NodePhase));
	int64		connect_deadline;
	int64		deadline;
	bool		any_connecting = false;
	WaitEventSet *volatile set = NULL;
	int			pending = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		RedisResult *res = &results[i];

		memset(res, 0, sizeof(*res));
		fresh[i] = false;
		phase[i] = PHASE_DONE;
		if (nodes[i]->ctx != NULL && nodes[i]->in_flight)
			redis_disconnect(nodes[i]);
		if (nodes[i]->ctx == NULL)
		{
			if (!start_connect(nodes[i], res))
				continue;
			fresh[i] = true;
		}
		if (redisAppendCommandArgv(nodes[i]->ctx, argc, argv, argvlen) != REDIS_OK)
		{
			set_failure(res, RNODE_UNREACHABLE, "cannot send", "out of memory");
			redis_disconnect(nodes[i]);
			continue;
		}
		phase[i] = fresh[i] ? PHASE_CONNECTING : PHASE_SENDING;
		nodes[i]->in_flight = true;
		any_connecting |= fresh[i];

		/* An open socket is nearly always writable: send at once. */
		if (phase[i] == PHASE_SENDING &&
			!flush_output(nodes[i], &phase[i], res))
		{
			redis_disconnect(nodes[i]);
			phase[i] = PHASE_DONE;
			continue;
		}
		pending++;
	}

	connect_deadline = lockext_now_us() + lockext_connect_timeout_ms * INT64CONST(1000);
	deadline = lockext_now_us() +
		(lockext_command_timeout_ms + extra_ms +
		 (any_connecting ? lockext_connect_timeout_ms : 0)) * INT64CONST(1000);

	PG_TRY();
	{
		while (pending > 0)
		{
			WaitEvent	events[LOCKEXT_MAX_NODES + 1];
			long		timeout = ms_left(deadline);
			int			nev;
			int			e;

			for (i = 0; i < n && any_connecting; i++)
				if (phase[i] == PHASE_CONNECTING)
					timeout = Min(timeout, ms_left(connect_deadline));

			set = CreateWaitEventSet(CurrentMemoryContext, n + 2);
			AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
			/* on the exit path, postmaster death must not re-enter proc_exit */
			AddWaitEventToSet(set, quiet ? WL_POSTMASTER_DEATH : WL_EXIT_ON_PM_DEATH,
							  PGINVALID_SOCKET, NULL, NULL);
			for (i = 0; i < n; i++)
			{
				if (phase[i] == PHASE_DONE)
					continue;
				AddWaitEventToSet(set,
								  phase[i] == PHASE_READING ? WL_SOCKET_READABLE :
								  WL_SOCKET_WRITEABLE,
								  nodes[i]->ctx->fd, NULL, (void *) (intptr_t) i);
			}
			nev = WaitEventSetWait(set, timeout, events, lengthof(events),
								   PG_WAIT_EXTENSION);
			FreeWaitEventSet(set);
			set = NULL;

			for (e = 0; e < nev; e++)
			{
				bool		ok = true;

				if (events[e].events & WL_LATCH_SET)
				{
					ResetLatch(MyLatch);
					if (!quiet)
						CHECK_FOR_INTERRUPTS();
					continue;
				}
				if (events[e].events & WL_POSTMASTER_DEATH)
				{
					deadline = 0;	/* give up on everything still pending */
					continue;
				}
				i = (int) (intptr_t) events[e].user_data;
				if (phase[i] == PHASE_CONNECTING)
				{
					ok = connect_finished(nodes[i], &results[i]);
					if (ok)
						phase[i] = PHASE_SENDING;
				}
				if (ok && phase[i] == PHASE_SENDING)
					ok = flush_output(nodes[i], &phase[i], &results[i]);
				else if (ok && phase[i] == PHASE_READING)
					ok = read_input(nodes[i], &phase[i], &results[i]);
				if (!ok)
				{
					redis_disconnect(nodes[i]);
					phase[i] = PHASE_DONE;
				}
				if (phase[i] == PHASE_DONE)
				{
					if (ok)
						nodes[i]->in_flight = false;
					pending--;
				}
			}

			/*
			 * A quorum answered: stop waiting for the rest.  Their replies
			 * will be skipped when they come, so the connections stay.
			 */
			if (pending > 0 && enough != NULL && enough(results, n))
			{
				for (i = 0; i < n; i++)
				{
					if (phase[i] == PHASE_DONE)
						continue;
					set_failure(&results[i], RNODE_TIMED_OUT,
								"not waited for (a quorum had answered)", NULL);
					if (phase[i] == PHASE_CONNECTING)
						redis_disconnect(nodes[i]);
					else
					{
						nodes[i]->abandoned_replies++;
						nodes[i]->in_flight = false;
					}
					phase[i] = PHASE_DONE;
				}
				break;
			}

			/* Out of time: whatever is still in flight has timed out. */
			for (i = 0; i < n; i++)
			{
				bool		connecting = phase[i] == PHASE_CONNECTING;

				if (phase[i] == PHASE_DONE)
					continue;
				if (ms_left(deadline) > 0 &&
					!(connecting && ms_left(connect_deadline) == 0))
					continue;
				set_failure(&results[i], RNODE_TIMED_OUT,
							connecting ? "connect timed out" : "command timed out",
							NULL);
				redis_disconnect(nodes[i]);
				phase[i] = PHASE_DONE;
				pending--;
			}
		}
	}
	PG_CATCH();
	{
		/* Interrupted: connections in the middle of a command are useless. */
		if (set != NULL)
			FreeWaitEventSet(set);
		for (i = 0; i < n; i++)
			if (phase[i] != PHASE_DONE)
				redis_disconnect(nodes[i]);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(phase);
}

/*
 * Send one command to all nodes and wait for every answer, or the time
 * bounds, or until enough() says a quorum has answered (NULL: all).  A
 * connection that was idle and turns out dead (the server
 * restarted) is reopened and the command sent once more: nothing reached
 * the new server through the old socket.  Callers free replies with
 * redis_results_free().
 */
void
redis_run(RedisNode **nodes, int n, int argc, const char **argv,
		  const size_t *argvlen, int64 extra_ms, bool quiet,
		  RedisEnoughFn enough, RedisResult *results)
{
	bool		fresh[LOCKEXT_MAX_NODES];
	RedisNode  *retry[LOCKEXT_MAX_NODES];
	int			retry_at[LOCKEXT_MAX_NODES];
	int			nretry = 0;
	int			i;

	Assert(n <= LOCKEXT_MAX_NODES);
	run_once(nodes, n, argc, argv, argvlen, extra_ms, quiet, enough, results, fresh);

	for (i = 0; i < n; i++)
		if (!fresh[i] && results[i].outcome == RNODE_UNREACHABLE)
		{
			retry_at[nretry] = i;
			retry[nretry++] = nodes[i];
		}
	if (nretry > 0)
	{
		RedisResult again[LOCKEXT_MAX_NODES];

		run_once(retry, nretry, argc, argv, argvlen, extra_ms, quiet, NULL, again, fresh);
		for (i = 0; i < nretry; i++)
			results[retry_at[i]] = again[i];
	}
}

void
redis_results_free(RedisResult *results, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (results[i].reply != NULL)
		{
			freeReplyObject(results[i].reply);
			results[i].reply = NULL;
		}
}

/*
 * Send a command to an open, idle connection without waiting for its
 * answer, which is skipped when it arrives.  What already arrived is read
 * first (without waiting), so a connection the server closed is noticed
 * here rather than taken for a sent command.  Returns false, with the
 * connection dropped when it was unusable, when the caller must send the
 * command the ordinary way: no connection, a command in flight, a dead
 * connection, or a socket that would not take the whole command at once.
 * Never ERRORs and never looks at interrupts.
 */
bool
redis_send_nowait(RedisNode *node, int argc, const char **argv,
				  const size_t *argvlen)
{
	void	   *reply;
	int			done = 0;

	if (node->ctx == NULL || node->in_flight || node->handshake_replies > 0)
		return false;
	if (redisBufferRead(node->ctx) != REDIS_OK)
		goto unusable;
	for (;;)
	{
		if (redisGetReplyFromReader(node->ctx, &reply) != REDIS_OK)
			goto unusable;
		if (reply == NULL)
			break;
		if (!skip_abandoned(node, (redisReply *) reply))
		{
			/* an answer nobody asked for: we lost track of this connection */
			freeReplyObject(reply);
			goto unusable;
		}
	}
	if (redisAppendCommandArgv(node->ctx, argc, argv, argvlen) != REDIS_OK ||
		redisBufferWrite(node->ctx, &done) != REDIS_OK || !done)
		goto unusable;
	node->abandoned_replies++;
	return true;

unusable:
	redis_disconnect(node);
	return false;
}
