/*-------------------------------------------------------------------------
 *
 * redis_sweep.c
 *	  Release sweeps: pipelined give-backs (release commands) to the nodes
 *	  of a set, on connections already open, and what a session does with
 *	  the answers it did not wait for (at a statement's end, at exit).
 *
 * This is the Redis side of the release path (release.c): it runs after
 * the commit record, on the abort path and at process exit, so it never
 * connects (no name lookup, no passfile, no TLS handshake), never builds a
 * wait set and never looks at interrupts: it waits on the sockets with
 * poll() under a time bound alone, and what a closed connection keeps is
 * sent again on the next one, or finished by the lease keeper from the
 * holds' rows.  Nothing here raises an ERROR or pallocs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>

#include <hiredis/hiredis.h>

#include "storage/latch.h"

#include "redis_conn_int.h"

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
		long		timeout = rwait_ms_left(deadline);
		int			nfds = 0;
		int			rc;
		int			i;

		for (i = 0; i < n; i++)
		{
			RedisNode  *node = nodes[i];

			if (node->ctx == NULL || node->connecting || !rwait_node_busy(node, goal))
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

		/*
		 * never connects: only connections already open are used; one still
		 * being opened takes the give-backs, sent once it is up
		 */
		if (!open_now(node) && node->ctx != NULL)
		{
			for (c = 0; c < ncmds; c++)
				(void) rconn_queue_giveback(node, cmds[c], lens[c], nkeys[c],
											NULL, gbs ? gbs[c] : NULL);
			continue;
		}
		if (!open_now(node))
		{
			/* keep them for the next connection */
			for (c = 0; c < ncmds; c++)
				rconn_keep_for_redo(node, cmds[c], lens[c], nkeys[c],
									gbs ? gbs[c] : NULL);
			if (redis_unsent_hook)
				redis_unsent_hook();
			continue;
		}
		for (c = 0; c < ncmds; c++)
			(void) rconn_queue_giveback(node, cmds[c], lens[c], nkeys[c],
										wait ? &confirmed[c] : NULL,
										gbs ? gbs[c] : NULL);
		(void) rconn_flush(node);
	}

	deadline = rwait_deadline_after(lockext_command_timeout_ms);
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

		if (node->ctx != NULL && node->connecting)
			continue;			/* its give-backs go out once it is up */
		if (!done && rwait_node_busy(node, wait ? PUMP_ALL_REPLIES : PUMP_FLUSHED))
		{
			/* out of time: to the redo list */
			rconn_fail(node, RNODE_TIMED_OUT, "release timed out", NULL, 0);
			if (redis_unsent_hook)
				redis_unsent_hook();
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
			   rwait_deadline_after(lockext_command_timeout_ms), NULL);
	for (i = 0; i < ntodo; i++)
		if (rwait_node_busy(todo[i], PUMP_ALL_REPLIES))
			redis_disconnect(todo[i]);
}
