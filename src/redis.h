/*-------------------------------------------------------------------------
 *
 * redis.h
 *	  The Redis layers of lockext: node sets, connections and non-blocking
 *	  I/O (redis_conn.c), and the lock protocol over N nodes (redis_proto.c).
 *
 * Nothing here calls into the SQL layer or the registry: errors travel up
 * as results, so the same layers can serve a background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOCKEXT_REDIS_H
#define LOCKEXT_REDIS_H

#include "lib/stringinfo.h"

#include "lockext_base.h"
#include "redis_url.h"

/*
 * Redis nodes.  A node set is refcounted: the GUC holds one reference and
 * every Redis hold another, so changing lockext.redis_nodes never strands
 * a held lock on nodes we forgot.
 */
#define LOCKEXT_MAX_NODES REDIS_URL_MAX_NODES

/*
 * Locks per script of many (acquire, verify/renew, release): a script
 * runs alone on a node, stalling every other client there, so many locks
 * go in commands of at most this many, pipelined.
 */
#define LOCKEXT_SCRIPT_MAX_KEYS 1000

/* How many such commands n locks take, and how many locks command c has. */
static inline int
redis_nchunks(int n)
{
	return (n + LOCKEXT_SCRIPT_MAX_KEYS - 1) / LOCKEXT_SCRIPT_MAX_KEYS;
}

static inline int
redis_chunk_len(int n, int c)
{
	return Min(LOCKEXT_SCRIPT_MAX_KEYS, n - c * LOCKEXT_SCRIPT_MAX_KEYS);
}

struct RedisPending;
struct RedisResult;

typedef struct RedisNode
{
	RedisUrl	url;
	char		display[1024];	/* URL with the password masked */
	struct redisContext *ctx;	/* NULL when not connected */
	bool		fd_reserved;	/* AcquireExternalFD() taken for ctx */
	bool		connecting;		/* the non-blocking connect is under way */
	bool		out_pending;	/* commands not yet written to the socket */

	/* TLS (rediss://): redis_tls.c */
	struct ssl_ctx_st *tls_ctx; /* the node's settings, kept across connections */
	struct ssl_st *tls;			/* this connection's TLS session, or NULL */
	int			tls_handshake_wait; /* WL_SOCKET_* the handshake waits for */
	bool		tls_write_wants_read;	/* SSL_write needs the socket readable */
	bool		tls_read_wants_write;	/* SSL_read needs it writable */
	int			tls_write_len;	/* the length SSL_write must be retried with */

	/* Commands sent (or queued) whose replies are due, oldest first. */
	struct RedisPending *sent_head;
	struct RedisPending *sent_tail;
	struct RedisResult *awaiting;	/* where the awaited reply goes */
	int			awaiting_more;	/* awaited replies after it, for the
								 * results that follow it (a pipeline) */
	uint32		scripts_loaded; /* bit per script this connection ran or
								 * sent by EVAL: EVALSHA will find it */

	/*
	 * Releases whose connection was lost before they were confirmed: sent
	 * again, first thing, on the next connection.  Compare-and-delete of a
	 * value unique to one hold is idempotent, so a second copy is harmless.
	 */
	struct RedisPending *redo_head;
	struct RedisPending *redo_tail;
	int			redo_count;
	int			redo_keys;
	size_t		redo_bytes;		/* of the commands kept */

	/* where it is configured: the set's fingerprint, its place in it */
	uint64		set_fp;
	int			index;

	/* this process's view of the node (the keeper's: dlock_redis_nodes) */
	uint64		failures;		/* commands and connections that failed */
	TimestampTz last_failure_at;
	char		last_failure[256];
	int64		last_rtt_us;	/* of the last awaited reply; 0: none yet */

	/* the server's redis_version at the last connect; too old: refused */
	char		version[16];
	bool		too_old;
	int64		too_old_at_us;	/* when it was found too old */
} RedisNode;

typedef struct RedisNodeSet
{
	int			refcount;
	uint64		fingerprint;	/* of the URLs: the same set, anywhere */
	int			n;
	RedisNode	nodes[FLEXIBLE_ARRAY_MEMBER];
} RedisNodeSet;

typedef enum RedisOutcome
{
	RNODE_PENDING = 0,			/* no answer yet (zeroed results) */
	RNODE_OK,					/* a reply, not an error reply */
	RNODE_ERROR_REPLY,			/* an error reply (or failed handshake) */
	RNODE_TIMED_OUT,
	RNODE_UNREACHABLE
} RedisOutcome;

typedef struct RedisResult
{
	RedisOutcome outcome;
	struct redisReply *reply;	/* hiredis-allocated; redis_results_free() */
	int			refusal;		/* SQLSTATE of a refused connection, or 0 */
	bool		not_awaited;	/* sent, but a quorum answered first */
	char		detail[256];	/* what went wrong, never a password */
} RedisResult;

/* One hold of a Redis lock: DlockEntry.backend_data of the redis backend. */
typedef struct RedisHold
{
	RedisNodeSet *set;			/* the nodes it was granted on (a reference) */
	const char *ns;				/* lockext.namespace it was taken in */
	/* the lock value, ours alone: rendered by redis_hold_owner() from... */
	uint64		seq;			/* this backend's count of holds */
	TimestampTz since;			/* when it was asked for */
	/* application_name then (a kept string), or the value given whole */
	const char *text;
	int64		token;			/* fencing token the quorum gave */
	int64		valid_until_us; /* monotonic: lease end minus clock drift */
	int32		lease_ms;		/* at most INT_MAX (sql_api.c checks) */
	bool		owner_given;	/* text is the whole value (the keeper's) */
} RedisHold;					/* 64 bytes: one per Redis hold */

typedef enum RedisAcquireStatus
{
	REDIS_ACQ_GRANTED,
	REDIS_ACQ_BUSY,				/* held by another; wait and retry */
	REDIS_ACQ_OUTAGE,			/* too few nodes answered */
	REDIS_ACQ_REFUSED,			/* nodes refused the command: see refusal */
	REDIS_ACQ_EXPIRED			/* granted, but the lease was over on arrival */
} RedisAcquireStatus;

typedef struct RedisAcquireResult
{
	RedisAcquireStatus status;
	int			granted;		/* nodes that granted (then released) */
	int64		elapsed_us;		/* how long the answers took */
	int64		token;			/* largest fence value of the granting nodes */
	int64	   *tokens;			/* each key's (redis_proto_acquire_many) */
	int			busy_index;		/* which key is held by another */
	int64		holder_pttl_ms; /* longest remaining lease of a holder, or -1 */
	char	   *holder;			/* a holder's owner value, or NULL */
	int			refusal;		/* SQLSTATE of what nodes refused, or 0 */
	StringInfoData detail;		/* each node's outcome */
} RedisAcquireResult;

/* One hold to release, for redis_proto_release_many(). */
typedef struct RedisRelease
{
	const char *key;
	RedisHold  *hold;
	void	   *tag;			/* for redis_confirm_hook, or NULL */
	bool		done;			/* set: a majority confirmed it (or took it) */
} RedisRelease;

/*
 * A release command and who waits for it to be confirmed: shared by its
 * copies on the nodes of a set (queued, or kept for a next connection).
 * When a majority of them answered, redis_confirm_hook gets the tags of
 * the releases it carried, whenever that is: during the sweep, or when a
 * later call reads the answers.  malloc'd; freed with its last copy.
 */
typedef struct RedisGiveback
{
	int			refs;			/* copies still queued or kept */
	int			confirmed;		/* nodes that answered it */
	int			quorum;
	int			ntags;
	void	   *tags[FLEXIBLE_ARRAY_MEMBER];
} RedisGiveback;

/* One lease to renew, for redis_proto_extend_many(). */
typedef struct RedisRenewal
{
	const char *lockkey;		/* <ns>:lock:<key> */
	size_t		lockkey_len;
	const char *owner;
	size_t		owner_len;		/* redis_owner_unique_len(owner) will do */
	int64		lease_ms;
} RedisRenewal;

/* redis_passfile.c: passwords from lockext.redis_passfile */
extern bool redis_passfile_lookup(const RedisUrl *url, char *password,
								  size_t size);

/* redis_nodes.c: the configured node set */
extern void redis_nodes_configure(const RedisUrl *urls, int n);
extern RedisNodeSet *lockext_redis_nodes(void);
extern RedisNodeSet *lockext_redis_nodes_in_use(void);
extern void redis_nodeset_release(RedisNodeSet *set);

/* redis_conn.c */
/* Has a call collected enough answers to stop waiting for the rest? */
typedef bool (*RedisEnoughFn) (const RedisResult *results, int n);

/* A command as argument vectors. */
typedef struct RedisCommand
{
	int			argc;
	const char **argv;
	const size_t *argvlen;
} RedisCommand;

extern void redis_run(RedisNode **nodes, int n, const RedisCommand *cmd,
					  const char *undo, size_t undo_len, int64 extra_ms,
					  bool quiet, RedisEnoughFn enough, RedisResult *results);
/* The next redis_run() waits for a lock to be free (pg_stat_activity). */
extern void redis_run_waits_for_lock(void);
extern void redis_run_formatted(RedisNode **nodes, int n, const char *fmt,
								size_t len, const char *undo, size_t undo_len,
								int64 extra_ms, bool quiet,
								RedisEnoughFn enough, RedisResult *results);
/* Do the replies to command c of a pipeline (redis_run_many) settle it? */
typedef bool (*RedisSettledFn) (const RedisResult *results, int n,
								int ncmds, int c);

extern void redis_run_many(RedisNode **nodes, int n, const char *const *cmds,
						   const size_t *lens, int ncmds, bool quiet,
						   RedisSettledFn settled, RedisResult *results);
extern void redis_run_many_undo(RedisNode **nodes, int n,
								const char *const *cmds, const size_t *lens,
								int ncmds, const char *const *undo,
								const size_t *undo_len, int nundo, bool quiet,
								RedisSettledFn settled, RedisResult *results);
extern void redis_send_givebacks(RedisNode **nodes, int n, char **cmds,
								 const size_t *lens, const int *nkeys,
								 RedisGiveback **gbs, int ncmds, bool wait,
								 int *confirmed);
extern void redis_giveback_unref(RedisGiveback *gb);
extern void redis_results_free(RedisResult *results, int n);
extern void redis_disconnect(RedisNode *node);
extern void redis_forget_redo(RedisNode *node);
extern void redis_abandon_inflight(void);
extern void redis_flush_redo(RedisNode **nodes, int n);
extern void redis_take_answers(RedisNode **nodes, int n);
extern const RedisNode *redis_too_old_node(const RedisNodeSet *set);

/*
 * Hooks for the layers above: every failure of a node (dlock_stats), and
 * the tags of releases a majority confirmed (RedisGiveback).  Both run on
 * the release path: they must not ERROR or allocate.
 */
extern void (*redis_failure_hook) (void);
extern void (*redis_confirm_hook) (void *const *tags, int n);
extern void (*redis_unsent_hook) (void);

/* redis_scripts.c */
enum
{
	SCRIPT_ACQUIRE,
	SCRIPT_RELEASE,
	SCRIPT_EXTEND,
	SCRIPT_HOLDER,
	SCRIPT_EXTEND_MANY,
	SCRIPT_ACQUIRE_MANY,
	SCRIPT_DETECT,
	NSCRIPTS
};

extern const char *redis_script_source(int script);
extern void redis_run_script(RedisNode **nodes, int n, int script, int nkeys,
							 const char **keys, int nargs, const char **args,
							 const char *undo, size_t undo_len, int64 extra_ms,
							 bool quiet, RedisEnoughFn enough,
							 RedisResult *results);
extern void redis_script_eval_argv(int script, int nkeys, const char **keys,
								   const size_t *keylens, int nargs,
								   const char **args, const size_t *arglens,
								   char *nkeys_str, RedisCommand *cmd,
								   const char **argv, size_t *argvlen);

/* redis_release.c */
extern char *redis_format_release(const RedisRelease *rel, int m, size_t *len);
extern int	redis_proto_release_many(RedisRelease *rel, int n, bool wait,
									 char *detail, size_t detail_size);

/* Clock drift allowed for between nodes and us: 1% of the lease + 2 ms. */
static inline int64
redis_drift_us(int64 lease_ms)
{
	return lease_ms * 10 + 2000;
}

/* A majority of n nodes. */
static inline int
quorum_of(int n)
{
	return n / 2 + 1;
}

/* The nodes of a set, as an array of pointers; returns how many. */
static inline int
set_nodes(RedisNodeSet *set, RedisNode **nodes)
{
	int			i;

	for (i = 0; i < set->n; i++)
		nodes[i] = &set->nodes[i];
	return set->n;
}

/* redis_renew.c */
extern void redis_proto_extend_many(RedisNodeSet *set,
									const RedisRenewal *renewals, int n,
									int64 *outcome);

/* redis_acquire.c */
extern void redis_proto_acquire(RedisHold *hold, const char *key,
								int64 lease_ms, RedisAcquireResult *out);
extern void redis_proto_acquire_many(RedisHold **holds, const char **keys,
									 int n, int64 lease_ms,
									 RedisAcquireResult *out);

/* redis_proto.c */
extern char *redis_key(const char *ns, const char *kind, const char *key);
extern void redis_append_outcome(StringInfo detail, RedisNode *node,
								 const char *what);
extern const char *redis_failure_text(const RedisResult *r);
extern bool redis_proto_extend(RedisHold *hold, const char *key,
							   int64 lease_ms, bool *outage, StringInfo detail);
extern bool redis_proto_wait(RedisNodeSet *set, const char *ns,
							 const char *key, int64 wait_ms);
extern void redis_proto_identify(const char *session_id, const char *instance);
extern const char *redis_string_kept(const char *str);
extern int	redis_hold_owner(const RedisHold *hold, char *buf, size_t size);
extern int	redis_hold_owner_len(const RedisHold *hold);
extern void redis_make_owner(RedisHold *hold);
extern char *redis_owner_of(const RedisHold *hold);
extern const char *redis_describe_owner(const char *value);
extern char **redis_proto_detect(RedisNodeSet *set, const char *ns,
								 const char *me, const char **edge_ids,
								 const char **edges, int nedges,
								 int64 ttl_ms, int *npath);
extern void redis_proto_forget_edge(RedisNodeSet *set, const char *ns,
									const char *me);
extern bool redis_proto_holder(RedisNodeSet *set, const char *ns, const char *key,
							   char **owner, int64 *pttl_ms);
extern bool redis_parse_owner(const char *value, DlockHolderInfo *info);
extern size_t redis_owner_unique_len(const char *owner);

#endif							/* LOCKEXT_REDIS_H */
