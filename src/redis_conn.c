/*-------------------------------------------------------------------------
 *
 * redis_conn.c
 *	  Connections to Redis nodes: connect, handshake, command queues and
 *	  replies.
 *
 * One hiredis context per node per backend, in non-blocking mode, reused
 * across calls; hiredis formats commands and parses replies, lockext owns
 * the waiting (redis_wait.c), and the transport of TLS connections
 * (redis_tls.c), for which hiredis 0.14 has none.  Every command sent on
 * a connection is queued (RedisPending) so that each reply finds its
 * owner in order: a caller waiting for it, a handshake step, a reply
 * nobody waits for any more, or a give-back (a release) that must be
 * confirmed.  Give-backs on
 * a connection that is lost before they are confirmed are kept and sent
 * again, first thing, on the node's next connection.
 *
 * At connect, the node's version (INFO server) and eviction policy (INFO
 * memory) are checked (redis_checks.c), pipelined with the handshake: no
 * round trip of their own.
 *
 * Nothing here raises an ERROR or pallocs: hiredis and the queues use
 * malloc, and failures are results.  This runs after the commit record,
 * on the abort path and at process exit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "redis_conn_int.h"

/*
 * Beyond this many give-backs, or bytes of them, waiting for a node, the
 * oldest are dropped (their leases free their locks; the keeper sends the
 * releases of their rows again).
 */
#define MAX_REDO_COMMANDS 10000
#define MAX_REDO_BYTES (64 * 1024 * 1024)

#define REFUSED_BY_LOCKEXT "node refused by lockext"

/* Failures of nodes, for dlock_stats (set by the backend, not the keeper). */
void		(*redis_failure_hook) (void) = NULL;

/* Bumped whenever a connection closes (redis_wait.c rebuilds its set). */
uint64		rconn_generation = 0;

/* Who learns that a majority confirmed a release command (its tags). */
void		(*redis_confirm_hook) (void *const *tags, int n) = NULL;

/* Who should finish soon what a sweep could not send or confirm. */
void		(*redis_unsent_hook) (void) = NULL;


/* Count a failure of node, and remember what it was (dlock_redis_nodes). */
static void
note_failure(RedisNode *node, const char *detail)
{
	node->failures++;
	node->last_failure_at = GetCurrentTimestamp();
	strlcpy(node->last_failure, detail, sizeof(node->last_failure));
	if (redis_failure_hook)
		redis_failure_hook();
}

/*
 * A node's command or connection failed: res (when given) gets the outcome
 * and what went wrong, and node (when given) counts it.
 */
void
rconn_set_failure(RedisNode *node, RedisResult *res, RedisOutcome outcome,
				  const char *what, const char *why)
{
	char		detail[256];

	snprintf(detail, sizeof(detail), "%s%s%s", what,
			 why && why[0] ? ": " : "", why ? why : "");
	if (res != NULL)
	{
		res->outcome = outcome;
		strlcpy(res->detail, detail, sizeof(res->detail));
	}
	if (node != NULL)
		note_failure(node, detail);
}

static bool queue_pending(RedisNode *node, RedisPending *p, const char *cmd,
						  size_t len);

/* A copy of a release command is gone: the last one frees what it shares. */
void
redis_giveback_unref(RedisGiveback *gb)
{
	if (gb != NULL && --gb->refs == 0)
		free(gb);
}

static void
pending_free(RedisPending *p)
{
	redis_giveback_unref(p->gb);
	free(p);
}

static RedisPending *
pending_new(RedisCmdKind kind, const char *cmd, size_t len, int nkeys,
			int *confirmed, RedisGiveback *gb)
{
	RedisPending *p = malloc(offsetof(RedisPending, cmd) + len);

	if (p == NULL)
		return NULL;
	p->next = NULL;
	p->kind = kind;
	p->nkeys = nkeys;
	p->confirmed = confirmed;
	p->gb = gb;
	if (gb != NULL)
		gb->refs++;
	p->queued_us = lockext_now_us();
	p->len = len;
	if (len > 0)
		memcpy(p->cmd, cmd, len);
	return p;
}

static void
push_sent(RedisNode *node, RedisPending *p)
{
	p->next = NULL;
	if (node->sent_tail)
		node->sent_tail->next = p;
	else
		node->sent_head = p;
	node->sent_tail = p;
}

/* Keep a give-back for the node's next connection. */
static void
push_redo(RedisNode *node, RedisPending *p)
{
	p->next = NULL;
	p->confirmed = NULL;		/* whoever counted on it has moved on */
	while (node->redo_head != NULL &&
		   (node->redo_count >= MAX_REDO_COMMANDS ||
			node->redo_bytes + p->len > MAX_REDO_BYTES))
	{
		RedisPending *old = node->redo_head;

		node->redo_head = old->next;
		node->redo_count--;
		node->redo_keys -= old->nkeys;
		node->redo_bytes -= old->len;
		ereport(LOG,
				(errmsg("lockext: dropped %d unconfirmed releases for Redis node %s; their leases will free them",
						old->nkeys, node->display)));
		pending_free(old);
		if (node->redo_head == NULL)
			node->redo_tail = NULL;
	}
	if (node->redo_tail)
		node->redo_tail->next = p;
	else
		node->redo_head = p;
	node->redo_tail = p;
	node->redo_count++;
	node->redo_keys += p->nkeys;
	node->redo_bytes += p->len;
}

/* Keep a give-back that could not be sent for the node's next connection. */
void
rconn_keep_for_redo(RedisNode *node, const char *cmd, size_t len, int nkeys,
					RedisGiveback *gb)
{
	RedisPending *p = pending_new(RCMD_GIVEBACK, cmd, len, nkeys, NULL, gb);

	if (p != NULL)
		push_redo(node, p);
}

/*
 * Queue a formatted command on a connected node; a give-back keeps a copy
 * so it can be sent again.  False when out of memory.
 */
bool
rconn_queue(RedisNode *node, RedisCmdKind kind, const char *cmd, size_t len,
			  int nkeys, int *confirmed)
{
	return kind == RCMD_GIVEBACK ?
		rconn_queue_giveback(node, cmd, len, nkeys, confirmed, NULL) :
		queue_pending(node, pending_new(kind, cmd, 0, nkeys, confirmed, NULL),
					  cmd, len);
}

/* Queue a release command, keeping a copy (and gb's reference). */
bool
rconn_queue_giveback(RedisNode *node, const char *cmd, size_t len, int nkeys,
					 int *confirmed, RedisGiveback *gb)
{
	return queue_pending(node, pending_new(RCMD_GIVEBACK, cmd, len, nkeys,
										   confirmed, gb), cmd, len);
}

static bool
queue_pending(RedisNode *node, RedisPending *p, const char *cmd, size_t len)
{
	if (p == NULL)
		return false;
	if (redisAppendFormattedCommand(node->ctx, cmd, len) != REDIS_OK)
	{
		pending_free(p);
		return false;
	}
	push_sent(node, p);
	node->out_pending = true;
	return true;
}

/*
 * Drop a node's connection; safe to call on a closed one.  Give-backs it
 * carried go back to the node's redo list; other replies are forgotten.
 */
void
redis_disconnect(RedisNode *node)
{
	RedisPending *p;
	RedisPending *next;

	rtls_close(node);
	if (node->ctx != NULL)
	{
		rconn_generation++;		/* wait sets built on it are stale */
		redisFree(node->ctx);
		node->ctx = NULL;
	}
	for (p = node->sent_head; p != NULL; p = next)
	{
		next = p->next;
		if (p->kind == RCMD_GIVEBACK)
			push_redo(node, p);
		else
			pending_free(p);
	}
	node->sent_head = node->sent_tail = NULL;
	node->awaiting = NULL;
	node->awaiting_more = 0;
	node->scripts_loaded = 0;
	node->connecting = false;
	node->out_pending = false;
	if (node->fd_reserved)
	{
		ReleaseExternalFD();
		node->fd_reserved = false;
	}
}

/* Forget the give-backs still waiting for a node that is going away. */
void
redis_forget_redo(RedisNode *node)
{
	RedisPending *p;
	RedisPending *next;

	if (node->redo_keys > 0)
		ereport(LOG,
				(errmsg("lockext: %d unconfirmed releases for Redis node %s are left to their leases",
						node->redo_keys, node->display)));
	for (p = node->redo_head; p != NULL; p = next)
	{
		next = p->next;
		pending_free(p);
	}
	node->redo_head = node->redo_tail = NULL;
	node->redo_count = node->redo_keys = 0;
	node->redo_bytes = 0;
}

/* Fail the node's awaited reply, if any, and drop the connection. */
void
rconn_fail(RedisNode *node, RedisOutcome outcome, const char *what,
		  const char *why, int refusal)
{
	if (node->awaiting != NULL && node->awaiting->outcome == RNODE_PENDING)
	{
		rconn_set_failure(node, node->awaiting, outcome, what, why);
		node->awaiting->refusal = refusal;
	}
	else
		rconn_set_failure(node, NULL, outcome, what, why);
	redis_disconnect(node);
}

static bool
append_handshake(RedisNode *node, RedisCmdKind kind, int argc,
				 const char **argv)
{
	char	   *cmd;
	int			len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
	bool		ok;

	if (len < 0)
		return false;
	ok = rconn_queue(node, kind, cmd, len, 0, NULL);
	redisFreeCommand(cmd);
	return ok;
}

/*
 * Start a non-blocking connect, and queue the handshake (AUTH, SELECT, the
 * version and eviction checks) and the give-backs left from a lost
 * connection in front of whatever follows.  Returns false with res filled
 * when the connect failed at once.
 */
bool
rconn_connect(RedisNode *node, RedisResult *res)
{
	redisContext *ctx;
	const char *argv[3];
	char		password[REDIS_URL_MAX_PASSWORD + 1];
	char		db[16];
	RedisPending *p;
	RedisPending *next;
	bool		ok = true;

	if (!AcquireExternalFD())
	{
		rconn_set_failure(node, res, RNODE_UNREACHABLE, "cannot connect",
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
		rconn_set_failure(node, res, RNODE_UNREACHABLE, "cannot connect",
					ctx ? ctx->errstr : "out of memory");
		if (ctx)
			redisFree(ctx);
		ReleaseExternalFD();
		node->fd_reserved = false;
		return false;
	}
	/* programs run by COPY ... TO PROGRAM must not inherit the socket */
	(void) fcntl(ctx->fd, F_SETFD, FD_CLOEXEC);
	node->ctx = ctx;
	node->connecting = true;

	/* the URL's password, else lockext.redis_passfile's */
	if (node->url.has_password)
		strlcpy(password, node->url.password, sizeof(password));
	if (node->url.has_password ||
		redis_passfile_lookup(&node->url, password, sizeof(password)))
	{
		argv[0] = "AUTH";
		if (node->url.user[0] != '\0')
		{
			argv[1] = node->url.user;
			argv[2] = password;
			ok &= append_handshake(node, RCMD_HANDSHAKE, 3, argv);
		}
		else
		{
			argv[1] = password;
			ok &= append_handshake(node, RCMD_HANDSHAKE, 2, argv);
		}
		explicit_bzero(password, sizeof(password));
	}
	if (node->url.db != 0)
	{
		snprintf(db, sizeof(db), "%d", node->url.db);
		argv[0] = "SELECT";
		argv[1] = db;
		ok &= append_handshake(node, RCMD_HANDSHAKE, 2, argv);
	}
	/* one section per INFO: Redis before 7.0 takes no more */
	argv[0] = "INFO";
	argv[1] = "server";
	ok &= append_handshake(node, RCMD_VERSION, 2, argv);
	argv[1] = "memory";
	ok &= append_handshake(node, RCMD_INFO, 2, argv);

	for (p = node->redo_head; ok && p != NULL; p = next)
	{
		next = p->next;
		if (redisAppendFormattedCommand(ctx, p->cmd, p->len) != REDIS_OK)
		{
			ok = false;
			break;
		}
		node->redo_head = next;
		node->redo_count--;
		node->redo_keys -= p->nkeys;
		node->redo_bytes -= p->len;
		push_sent(node, p);
	}
	if (node->redo_head == NULL)
		node->redo_tail = NULL;
	if (!ok)
	{
		rconn_set_failure(node, res, RNODE_UNREACHABLE, "cannot connect", "out of memory");
		redis_disconnect(node);
		return false;
	}
	return true;
}

/*
 * Has a non-blocking connect (and the TLS handshake of a rediss:// node)
 * completed?  False when it is still under way, or failed (the connection
 * is then dropped).
 */
bool
rconn_connect_finished(RedisNode *node)
{
	char		why[256];

	if (node->tls == NULL)
	{
		int			err = 0;
		socklen_t	len = sizeof(err);

		if (getsockopt(node->ctx->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0)
		{
			rconn_fail(node, RNODE_UNREACHABLE, "cannot connect", strerror(err), 0);
			return false;
		}
		if (node->url.tls && !rtls_start(node, why, sizeof(why)))
		{
			rconn_fail(node, RNODE_UNREACHABLE, "TLS setup failed", why, 0);
			return false;
		}
	}
	if (node->tls != NULL)
	{
		int			r = rtls_handshake(node, why, sizeof(why));

		if (r < 0)
			rconn_fail(node, RNODE_UNREACHABLE, "TLS handshake failed", why, 0);
		if (r <= 0)
			return false;
	}
	node->ctx->flags |= REDIS_CONNECTED;
	node->connecting = false;
	return true;
}

/* The socket condition the node's I/O waits for (WL_SOCKET_*). */
int
rconn_wait_events(RedisNode *node)
{
	if (node->connecting)
		return node->tls ? node->tls_handshake_wait : WL_SOCKET_WRITEABLE;
	if ((node->out_pending && !node->tls_write_wants_read) ||
		node->tls_read_wants_write)
		return WL_SOCKET_WRITEABLE;
	return WL_SOCKET_READABLE;
}

/* Write what the socket takes; *done when all is written. */
static bool
write_some(RedisNode *node, bool *done, char *why, size_t whylen)
{
	int			written = 0;

	if (node->tls != NULL)
		return rtls_write(node, done, why, whylen);
	if (redisBufferWrite(node->ctx, &written) != REDIS_OK)
	{
		strlcpy(why, node->ctx->errstr, whylen);
		return false;
	}
	*done = written != 0;
	return true;
}

/* Write what the socket takes; false (connection dropped) on an error. */
bool
rconn_flush(RedisNode *node)
{
	bool		done = false;
	char		why[256];

	if (!write_some(node, &done, why, sizeof(why)))
	{
		rconn_fail(node, RNODE_UNREACHABLE, "cannot send", why, 0);
		return false;
	}
	if (done)
		node->out_pending = false;
	return true;
}

/*
 * Write what the socket takes now, and leave errors to whoever reads the
 * connection next (an undo sent just before the connection is dropped).
 */
void
rconn_write_now(RedisNode *node)
{
	bool		done;
	char		why[256];

	(void) write_some(node, &done, why, sizeof(why));
}

/*
 * A setup reply (handshake, version and eviction checks) that makes the
 * connection unusable: free it and its command, and fail the connection.
 * why may point into the reply.  Returns false, for take_reply().
 */
static bool
refuse_connection(RedisNode *node, redisReply *r, RedisPending *p,
				  const char *what, const char *why, int refusal)
{
	char		copy[256];

	strlcpy(copy, why, sizeof(copy));
	freeReplyObject(r);
	pending_free(p);
	rconn_fail(node, RNODE_ERROR_REPLY, what, copy, refusal);
	return false;
}

/*
 * Give one reply to whoever it belongs to.  False, with the connection
 * dropped, when the connection cannot be used.
 */
static bool
take_reply(RedisNode *node, redisReply *r)
{
	RedisPending *p = node->sent_head;
	char		why[256];

	if (p == NULL)
	{
		freeReplyObject(r);
		rconn_fail(node, RNODE_UNREACHABLE, "protocol error",
				  "a reply to no command", 0);
		return false;
	}
	node->sent_head = p->next;
	if (node->sent_head == NULL)
		node->sent_tail = NULL;

	switch (p->kind)
	{
		case RCMD_HANDSHAKE:
			/* Redis's own text never contains the password */
			if (r->type == REDIS_REPLY_ERROR)
				return refuse_connection(node, r, p,
										 "authentication or database selection failed",
										 r->str, 0);
			break;
		case RCMD_VERSION:
		case RCMD_INFO:
			/* no AUTH sent to a server that wants one, or INFO denied */
			if (r->type == REDIS_REPLY_ERROR)
				return refuse_connection(node, r, p,
										 strncmp(r->str, "NOAUTH", 6) == 0 ?
										 "authentication required (no password in the URL or lockext.redis_passfile)" :
										 "INFO refused", r->str, 0);
			if (p->kind == RCMD_VERSION ?
				!rcheck_version(node, r, why, sizeof(why)) :
				!rcheck_eviction(r, why, sizeof(why)))
				return refuse_connection(node, r, p, REFUSED_BY_LOCKEXT, why,
										 ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
			break;
		case RCMD_AWAITED:
			if (node->awaiting != NULL)
			{
				RedisResult *res = node->awaiting;

				res->reply = r;
				res->outcome = RNODE_OK;
				node->last_rtt_us = lockext_now_us() - p->queued_us;
				/* NOSCRIPT only asks for the script itself (EVAL) */
				if (r->type == REDIS_REPLY_ERROR)
					rconn_set_failure(strncmp(r->str, "NOSCRIPT", 8) == 0 ?
									  NULL : node,
									  res, RNODE_ERROR_REPLY, "error", r->str);
				/* a pipeline's next reply goes to the next result */
				node->awaiting = node->awaiting_more > 0 ? res + 1 : NULL;
				if (node->awaiting_more > 0)
					node->awaiting_more--;
				pending_free(p);
				return true;	/* the reply is the caller's now */
			}
			break;
		case RCMD_SKIP:
		case RCMD_GIVEBACK:
			if (r->type == REDIS_REPLY_ERROR)
				ereport(LOG,
						(errmsg("lockext: Redis node %s refused a command whose answer was not awaited: %s",
								node->display, r->str)));
			else if (p->kind == RCMD_GIVEBACK)
			{
				if (p->confirmed != NULL)
					(*p->confirmed)++;
				/* a majority answered: whoever waits for it learns it */
				if (p->gb != NULL && ++p->gb->confirmed == p->gb->quorum &&
					redis_confirm_hook != NULL)
					redis_confirm_hook(p->gb->tags, p->gb->ntags);
			}
			break;
	}
	freeReplyObject(r);
	pending_free(p);
	return true;
}

/* Read what arrived and hand out the complete replies. */
bool
rconn_read(RedisNode *node)
{
	void	   *reply;
	char		why[256];

	if (node->tls != NULL ? !rtls_read(node, why, sizeof(why)) :
		redisBufferRead(node->ctx) != REDIS_OK)
	{
		rconn_fail(node, RNODE_UNREACHABLE, "connection lost",
				   node->tls != NULL ? why : node->ctx->errstr, 0);
		return false;
	}
	for (;;)
	{
		if (redisGetReplyFromReader(node->ctx, &reply) != REDIS_OK)
		{
			rconn_fail(node, RNODE_UNREACHABLE, "protocol error",
					  node->ctx->errstr, 0);
			return false;
		}
		if (reply == NULL)
			return true;		/* need more input */
		if (!take_reply(node, (redisReply *) reply))
			return false;
	}
}

/*
 * Read what an idle connection has (answers we did not wait for), without
 * waiting: a connection the server closed is noticed here rather than
 * taken for a working one.  Then make sure the node is connected (a node
 * found too old lately is refused at once).
 */
bool
rconn_ready(RedisNode *node, RedisResult *res, bool *fresh)
{
	char		why[64];

	*fresh = false;
	if (node->ctx != NULL && !node->connecting && !node->out_pending)
		(void) rconn_read(node);
	if (node->ctx != NULL)
		return true;
	if (rcheck_known_old(node, why, sizeof(why)))
	{
		rconn_set_failure(node, res, RNODE_ERROR_REPLY, REFUSED_BY_LOCKEXT, why);
		res->refusal = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		return false;
	}
	if (!rconn_connect(node, res))
		return false;
	*fresh = true;
	return true;
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
