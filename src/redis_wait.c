/*-------------------------------------------------------------------------
 *
 * redis_wait.c
 *	  Waiting on Redis connections: one command to N nodes at once, and
 *	  pipelines of many awaited commands, on the latch and the sockets.
 *	  (Release sweeps, which may not wait this way, are redis_sweep.c's.)
 *
 * redis_run() sends one command to a set of nodes and waits on the latch
 * and all their sockets together, so a quorum costs one round trip of the
 * slowest answering node, cancel and termination work while waiting, and
 * every wait has a time bound: the connect timeout while connecting, the
 * command timeout (plus what a blocking command may legitimately take)
 * while talking.  When a command's answer is not learned (time-out,
 * cancel, termination), its undo follows it on the same connection: Redis
 * runs one connection's commands in order.  redis_run_many() writes many
 * commands to each node at once and is done when a majority replied to
 * them all: the lease keeper's renewals, which a stopped node must not
 * hold up.
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

#include <limits.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "redis_conn_int.h"


/* The call in progress, for redis_abandon_inflight(). */
static struct
{
	RedisNode  *nodes[LOCKEXT_MAX_NODES];
	int			n;
	const char *const *undo;	/* formatted undo commands (NULL: none) */
	const size_t *undo_len;
	int			nundo;
	const char *one_undo;		/* redis_run()'s one */
	size_t		one_len;
}			inflight;

/* The backend's wait set, for the sockets it was built for. */
static WaitEventSet *wes = NULL;
static redisContext *wes_ctx[LOCKEXT_MAX_NODES];
static int	wes_n = -1;
static uint64 wes_generation;	/* rconn_generation it was built at */

/*
 * What pg_stat_activity shows while pump() waits: a reply, or (for the
 * one redis_run() after redis_run_waits_for_lock()) a lock to be free.
 */
static LockextWaitEvent pump_event = LOCKEXT_WAIT_REDIS_IO;
static LockextWaitEvent next_run_event = LOCKEXT_WAIT_REDIS_IO;

static void
forget_set(void)
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
	if (wes != NULL && wes_n == nctx && wes_generation == rconn_generation &&
		memcmp(wes_ctx, ctxs, nctx * sizeof(redisContext *)) == 0)
		return wes;

	forget_set();
	PG_TRY();
	{
		wes = lockext_create_wait_event_set(LOCKEXT_MAX_NODES + 2);
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
	wes_generation = rconn_generation;
	return wes;
}

/* Milliseconds until a monotonic deadline (in us), rounded up, >= 0. */
long
rwait_ms_left(int64 deadline_us)
{
	int64		left = deadline_us - lockext_now_us();

	if (left <= 0)
		return 0;
	if (left >= (int64) INT_MAX * 1000)
		return INT_MAX;
	return (long) ((left + 999) / 1000);
}

/* now + ms, saturating: an infinite wait must not wrap around. */
int64
rwait_deadline_after(int64 ms)
{
	int64		now = lockext_now_us();

	if (ms >= (PG_INT64_MAX - now) / 1000)
		return PG_INT64_MAX;
	return now + ms * 1000;
}

bool
rwait_node_busy(RedisNode *node, PumpGoal goal)
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
		long		timeout = rwait_ms_left(deadline);
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
				if (rwait_ms_left(connect_deadline) == 0)
				{
					rconn_fail(node, RNODE_TIMED_OUT, node->tls ?
							   "TLS handshake timed out" : "connect timed out",
							   NULL, 0);
					continue;
				}
				timeout = Min(timeout, rwait_ms_left(connect_deadline));
			}
			busy += rwait_node_busy(node, goal);
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
							   lockext_wait_event_cached(pump_event));

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
	bool		queued = false;
	int			u;

	for (u = 0; u < inflight.nundo && node->ctx != NULL; u++)
		if (inflight.undo[u] != NULL)
			queued |= rconn_queue(node, RCMD_GIVEBACK, inflight.undo[u],
								  inflight.undo_len[u], 1, NULL);
	if (queued)
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
 * Stop waiting for the node's awaited replies: they will be skipped when
 * they come, in order, so the connection stays.
 */
static void
skip_awaited(RedisNode *node)
{
	RedisPending *p;

	for (p = node->sent_head; p != NULL; p = p->next)
		if (p->kind == RCMD_AWAITED)
			p->kind = RCMD_SKIP;
	node->awaiting = NULL;
	node->awaiting_more = 0;
}

/* What ran out of time on a node that still owes an answer. */
static const char *
timed_out_what(RedisNode *node)
{
	if (!node->connecting)
		return "command timed out";
	return node->tls ? "TLS handshake timed out" : "connect timed out";
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

	connect_deadline = rwait_deadline_after(lockext_connect_timeout_ms);
	deadline = rwait_deadline_after(lockext_command_timeout_ms + extra_ms +
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

		if (node->awaiting != &results[i])
			continue;
		if (enough != NULL && enough(results, n) && !node->connecting)
		{
			/* a quorum answered: stop waiting for the rest */
			rconn_set_failure(NULL, &results[i], RNODE_TIMED_OUT,
							  "not waited for (a quorum had answered)", NULL);
			results[i].not_awaited = true;
			skip_awaited(node);
			continue;
		}
		rconn_set_failure(node, &results[i], RNODE_TIMED_OUT,
						  timed_out_what(node), NULL);
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

void
redis_run_waits_for_lock(void)
{
	next_run_event = LOCKEXT_WAIT_REDIS_LOCK;
}

/* redis_run() of a command already in the protocol's form. */
void
redis_run_formatted(RedisNode **nodes, int n, const char *fmt, size_t len,
					const char *undo, size_t undo_len, int64 extra_ms,
					bool quiet, RedisEnoughFn enough, RedisResult *results)
{
	Assert(n <= LOCKEXT_MAX_NODES);
	pump_event = next_run_event;
	next_run_event = LOCKEXT_WAIT_REDIS_IO;
	/* the caller keeps undo alive until we return, or exit */
	inflight.one_undo = undo;
	inflight.one_len = undo_len;
	inflight.undo = &inflight.one_undo;
	inflight.undo_len = &inflight.one_len;
	inflight.nundo = undo != NULL ? 1 : 0;

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
		inflight.nundo = 0;
	}
	PG_END_TRY();
}

/*
 * Pipelines (redis_run_many): node i's answer to command c goes to
 * results[i * ncmds + c]; take_reply() moves node->awaiting along the
 * node's results as its replies come, in order.
 */
static struct
{
	int			ncmds;
	int			quorum;
	RedisSettledFn settled_fn;	/* NULL: a majority replied */
	int			replied;		/* a majority replied to the commands before */
	int			settled;		/* and settled_fn() holds for those before */
}			pipeline;

/* Has a majority of the nodes replied to every command of the pipeline? */
static bool
pipeline_replied(const RedisResult *results, int n)
{
	for (; pipeline.replied < pipeline.ncmds; pipeline.replied++)
	{
		const RedisResult *res = &results[pipeline.replied];
		int			replied = 0;
		int			i;

		for (i = 0; i < n; i++)
			replied += (res[i * pipeline.ncmds].outcome == RNODE_OK);
		if (replied < pipeline.quorum)
			return false;
	}
	return true;
}

/* ... and is every command settled, as the caller sees it? */
static bool
pipeline_settled(const RedisResult *results, int n)
{
	if (!pipeline_replied(results, n))
		return false;
	if (pipeline.settled_fn == NULL)
		return true;
	for (; pipeline.settled < pipeline.ncmds; pipeline.settled++)
		if (!pipeline.settled_fn(results, n, pipeline.ncmds, pipeline.settled))
			return false;
	return true;
}

/* How many replies have come in, to tell a long pipeline from a stall. */
static int
replies_in(const RedisResult *results, int count)
{
	int			in = 0;
	int			k;

	for (k = 0; k < count; k++)
		in += (results[k].reply != NULL);
	return in;
}

/*
 * Has the node left a command unanswered for longer than the command
 * timeout (stopped, cut off, or still blocked in a command nobody waits
 * for)?  Then that command has timed out.
 */
static bool
node_behind(RedisNode *node)
{
	return node->ctx != NULL && !node->connecting && node->sent_head != NULL &&
		lockext_now_us() - node->sent_head->queued_us >
		lockext_command_timeout_ms * INT64CONST(1000);
}

/* Results a lost connection left without an answer take its reason. */
static void
fill_unanswered(RedisResult *res, int ncmds)
{
	const RedisResult *why = NULL;
	int			c;

	for (c = 0; c < ncmds; c++)
	{
		if (res[c].outcome == RNODE_PENDING && why != NULL)
		{
			res[c].outcome = why->outcome;
			res[c].refusal = why->refusal;
			memcpy(res[c].detail, why->detail, sizeof(res[c].detail));
		}
		else if (res[c].outcome == RNODE_PENDING)
			rconn_set_failure(NULL, &res[c], RNODE_UNREACHABLE,
							  "connection lost", NULL);
		else if (res[c].outcome != RNODE_OK && res[c].reply == NULL)
			why = &res[c];		/* a failure, not an error reply */
	}
}

/*
 * Queue every command on the node, behind what it still owes; its replies
 * go to res[0..ncmds).  *fresh: the connection was opened here.
 */
static void
pipeline_send(RedisNode *node, const char *const *cmds, const size_t *lens,
			  int ncmds, RedisResult *res, bool *fresh)
{
	int			c;

	memset(res, 0, ncmds * sizeof(RedisResult));
	/* what a slow node could not take before may go now */
	if (node->ctx != NULL && !node->connecting && node->out_pending)
		(void) rconn_flush(node);
	if (rconn_ready(node, res, fresh) && !*fresh && node_behind(node))
	{
		/*
		 * Queued behind an answer overdue, these would wait for it, and
		 * the node's queue would grow every round while it is stopped.
		 */
		rconn_fail(node, RNODE_TIMED_OUT, "command timed out", NULL, 0);
		(void) rconn_ready(node, res, fresh);
	}
	for (c = 0; node->ctx != NULL && c < ncmds; c++)
		if (!rconn_queue(node, RCMD_AWAITED, cmds[c], lens[c], 0, NULL))
		{
			/* what was queued goes with the connection */
			rconn_set_failure(node, res, RNODE_UNREACHABLE, "cannot send",
							  "out of memory");
			redis_disconnect(node);
		}
	if (node->ctx == NULL)
	{
		fill_unanswered(res, ncmds);
		return;
	}
	node->awaiting = res;
	node->awaiting_more = ncmds - 1;
	/* an open socket is nearly always writable: send at once */
	if (!node->connecting)
		(void) rconn_flush(node);
}

/*
 * An ERROR while waiting: nobody will read the results; the undo follows
 * what may still run.
 */
static void
pipeline_abandon(RedisNode **nodes, int n, RedisResult *results)
{
	int			i;

	for (i = 0; i < n; i++)
		if (nodes[i]->awaiting != NULL)
		{
			if (!nodes[i]->connecting)
				give_back_undo(nodes[i]);
			skip_awaited(nodes[i]);
		}
	redis_results_free(results, n * pipeline.ncmds);
	inflight.n = 0;
}

/*
 * Wait until a majority replied to every command, or no more answers can
 * come in time.  The deadline moves on while answers keep coming: a long
 * pipeline is not a stalled node.  Replies that leave a command unsettled
 * (they disagree) are worth waiting for more: as long again as the
 * majority took, no more, since a stopped node will not answer.
 */
static void
pipeline_wait(RedisNode **nodes, int n, RedisResult *results,
			  bool any_connecting, bool quiet)
{
	int64		begun = lockext_now_us();
	int64		connect_deadline = rwait_deadline_after(lockext_connect_timeout_ms);
	int64		deadline = rwait_deadline_after(lockext_command_timeout_ms +
										  (any_connecting ? lockext_connect_timeout_ms : 0));
	int			in = replies_in(results, n * pipeline.ncmds);
	int64		now;

	while (!pipeline_replied(results, n))
	{
		int			now_in;

		pump(nodes, n, PUMP_AWAITED, deadline, connect_deadline, quiet,
			 pipeline_replied, results);
		if (pipeline_replied(results, n))
			break;
		now_in = replies_in(results, n * pipeline.ncmds);
		if (rwait_ms_left(deadline) > 0 || now_in == in)
			return;				/* nothing more can come, or out of time */
		in = now_in;
		deadline = rwait_deadline_after(lockext_command_timeout_ms);
	}
	now = lockext_now_us();
	if (!pipeline_settled(results, n))
		pump(nodes, n, PUMP_AWAITED, Min(deadline, now + (now - begun) + 1000),
			 connect_deadline, quiet, pipeline_settled, results);
}

/* The node's part of a finished pipeline. */
static void
pipeline_finish(RedisNode *node, RedisResult *res, int ncmds, bool answered)
{
	if (node->awaiting != NULL && answered && !node->connecting)
	{
		int			c;

		/* a majority replied: the rest is skipped when it comes */
		for (c = 0; c < ncmds; c++)
			if (res[c].outcome == RNODE_PENDING)
			{
				rconn_set_failure(NULL, &res[c], RNODE_TIMED_OUT,
								  "not waited for (a quorum had answered)",
								  NULL);
				res[c].not_awaited = true;
			}
		skip_awaited(node);
	}
	else if (node->awaiting != NULL)
	{
		if (!node->connecting)
			give_back_undo(node);
		rconn_fail(node, RNODE_TIMED_OUT, timed_out_what(node), NULL, 0);
	}
	fill_unanswered(res, ncmds);
}

/* redis_run_many() inside its error handler. */
static void
run_pipeline(RedisNode **nodes, int n, const char *const *cmds,
			 const size_t *lens, int ncmds, bool quiet, RedisResult *results)
{
	bool		fresh[LOCKEXT_MAX_NODES];
	bool		any_connecting = false;
	bool		again = false;
	bool		answered;
	int			i;

	pump_event = LOCKEXT_WAIT_REDIS_IO;
	for (i = 0; i < n; i++)
	{
		pipeline_send(nodes[i], cmds, lens, ncmds, &results[i * ncmds],
					  &fresh[i]);
		any_connecting |= fresh[i];
	}
	pipeline_wait(nodes, n, results, any_connecting, quiet);

	/* idle connections found dead (the server restarted): once more */
	for (i = 0; i < n && !pipeline_replied(results, n); i++)
		if (!fresh[i] && results[i * ncmds].outcome == RNODE_UNREACHABLE)
		{
			pipeline_send(nodes[i], cmds, lens, ncmds, &results[i * ncmds],
						  &fresh[i]);
			again = true;
		}
	if (again)
		pipeline_wait(nodes, n, results, true, quiet);

	answered = pipeline_replied(results, n);
	for (i = 0; i < n; i++)
		pipeline_finish(nodes[i], &results[i * ncmds], ncmds, answered);
}

/*
 * Send ncmds commands to each of n nodes, pipelined (all written at once,
 * replies read as they come), and collect node i's answer to command c in
 * results[i * ncmds + c].  Returns once a majority replied to every
 * command and settled() (when given) says each has what it needs, or a
 * little after the majority's replies if not (see pipeline_wait()): the
 * other nodes' replies are skipped when they come, on the same
 * connections, so a slow node delays nobody.  Else it waits while answers
 * keep coming; a node silent for the command timeout has timed out, and
 * its connection is dropped.  So is, up front, one that has left any
 * command unanswered for that long (a stopped node): a new one is opened.
 * For commands that do not block and may run twice: an idle connection
 * found dead is opened again and sent them once more.  With quiet, never
 * ERRORs.  The caller frees the replies (redis_results_free(results,
 * n * ncmds)), except after an ERROR.
 */
void
redis_run_many(RedisNode **nodes, int n, const char *const *cmds,
			   const size_t *lens, int ncmds, bool quiet,
			   RedisSettledFn settled, RedisResult *results)
{
	redis_run_many_undo(nodes, n, cmds, lens, ncmds, NULL, NULL, 0, quiet,
						settled, results);
}

/*
 * redis_run_many() with undo commands, kept alive by the caller: sent
 * behind the commands where a node's answers are not learned (timed out,
 * interrupted, a FATAL), on the same connection and the next one.
 */
void
redis_run_many_undo(RedisNode **nodes, int n, const char *const *cmds,
					const size_t *lens, int ncmds, const char *const *undo,
					const size_t *undo_len, int nundo, bool quiet,
					RedisSettledFn settled, RedisResult *results)
{
	Assert(n <= LOCKEXT_MAX_NODES && ncmds > 0);
	pipeline.ncmds = ncmds;
	pipeline.quorum = quorum_of(n);
	pipeline.settled_fn = settled;
	pipeline.replied = 0;
	pipeline.settled = 0;
	/* a FATAL while waiting: redis_abandon_inflight() drops them */
	inflight.undo = undo;
	inflight.undo_len = undo_len;
	inflight.nundo = nundo;
	inflight.n = n;
	memcpy(inflight.nodes, nodes, n * sizeof(RedisNode *));
	PG_TRY();
	{
		run_pipeline(nodes, n, cmds, lens, ncmds, quiet, results);
	}
	PG_CATCH();
	{
		pipeline_abandon(nodes, n, results);
		inflight.nundo = 0;
		PG_RE_THROW();
	}
	PG_END_TRY();
	inflight.n = 0;
	inflight.nundo = 0;
}

