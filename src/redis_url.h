/*-------------------------------------------------------------------------
 *
 * redis_url.h
 *	  Parser of Redis node URLs, as lockext.redis_nodes lists them.
 *
 * Plain C with no PostgreSQL dependency and no allocation, so the unit
 * test and the fuzzer build it alone.  Accepted forms, comma-separated:
 *   redis://[user[:password]@]host[:port][/db] (host: name, IPv4, [IPv6])
 *   redis://:password@host[:port][/db]         (password only, Redis < 6)
 *   rediss://...                               (TLS; as redis://, then
 *       [?sslmode=require|verify-ca|verify-full][&sslrootcert=F]
 *       [&sslcert=F&sslkey=F][&sslsni=0|1], libpq's names and meanings)
 *   unix:///absolute/path[?db=N][&user=U][&password=P]
 * User, password and file names may be percent-encoded (%40 for @, %2C
 * for a comma); a user without a password takes it from
 * lockext.redis_passfile.
 * Messages never contain a password.
 *
 *-------------------------------------------------------------------------
 */
#ifndef REDIS_URL_H
#define REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_MAX_NODES 15
#define REDIS_URL_MAX_HOST 255
#define REDIS_URL_MAX_PATH 107
#define REDIS_URL_MAX_USER 127
#define REDIS_URL_MAX_PASSWORD 255
#define REDIS_URL_MAX_DB 1023
#define REDIS_URL_MAX_FILE 255

typedef enum RedisUrlKind
{
	REDIS_URL_TCP,
	REDIS_URL_UNIX
} RedisUrlKind;

/* libpq's sslmode values that make sense for a rediss:// URL */
typedef enum RedisSslMode
{
	REDIS_SSL_REQUIRE,			/* encrypt; verify only with sslrootcert */
	REDIS_SSL_VERIFY_CA,		/* and the certificate chain */
	REDIS_SSL_VERIFY_FULL		/* and the host name (the default) */
} RedisSslMode;

typedef struct RedisUrl
{
	RedisUrlKind kind;
	char		host[REDIS_URL_MAX_HOST + 1];	/* TCP; IPv6 without brackets */
	int			port;			/* TCP */
	char		path[REDIS_URL_MAX_PATH + 1];	/* UNIX */
	char		user[REDIS_URL_MAX_USER + 1];	/* "" when none */
	char		password[REDIS_URL_MAX_PASSWORD + 1];	/* "" when none */
	bool		has_password;	/* a password was given, maybe empty */
	int			db;
	/* TLS (rediss://); file names as given, relative to the data directory */
	bool		tls;
	RedisSslMode sslmode;
	bool		sslsni;			/* send the host name (SNI); default on */
	char		sslrootcert[REDIS_URL_MAX_FILE + 1];	/* "": system CAs */
	char		sslcert[REDIS_URL_MAX_FILE + 1];	/* "": no client cert */
	char		sslkey[REDIS_URL_MAX_FILE + 1];
} RedisUrl;

/* Parse one URL of len bytes; false with a message in err. */
extern bool redis_url_parse(const char *url, size_t len, RedisUrl *out,
							char *err, size_t errlen);

/* Parse a comma-separated list: the count (0 when blank), or -1 with err. */
extern int	redis_url_parse_list(const char *list, RedisUrl *out, int max,
								 char *err, size_t errlen);

/* A URL for messages, password replaced by "***"; always terminated. */
extern void redis_url_display(const RedisUrl *url, char *buf, size_t buflen);

/* The list with passwords masked; false (buf "(invalid)") if unparsable. */
extern bool redis_url_mask_list(const char *list, char *buf, size_t buflen);

#endif							/* REDIS_URL_H */
