/*-------------------------------------------------------------------------
 *
 * redis_wait.c
 *	  Waiting on Redis connections: one command to N nodes at once, and
 *	  pipelined sweeps of give-backs, on the latch and the sockets.
 *
 * redis_run() sends one command to a set of nodes and waits on the latch
 * and all their sockets together, so a quorum costs one round trip of the
 * slowest answering node, cancel and termination work while waiting, and
 * every wait has a time bound: the connect timeout while connecting, the
 * command timeout (plus what a blocking command may legitimately take)
 * while talking.  When a command's answer is not learned (time-out,
 * cancel, termination), its undo follows it on the same connection: Redis
 * runs one connection's commands in order.
 *
 * All waits go through one WaitEventSet per backend, kept while the
 * sockets stay the same, so the common call creates nothing and allocates
 * nothing.  With quiet set (abort path, after the commit record, process
 * exit) nothing here raises an ERROR or looks at interrupts: the time
 * bounds alone end the wait.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "redis_conn_int.h"

typedef enum PumpGoal
{
	PUMP_AWAITED,				/* until every awaited reply is in */
	PUMP_FLUSHED,				/* until everything is written */
	PUMP_ALL_REPLIES			/* until every reply due is in */
} PumpGoal;

/* The call in progress, for redis_abandon_inflight(). */
static struct
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	int			n;
	const char *undo;			/* formatted undo command, or NULL */
	size_t		undo_len;
}			inflight;

/* The backend's wait set, for the sockets it was built for. */
static WaitEventSet *wes = NULL;
static redisContext *wes_ctx[LOCKEXT_MAX_NODES];
static int	wes_n = -1;

void
rwait_forget_set(void)
{
	if (wes != NULL)
		FreeWaitEventSet(wes);
	wes = NULL;
	wes_n = -1;
}

/*
 * The wait set for the connected nodes among nodes[]: the latch, postmaster
 * death, and their sockets in order.  Rebuilt only when the sockets
 * changed.  NULL in quiet mode if it had to be built and could not be.
 */
static WaitEventSet *
wait_set(RedisNode **nodes, int n, bool quiet)
{
	redisContext *ctxs[LOCKEXT_MAX_NODES] = {0};
	int			nctx = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (nodes[i]->ctx != NULL)
			ctxs[nctx++] = nodes[i]->ctx;
	if (wes != NULL && wes_n == nctx &&
		memcmp(wes_ctx, ctxs, nctx * sizeof(redisContext *)) == 0)
		return wes;

	rwait_forget_set();
	PG_TRY();
	{
		wes = CreateWaitEventSet(TopMemoryContext, LOCKEXT_MAX_NODES + 2);
		AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wes, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < n; i++)
			if (nodes[i]->ctx != NULL)
				AddWaitEventToSet(wes, WL_SOCKET_READABLE, nodes[i]->ctx->fd,
								  NULL, nodes[i]);
	}
	PG_CATCH();
	{
		if (!quiet)
			PG_RE_THROW();
		/* out of memory or descriptors where we must not fail: give up */
		FlushErrorState();
		wes = NULL;				/* leaks what was made: rare, and safe */
		return NULL;
	}
	PG_END_TRY();
	memcpy(wes_ctx, ctxs, nctx * sizeof(redisContext *));
	wes_n = nctx;
	return wes;
}

/* Milliseconds until a monotonic deadline (in us), rounded up, >= 0. */
static long
ms_left(int64 deadline_us)
{
	int64		left = deadline_us - lockext_now_us();

	if (left <= 0)
		return 0;
	if (left >= (int64) INT_MAX * 1000)
		return INT_MAX;
	return (long) ((left + 999) / 1000);
}

/* now + ms, saturating: an infinite wait must not wrap around. */
static int64
deadline_after(int64 ms)
{
	int64		now = lockext_now_us();

	if (ms >= (PG_INT64_MAX - now) / 1000)
		return PG_INT64_MAX;
	return now + ms * 1000;
}

static bool
node_busy(RedisNode *node, PumpGoal goal)
{
	if (node->ctx == NULL)
		return false;
	if (node->connecting || node->out_pending)
		return true;
	if (goal == PUMP_AWAITED)
		return node->awaiting != NULL;
	if (goal == PUMP_ALL_REPLIES)
		return node->sent_head != NULL;
	return false;
}

/*
 * Drive the nodes' I/O until goal is reached for all of them, enough()
 * says a quorum answered, or the deadline passes.  Connections that fail
 * are dropped (their awaited results say why); nodes still busy on return
 * have run out of time, which the caller handles.
 */
static void
pump(RedisNode **nodes, int n, PumpGoal goal, int64 deadline,
	 int64 connect_deadline, bool quiet, RedisEnoughFn enough,
	 const RedisResult *results)
{
	for (;;)
	{
		WaitEventSet *set;
		WaitEvent	events[LOCKEXT_MAX_NODES + 2];
		long		timeout = ms_left(deadline);
		int			busy = 0;
		int			nev;
		int			pos = 2;
		int			i;
		int			e;

		for (i = 0; i < n; i++)
		{
			RedisNode  *node = nodes[i];

			if (node->ctx != NULL && node->connecting)
			{
				if (ms_left(connect_deadline) == 0)
				{
					rconn_fail(node, RNODE_TIMED_OUT, node->tls ?
							   "TLS handshake timed out" : "connect timed out",
							   NULL, 0);
					continue;
				}
				timeout = Min(timeout, ms_left(connect_deadline));
			}
			busy += node_busy(node, goal);
		}
		if (busy == 0 || timeout == 0 ||
			(enough != NULL && enough(results, n)))
			return;

		set = wait_set(nodes, n, quiet);
		if (set == NULL)
			return;
		for (i = 0; i < n; i++)
		{
			RedisNode  *node = nodes[i];

			if (node->ctx == NULL)
				continue;
			ModifyWaitEvent(set, pos++, rconn_wait_events(node), NULL);
		}
		nev = WaitEventSetWait(set, timeout, events, lengthof(events),
							   PG_WAIT_EXTENSION);

		for (e = 0; e < nev; e++)
		{
			RedisNode  *node = (RedisNode *) events[e].user_data;
			bool		read_due;

			if (events[e].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				if (!quiet)
					CHECK_FOR_INTERRUPTS();
				continue;
			}
			if (events[e].events & WL_POSTMASTER_DEATH)
			{
				if (!quiet)
					proc_exit(1);
				return;			/* give up on everything still pending */
			}
			if (node == NULL || node->ctx == NULL)
				continue;
			/* a TLS read may have waited for the socket to take a write */
			read_due = (events[e].events & WL_SOCKET_READABLE) ||
				node->tls_read_wants_write;
			if (node->connecting && !rconn_connect_finished(node))
				continue;
			if (node->out_pending && !rconn_flush(node))
				continue;
			/* OpenSSL may hold data the socket no longer shows */
			if (read_due || rtls_pending(node))
				(void) rconn_read(node);
		}
	}
}

/*
 * Send the undo of a command whose outcome we will not learn behind it on
 * the same connection (Redis runs one connection's commands in order), and
 * keep it for the node's next connection too.
 */
static void
give_back_undo(RedisNode *node)
{
	if (inflight.undo == NULL || node->ctx == NULL)
		return;
	if (rconn_queue(node, RCMD_GIVEBACK, inflight.undo, inflight.undo_len, 1,
					  NULL))
		rconn_write_now(node);
}

/*
 * A call was interrupted (cancel, or a FATAL on its way to exit): the
 * commands in flight may still run.  Send their undo, then drop those
 * connections, whose replies nobody will read.  Never ERRORs.
 */
void
redis_abandon_inflight(void)
{
	int			i;

	for (i = 0; i < inflight.n; i++)
	{
		RedisNode  *node = inflight.nodes[i];

		if (node->awaiting == NULL)
			continue;
		if (!node->connecting)
			give_back_undo(node);
		redis_disconnect(node);
	}
	inflight.n = 0;
}

/*
 * Is node's connection open and usable now?  Reads what it has without
 * waiting first (a connection the server closed is noticed here).  Never
 * connects.  For the release path.
 */
static bool
open_now(RedisNode *node)
{
	if (node->ctx != NULL && !node->connecting && !node->out_pending)
		(void) rconn_read(node);
	return node->ctx != NULL && !node->connecting;
}

/*
 * pump() for the release path: sockets already open only, waited on with
 * poll() under a time bound alone (no wait set to build, no latch, no
 * interrupts; nothing here can ERROR).  A node still connecting counts as
 * absent.
 */
static void
pump_quiet(RedisNode **nodes, int n, PumpGoal goal, int64 deadline,
		   RedisEnoughFn enough)
{
	for (;;)
	{
		struct pollfd fds[LOCKEXT_MAX_NODES];
		RedisNode  *of[LOCKEXT_MAX_NODES];
		long		timeout = ms_left(deadline);
		int			nfds = 0;
		int			rc;
		int			i;

		for (i = 0; i < n; i++)
		{
			RedisNode  *node = nodes[i];

			if (node->ctx == NULL || node->connecting || !node_busy(node, goal))
				continue;
			fds[nfds].fd = node->ctx->fd;
			fds[nfds].events = rconn_wait_events(node) == WL_SOCKET_WRITEABLE ?
				POLLOUT : POLLIN;
			fds[nfds].revents = 0;
			of[nfds++] = node;
		}
		if (nfds == 0 || timeout == 0 || (enough != NULL && enough(NULL, n)))
			return;
		rc = poll(fds, nfds, (int) Min(timeout, INT_MAX));
		if (rc < 0 && errno != EINTR)
			return;
		for (i = 0; i < nfds && rc > 0; i++)
		{
			RedisNode  *node = of[i];
			bool		read_due = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) ||
				node->tls_read_wants_write;

			if (fds[i].revents == 0 || node->ctx == NULL)
				continue;
			if (node->out_pending && !rconn_flush(node))
				continue;
			if (read_due || rtls_pending(node))
				(void) rconn_read(node);
		}
	}
}

/*
 * One pass: send cmd to every node and collect the replies.  fresh[i]
 * tells whether node i's connection was opened by this pass.
 */
static void
run_once(RedisNode **nodes, int n, const char *cmd, size_t len,
		 int64 extra_ms, bool quiet, RedisEnoughFn enough,
		 RedisResult *results, bool *fresh)
{
	bool		any_connecting = false;
	int64		connect_deadline;
	int64		deadline;
	int			i;

	inflight.n = 0;
	for (i = 0; i < n; i++)
	{
		RedisNode  *node = nodes[i];
		RedisResult *res = &results[i];

		memset(res, 0, sizeof(*res));
		if (!rconn_ready(node, res, &fresh[i]))
			continue;
		any_connecting |= fresh[i];
		if (!rconn_queue(node, RCMD_AWAITED, cmd, len, 0, NULL))
		{
			rconn_set_failure(node, res, RNODE_UNREACHABLE, "cannot send",
							  "out of memory");
			redis_disconnect(node);
			continue;
		}
		node->awaiting = res;
		inflight.nodes[inflight.n++] = node;
		/* An open socket is nearly always writable: send at once. */
		if (!node->connecting)
			(void) rconn_flush(node);
	}

	connect_deadline = deadline_after(lockext_connect_timeout_ms);
	deadline = deadline_after(lockext_command_timeout_ms + extra_ms +
							  (any_connecting ? lockext_connect_timeout_ms : 0));

	PG_TRY();
	{
		pump(nodes, n, PUMP_AWAITED, deadline, connect_deadline, quiet,
			 enough, results);
	}
	PG_CATCH();
	{
		redis_abandon_inflight();
		PG_RE_THROW();
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
	{
		RedisNode  *node = nodes[i];
		RedisPending *p;

		if (node->awaiting != &results[i])
			continue;
		if (enough != NULL && enough(results, n) && !node->connecting)
		{
			/*
			 * A quorum answered: stop waiting for the rest.  Their replies
			 * will be skipped when they come, so the connections stay.
			 */
			rconn_set_failure(NULL, &results[i], RNODE_TIMED_OUT,
							  "not waited for (a quorum had answered)", NULL);
			results[i].not_awaited = true;
			for (p = node->sent_head; p != NULL; p = p->next)
				if (p->kind == RCMD_AWAITED)
					p->kind = RCMD_SKIP;
			node->awaiting = NULL;
			continue;
		}
		rconn_set_failure(node, &results[i], RNODE_TIMED_OUT,
						  !node->connecting ? "command timed out" :
						  node->tls ? "TLS handshake timed out" : "connect timed out",
						  NULL);
		if (!node->connecting)
			give_back_undo(node);
		redis_disconnect(node);
	}
	inflight.n = 0;
}

/*
 * Send one command to all nodes and wait for every answer, or the time
 * bounds, or until enough() says a quorum has answered (NULL: all).  If
 * the answer of a node is not learned (timed out, interrupted, connection
 * lost), undo (when given) is sent after it, on the same connection and
 * again on the next one.  A connection that was idle and turns out dead
 * (the server restarted) is reopened and the command sent once more:
 * nothing reached the new server through the old socket.  Callers free
 * replies with redis_results_free().
 */
void
redis_run(RedisNode **nodes, int n, const RedisCommand *cmd,
		  const char *undo, size_t undo_len, int64 extra_ms, bool quiet,
		  RedisEnoughFn enough, RedisResult *results)
{
	char	   *fmt;
	int			len;

	len = redisFormatCommandArgv(&fmt, cmd->argc, cmd->argv, cmd->argvlen);
	if (len < 0)
	{
		int			i;

		for (i = 0; i < n; i++)
		{
			memset(&results[i], 0, sizeof(RedisResult));
			rconn_set_failure(NULL, &results[i], RNODE_UNREACHABLE, "cannot send",
							  "out of memory");
		}
		return;
	}
	PG_TRY();
	{
		redis_run_formatted(nodes, n, fmt, len, undo, undo_len, extra_ms,
							quiet, enough, results);
	}
	PG_FINALLY();
	{
		redisFreeCommand(fmt);
	}
	PG_END_TRY();
}

/* redis_run() of a command already in the protocol's form. */
void
redis_run_formatted(RedisNode **nodes, int n, const char *fmt, size_t len,
					const char *undo, size_t undo_len, int64 extra_ms,
					bool quiet, RedisEnoughFn enough, RedisResult *results)
{
	Assert(n <= LOCKEXT_MAX_NODES);
	/* the caller keeps undo alive until we return, or exit */
	inflight.undo = undo;
	inflight.undo_len = undo_len;

	PG_TRY();
	{
		int			i;
		bool		fresh[LOCKEXT_MAX_NODES];
		RedisNode  *retry[LOCKEXT_MAX_NODES];
		int			retry_at[LOCKEXT_MAX_NODES];
		int			nretry = 0;

		run_once(nodes, n, fmt, len, extra_ms, quiet, enough, results, fresh);

		for (i = 0; i < n; i++)
			if (!fresh[i] && results[i].outcome == RNODE_UNREACHABLE)
			{
				retry_at[nretry] = i;
				retry[nretry++] = nodes[i];
			}
		if (nretry > 0)
		{
			RedisResult again[LOCKEXT_MAX_NODES];

			run_once(retry, nretry, fmt, len, extra_ms, quiet, NULL, again, fresh);
			for (i = 0; i < nretry; i++)
				results[retry_at[i]] = again[i];
		}
	}
	PG_FINALLY();
	{
		inflight.undo = NULL;
	}
	PG_END_TRY();
}

/*
 * Send give-backs (formatted release commands, each carrying nkeys[c]
 * releases) to every node, pipelined, under one deadline.  With wait, a
 * node counts in confirmed[c] when it answered command c; without, when
 * the command was written to a working connection (its answer is skipped
 * later).  Give-backs that could not be confirmed stay with the node and
 * are sent again on its next connection.  Quiet: never ERRORs.
 */
/* The sweep in progress, for givebacks_confirmed(). */
static const int *sweep_confirmed;
static int	sweep_ncmds;
static int	sweep_quorum;

/* Has a majority of the nodes confirmed every command of the sweep? */
static bool
givebacks_confirmed(const RedisResult *results pg_attribute_unused(),
					int n pg_attribute_unused())
{
	int			c;

	for (c = 0; c < sweep_ncmds; c++)
		if (sweep_confirmed[c] < sweep_quorum)
			return false;
	return true;
}

void
redis_send_givebacks(RedisNode **nodes, int n, char **cmds,
					 const size_t *lens, const int *nkeys, RedisGiveback **gbs,
					 int ncmds, bool wait, int *confirmed)
{
	bool		done;
	int64		deadline;
	int			i;
	int			c;

	for (i = 0; i < n; i++)
	{
		RedisNode  *node = nodes[i];

		/* never connects: only connections already open are used */
		if (!open_now(node))
		{
			/* keep them for the next connection */
			for (c = 0; c < ncmds; c++)
				rconn_keep_for_redo(node, cmds[c], lens[c], nkeys[c],
									gbs ? gbs[c] : NULL);
			continue;
		}
		for (c = 0; c < ncmds; c++)
			(void) rconn_queue_giveback(node, cmds[c], lens[c], nkeys[c],
										wait ? &confirmed[c] : NULL,
										gbs ? gbs[c] : NULL);
		(void) rconn_flush(node);
	}

	deadline = deadline_after(lockext_command_timeout_ms);
	/* waiting, stop once a majority confirmed everything: a quorum node */
	sweep_confirmed = confirmed;
	sweep_ncmds = ncmds;
	sweep_quorum = n / 2 + 1;
	pump_quiet(nodes, n, wait ? PUMP_ALL_REPLIES : PUMP_FLUSHED, deadline,
			   wait ? givebacks_confirmed : NULL);
	done = wait && givebacks_confirmed(NULL, n);

	for (i = 0; i < n; i++)
	{
		RedisNode  *node = nodes[i];
		RedisPending *p;

		if (!done && node_busy(node, wait ? PUMP_ALL_REPLIES : PUMP_FLUSHED))
		{
			/* out of time: to the redo list */
			rconn_fail(node, RNODE_TIMED_OUT, "release timed out", NULL, 0);
			continue;
		}
		if (node->ctx == NULL)
			continue;
		if (!wait)
			for (c = 0; c < ncmds; c++)
				confirmed[c]++;
		/* later answers must not count into the caller's array */
		for (p = node->sent_head; p != NULL; p = p->next)
			p->confirmed = NULL;
	}
}

/* Has the node sent give-backs whose replies have not come yet? */
static bool
givebacks_unconfirmed(RedisNode *node)
{
	RedisPending *p;

	for (p = node->ctx != NULL ? node->sent_head : NULL; p != NULL; p = p->next)
		if (p->kind == RCMD_GIVEBACK)
			return true;
	return false;
}

/*
 * Read what the nodes' connections have (answers not waited for: a
 * COMMIT's releases), without waiting.  Never ERRORs.
 */
void
redis_take_answers(RedisNode **nodes, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		RedisNode  *node = nodes[i];

		if (node->ctx != NULL && !node->connecting && !node->out_pending &&
			node->sent_head != NULL)
			(void) rconn_read(node);
	}
}

/*
 * At process exit: send the give-backs nodes still keep, and wait, within
 * the command timeout, for the replies of every give-back sent (a COMMIT
 * does not wait for them).  A socket closed with replies unread is reset,
 * and Redis then drops the commands it has not read yet: so a node that
 * does not answer in time is disconnected here; what stays unconfirmed the
 * lease keeper finishes, from the holds' rows.  Quiet: never ERRORs.
 */
void
redis_flush_redo(RedisNode **nodes, int n)
{
	RedisNode  *todo[LOCKEXT_MAX_NODES];
	int			ntodo = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		/* what a closed connection keeps waits for the keeper */
		if (!givebacks_unconfirmed(nodes[i]) || !open_now(nodes[i]))
			continue;
		todo[ntodo++] = nodes[i];
	}
	if (ntodo == 0)
		return;
	pump_quiet(todo, ntodo, PUMP_ALL_REPLIES,
			   deadline_after(lockext_command_timeout_ms), NULL);
	for (i = 0; i < ntodo; i++)
		if (node_busy(todo[i], PUMP_ALL_REPLIES))
			redis_disconnect(todo[i]);
}
