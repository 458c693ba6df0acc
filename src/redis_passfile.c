/*-------------------------------------------------------------------------
 *
 * redis_passfile.c
 *	  Redis passwords from a file (lockext.redis_passfile) rather than from
 *	  the node URLs in a setting, with libpq's .pgpass rules.
 *
 * Lines are host:port:user:password; any of the first three may be *,
 * and \: and \\ stand for a colon and a backslash; lines starting with #
 * are comments.  The first line that matches wins.  A node given by a
 * Unix socket matches the host "localhost" or its socket path, and any
 * port.  A URL without a user matches the user "default" (Redis's).  A
 * relative path is in the data directory.
 *
 * As libpq does, a file that is not a plain file, or that group or others
 * may read, is ignored with a WARNING; and here also one not owned by the
 * server's user, since it holds the server's secrets.  A missing file is
 * no error.
 *
 * Runs when a connection is made, which may be on the abort path: plain C
 * file I/O, no palloc, never an ERROR.  Passwords never reach a message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"

#include "redis.h"

/* A WARNING about the file's permissions once per process and mode. */
static mode_t warned_mode = 0;

/*
 * Take the next field of line (up to an unescaped ':' or the end) into
 * out, unescaped; returns where the next field starts, or NULL at the end
 * of the line.
 */
static const char *
next_field(const char *p, char *out, size_t size, bool last)
{
	size_t		n = 0;

	while (*p && *p != '\n' && *p != '\r')
	{
		if (!last && *p == ':')
		{
			p++;
			break;
		}
		if (*p == '\\' && (p[1] == ':' || p[1] == '\\'))
			p++;
		if (n + 1 < size)
			out[n++] = *p;
		p++;
	}
	out[n] = '\0';
	return p;
}

static bool
field_matches(const char *field, const char *value)
{
	return strcmp(field, "*") == 0 || strcmp(field, value) == 0;
}

/* Is the file one we may read secrets from?  WARNING (once) when not. */
static bool
safe_to_use(const char *path, FILE *f)
{
	struct stat st;
	const char *why = NULL;

	if (fstat(fileno(f), &st) != 0)
		return false;
	if (!S_ISREG(st.st_mode))
		why = "it is not a plain file";
	else if (st.st_uid != geteuid())
		why = "it is not owned by the database server's user";
	else if (st.st_mode & (S_IRWXG | S_IRWXO))
		why = "it has group or world access";
	if (why == NULL)
		return true;
	if (warned_mode != st.st_mode + 1)
	{
		warned_mode = st.st_mode + 1;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("lockext.redis_passfile \"%s\" is ignored: %s", path, why),
				 errhint("Make it a file of the server's user with permissions u=rw (0600) or less.")));
	}
	return false;
}

/*
 * The password for url from lockext.redis_passfile into password (size
 * bytes); false when the file is absent, unusable, or has no matching line.
 */
bool
redis_passfile_lookup(const RedisUrl *url, char *password, size_t size)
{
	char		path[MAXPGPATH];
	char		line[1024];
	char		port[16];
	const char *user = url->user[0] ? url->user : "default";
	bool		found = false;
	FILE	   *f;

	if (lockext_redis_passfile == NULL || lockext_redis_passfile[0] == '\0')
		return false;
	if (is_absolute_path(lockext_redis_passfile) || DataDir == NULL)
		strlcpy(path, lockext_redis_passfile, sizeof(path));
	else
		snprintf(path, sizeof(path), "%s/%s", DataDir, lockext_redis_passfile);
	f = fopen(path, "re");
	if (f == NULL)
		return false;
	if (!safe_to_use(lockext_redis_passfile, f))
	{
		fclose(f);
		return false;
	}
	snprintf(port, sizeof(port), "%d", url->port);
	while (!found && fgets(line, sizeof(line), f) != NULL)
	{
		char		host[REDIS_URL_MAX_HOST + 1];
		char		lport[16];
		char		luser[REDIS_URL_MAX_USER + 1];
		const char *p = line;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		p = next_field(p, host, sizeof(host), false);
		p = next_field(p, lport, sizeof(lport), false);
		p = next_field(p, luser, sizeof(luser), false);
		if (url->kind == REDIS_URL_UNIX)
		{
			if (!field_matches(host, "localhost") && !field_matches(host, url->path))
				continue;
		}
		else if (!field_matches(host, url->host) || !field_matches(lport, port))
			continue;
		if (!field_matches(luser, user))
			continue;
		(void) next_field(p, password, size, true);
		found = true;
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return found;
}
