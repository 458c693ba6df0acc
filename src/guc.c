/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  lockext's configuration parameters, and the choice of backend.
 *
 * Whatever could weaken mutual exclusion (backend, nodes, namespace,
 * fallback, network bounds) is superuser-only; the wait, lease and
 * verification defaults are anyone's.  lockext.redis_nodes is parsed by its
 * check hook, hidden from non-superusers, and shown with passwords masked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "lockext.h"
#include "local_lock.h"
#include "shared_locks.h"
#include "redis.h"

int			lockext_backend_choice = LOCKEXT_BACKEND_AUTO;
int			lockext_wait_timeout_ms = 30 * 1000;
int			lockext_lease_ms = 30 * 1000;
char	   *lockext_namespace = NULL;
int			lockext_fallback = LOCKEXT_FALLBACK_OFF;
int			lockext_connect_timeout_ms = 1000;
int			lockext_command_timeout_ms = 1000;
int			lockext_verify_on_commit = LOCKEXT_VERIFY_AUTO;
bool		lockext_preloaded = false;

char	   *lockext_redis_passfile = NULL;

/* Is this backend running ALTER SYSTEM?  (sql_api.c's utility hook says.) */
bool		lockext_in_alter_system = false;
int			lockext_max_hold_ms = 0;
int			lockext_max_idle_hold_ms = 0;
bool		lockext_session_locks = true;
bool		lockext_debug_skip_exit_cleanup = false;

/* Shorter leases cannot outlast the clock-drift allowance (1% + 2 ms). */
const int	lockext_min_lease_ms = 10;

static char *redis_nodes_string = NULL;

static const struct config_enum_entry backend_options[] = {
	{"auto", LOCKEXT_BACKEND_AUTO, false},
	{"advisory", LOCKEXT_BACKEND_ADVISORY, false},
	{"redis", LOCKEXT_BACKEND_REDIS, false},
	{NULL, 0, false}
};

static const struct config_enum_entry fallback_options[] = {
	{"off", LOCKEXT_FALLBACK_OFF, false},
	{"advisory", LOCKEXT_FALLBACK_ADVISORY, false},
	{NULL, 0, false}
};

static const struct config_enum_entry verify_options[] = {
	{"auto", LOCKEXT_VERIFY_AUTO, false},
	{"always", LOCKEXT_VERIFY_ALWAYS, false},
	{"off", LOCKEXT_VERIFY_OFF, false},
	{NULL, 0, false}
};

/*
 * The parsed lockext.redis_nodes (GUC "extra", malloc'd by the hook).  A
 * value from the server's configuration that does not parse is kept as
 * "broken", with the parser's message (which never quotes the input, so
 * never a password): locking then fails until the value is fixed, rather
 * than silently falling back to local-only locks.
 */
typedef struct ParsedNodes
{
	int			n;
	bool		broken;
	char		error[256];
	RedisUrl	urls[FLEXIBLE_ARRAY_MEMBER];
} ParsedNodes;

static ParsedNodes *parsed_nodes = NULL;

/*
 * May a value from this source that does not parse be kept as "broken"?
 * Values from the server's configuration (postgresql.conf, the command line,
 * ALTER DATABASE/ROLE ... SET) cannot be refused: PostgreSQL would log a
 * WARNING and keep the default, an empty list, which means local-only locks.
 * Interactive SET, the validation of ALTER DATABASE/ROLE (PGC_S_TEST) and of
 * ALTER SYSTEM (PGC_S_FILE inside the statement) still refuse it up front.
 */
static bool
keep_broken_value(GucSource source)
{
	return source > PGC_S_DEFAULT && source < PGC_S_INTERACTIVE &&
		!lockext_in_alter_system;
}

static bool
check_redis_nodes(char **newval, void **extra, GucSource source)
{
	RedisUrl	urls[LOCKEXT_MAX_NODES];
	char		err[256];
	int			n;
	ParsedNodes *parsed;

	memset(urls, 0, sizeof(urls));
	n = redis_url_parse_list(*newval ? *newval : "", urls, LOCKEXT_MAX_NODES,
							 err, sizeof(err));
	if (n < 0 && !keep_broken_value(source))
	{
		GUC_check_errmsg("invalid value for parameter \"lockext.redis_nodes\": %s", err);
		GUC_check_errhint("Use a comma-separated list of redis://[user[:password]@]host[:port][/db], rediss://... (TLS, with ?sslmode=...&sslrootcert=...) or unix:///path[?db=N].");
		return false;
	}
	/* GUC extra data: malloc'd, or guc_malloc'd from 16 on */
	parsed = lockext_guc_malloc(offsetof(ParsedNodes, urls) + Max(n, 1) * sizeof(RedisUrl));
	if (parsed == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	parsed->broken = (n < 0);
	parsed->error[0] = '\0';
	if (parsed->broken)
	{
		strlcpy(parsed->error, err, sizeof(parsed->error));
		n = 0;
		/* once, from the postmaster, not from every backend at reload */
		if (!IsUnderPostmaster)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("invalid value for parameter \"lockext.redis_nodes\": %s", err),
					 errdetail("Every lock on the redis and auto backends fails until the value is fixed and the configuration reloaded.")));
	}
	parsed->n = n;
	memcpy(parsed->urls, urls, n * sizeof(RedisUrl));
	*extra = parsed;

	/*
	 * ALTER ROLE/DATABASE ... SET and CREATE FUNCTION ... SET store the
	 * value in catalogs every role may read (pg_db_role_setting, pg_roles,
	 * pg_proc): no password goes there.  They validate with PGC_S_TEST;
	 * ALTER SYSTEM does too, but its file is the superuser's alone.
	 */
	if (source == PGC_S_TEST && !lockext_in_alter_system)
	{
		int			i;

		for (i = 0; i < n; i++)
			if (urls[i].has_password)
			{
				lockext_guc_free(parsed);
				*extra = NULL;
				GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
				GUC_check_errmsg("a password in lockext.redis_nodes cannot be stored in a role, database or function setting");
				GUC_check_errdetail("Every role can read those settings in the system catalogs.");
				GUC_check_errhint("Remove it from the URL and put it in lockext.redis_passfile (host:port:user:password, mode 0600).");
				return false;
			}
	}

	/*
	 * A password in the setting reaches the server log (a reload logs the
	 * new value) and anyone who may read the configuration: say where it
	 * belongs, once from the postmaster, or to whoever SETs it.
	 */
	if (!IsUnderPostmaster || source >= PGC_S_INTERACTIVE)
	{
		int			i;

		for (i = 0; i < n; i++)
			if (urls[i].has_password)
			{
				ereport(WARNING,
						(errcode(ERRCODE_WARNING),
						 errmsg("lockext.redis_nodes contains a password"),
						 errdetail("The server log and readers of the configuration can see it."),
						 errhint("Remove it from the URL and put it in lockext.redis_passfile (host:port:user:password, mode 0600).")));
				break;
			}
	}
	return true;
}

/* Must not fail: the node set is (re)built lazily by lockext_redis_nodes(). */
static void
assign_redis_nodes(const char *newval pg_attribute_unused(), void *extra)
{
	parsed_nodes = (ParsedNodes *) extra;
	redis_nodes_configure(parsed_nodes ? parsed_nodes->urls : NULL,
						  parsed_nodes ? parsed_nodes->n : 0);
}

/* Non-superusers see the list with passwords masked. */
static const char *
show_redis_nodes(void)
{
	static char masked[LOCKEXT_MAX_NODES * 1024];

	if (redis_nodes_string == NULL || superuser())
		return redis_nodes_string ? redis_nodes_string : "";
	redis_url_mask_list(redis_nodes_string, masked, sizeof(masked));
	return masked;
}

static bool
check_namespace(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const char *p;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The namespace must not be empty.");
		return false;
	}
	if (strlen(*newval) > 64)
	{
		GUC_check_errdetail("The namespace must not exceed 64 bytes.");
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
		{
			GUC_check_errdetail("The namespace must not contain spaces or control characters.");
			return false;
		}
		/* "<ns>:lock:<key>": the first colon must end the namespace */
		if (*p == ':')
		{
			GUC_check_errdetail("The namespace must not contain \":\": in Redis key names the first colon ends it.");
			return false;
		}
	}
	return true;
}

void
lockext_define_gucs(void)
{
	/* children of the postmaster inherit this */
	lockext_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomEnumVariable("lockext.backend",
							 "Where dlocks live.",
							 "auto chooses redis when lockext.redis_nodes is set, "
							 "else advisory (PostgreSQL's lock manager).",
							 &lockext_backend_choice,
							 LOCKEXT_BACKEND_AUTO,
							 backend_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("lockext.redis_nodes",
							   "Redis nodes that hold dlocks: one node, or a quorum of independent masters.",
							   "Comma-separated redis://[user[:password]@]host[:port][/db] or unix:///path[?db=N].",
							   &redis_nodes_string,
							   "",
							   PGC_SUSET,
							   /* no pg_settings row: its reset_val is raw */
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   check_redis_nodes, assign_redis_nodes,
							   show_redis_nodes);

	DefineCustomStringVariable("lockext.redis_passfile",
							   "File with the passwords of the Redis nodes, as libpq's .pgpass: host:port:user:password.",
							   "Used for nodes whose URL has no password; relative to the data directory.",
							   &lockext_redis_passfile,
							   "lockext_redis.pass",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("lockext.namespace",
							   "Prefix of lockext's keys in Redis.",
							   NULL,
							   &lockext_namespace,
							   "lockext",
							   PGC_SUSET,
							   0,
							   check_namespace, NULL, NULL);

	DefineCustomEnumVariable("lockext.fallback",
							 "What to do when Redis is unreachable.",
							 "off: fail; advisory: warn and take only the local lock.",
							 &lockext_fallback,
							 LOCKEXT_FALLBACK_OFF,
							 fallback_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.connect_timeout",
							"Time bound for connecting to one Redis node.",
							NULL,
							&lockext_connect_timeout_ms,
							1000, 1, 3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.command_timeout",
							"Time bound for one Redis command.",
							NULL,
							&lockext_command_timeout_ms,
							1000, 1, 3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("lockext.verify_on_commit",
							 "When COMMIT checks that Redis locks are still held.",
							 "auto: when the lease may have run out; always; off.",
							 &lockext_verify_on_commit,
							 LOCKEXT_VERIFY_AUTO,
							 verify_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.wait_timeout",
							"Default time dlock_acquire() waits for a lock.",
							"0 means try once.",
							&lockext_wait_timeout_ms,
							30 * 1000, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.lease",
							"Default lease of a dlock on a backend with leases.",
							"A held lock whose lease ran out may be taken by another holder.",
							&lockext_lease_ms,
							30 * 1000, lockext_min_lease_ms, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("lockext.session_locks",
							 "Allows session-scoped dlocks.",
							 "Turn off for databases reached through a transaction-pooling "
							 "connection pooler, where a session lock would pass to other clients.",
							 &lockext_session_locks,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.max_hold",
							"Longest the lease keeper keeps one Redis hold alive.",
							"0 means no limit.  Past it the lease runs out as without the keeper.",
							&lockext_max_hold_ms,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.max_idle_hold",
							"Longest the lease keeper renews for a holder idle in transaction.",
							"0 means no limit.",
							&lockext_max_idle_hold_ms,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.max_tracked_locks",
							"Most holds and waits dlock_locks tracks in shared memory.",
							"Beyond it locking goes on, and dlock_locks warns that rows are missing.",
							&lockext_max_tracked_locks,
							1000000, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.max_redis_locks",
							"Most Redis holds the lease keeper's table keeps for this instance.",
							"Beyond it new Redis locks are refused (53200); lockext.max_tracked_locks does not apply to them.",
							&lockext_max_redis_locks,
							1000000, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	/* a test aid: an exit whose cleanup fails midway, for the keeper's orphan check */
	DefineCustomBoolVariable("lockext.debug_skip_exit_cleanup",
							 "Leaves this session's holds and rows behind at exit (for tests only).",
							 NULL,
							 &lockext_debug_skip_exit_cleanup,
							 false,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("lockext");
}

/*
 * Refuse to lock while lockext.redis_nodes is broken.  F0000: it is an
 * error in the server's configuration, which only fixing it and reloading
 * cures; retrying (what 55P03 or class 08 invite) cannot help.
 */
static void
check_nodes_configured(void)
{
	if (parsed_nodes != NULL && parsed_nodes->broken)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("lockext.redis_nodes is invalid: %s", parsed_nodes->error),
				 errdetail("Locks on the redis and auto backends are refused until the setting is fixed, so that they are never taken on this instance alone."),
				 errhint("Correct lockext.redis_nodes where it is set (postgresql.conf, ALTER SYSTEM, ALTER DATABASE or ALTER ROLE) and reload the configuration.")));
}

/* The backend a new lock goes to; a held lock stays with its own. */
const DlockBackend *
lockext_current_backend(void)
{
	if (lockext_backend_choice != LOCKEXT_BACKEND_ADVISORY)
		check_nodes_configured();
	switch (lockext_backend_choice)
	{
		case LOCKEXT_BACKEND_ADVISORY:
			return &advisory_backend;
		case LOCKEXT_BACKEND_REDIS:
			return &redis_backend;
		default:
			return lockext_redis_nodes() ? &redis_backend : &advisory_backend;
	}
}
