/*-------------------------------------------------------------------------
 *
 * redis_url.c
 *	  Parser of Redis node URLs (see redis_url.h for the accepted forms).
 *
 * Works on (pointer, length) slices of the input and writes only into the
 * fixed-size fields of RedisUrl, so arbitrary input bytes cannot make it
 * read or write out of bounds.  A message names what is wrong and where,
 * but never repeats a password.
 *
 *-------------------------------------------------------------------------
 */
#include "redis_url.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct Slice
{
	const char *p;
	size_t		len;
} Slice;

#if defined(__GNUC__) || defined(__clang__)
#define URL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define URL_PRINTF(f, a)
#endif

static void set_err(char *err, size_t errlen, const char *fmt,...) URL_PRINTF(3, 4);

static void
set_err(char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int
lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static bool
has_prefix_ci(Slice s, const char *prefix)
{
	size_t		n = strlen(prefix);
	size_t		i;

	if (s.len < n)
		return false;
	for (i = 0; i < n; i++)
		if (lower((unsigned char) s.p[i]) != prefix[i])
			return false;
	return true;
}

static const char *
find_char(Slice s, char c)
{
	return s.len ? memchr(s.p, c, s.len) : NULL;
}

static const char *
find_last_char(Slice s, char c)
{
	size_t		i = s.len;

	while (i > 0)
		if (s.p[--i] == c)
			return s.p + i;
	return NULL;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode s into dst (size dstsize); false on bad encoding or room. */
static bool
decode(Slice s, char *dst, size_t dstsize)
{
	size_t		i;
	size_t		o = 0;

	for (i = 0; i < s.len; i++)
	{
		int			c = (unsigned char) s.p[i];

		if (c == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= s.len)
				return false;
			hi = hexval((unsigned char) s.p[i + 1]);
			lo = hexval((unsigned char) s.p[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = hi * 16 + lo;
			if (c == 0)
				return false;	/* no NUL inside a C string */
			i += 2;
		}
		if (o + 1 >= dstsize)
			return false;
		dst[o++] = (char) c;
	}
	dst[o] = '\0';
	return true;
}

/* A decimal number in [min, max]; false if empty, not digits or out of range. */
static bool
parse_number(Slice s, long min, long max, long *out)
{
	long		v = 0;
	size_t		i;

	if (s.len == 0 || s.len > 9)
		return false;
	for (i = 0; i < s.len; i++)
	{
		if (s.p[i] < '0' || s.p[i] > '9')
			return false;
		v = v * 10 + (s.p[i] - '0');
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool
valid_hostname(Slice s)
{
	size_t		i;

	for (i = 0; i < s.len; i++)
	{
		int			c = (unsigned char) s.p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
			return false;
	}
	return s.len > 0;
}

static bool
valid_ipv6(Slice s)
{
	size_t		i;

	for (i = 0; i < s.len; i++)
	{
		int			c = (unsigned char) s.p[i];

		if (!(hexval(c) >= 0 || c == ':' || c == '.'))
			return false;
	}
	return s.len > 1;
}

static bool
copy_slice(Slice s, char *dst, size_t dstsize)
{
	if (s.len + 1 > dstsize)
		return false;
	memcpy(dst, s.p, s.len);
	dst[s.len] = '\0';
	return true;
}

static bool
parse_userinfo(Slice ui, RedisUrl *out, char *err, size_t errlen)
{
	const char *colon = find_char(ui, ':');
	Slice		user = ui;

	/* a user alone: the password comes from lockext.redis_passfile */
	if (colon == NULL)
	{
		if (ui.len == 0 || !decode(ui, out->user, sizeof(out->user)))
		{
			set_err(err, errlen, "invalid or too long user name");
			return false;
		}
		return true;
	}
	user.len = (size_t) (colon - ui.p);
	if (!decode(user, out->user, sizeof(out->user)))
	{
		set_err(err, errlen, "invalid or too long user name");
		return false;
	}
	{
		Slice		pw = {colon + 1, ui.len - user.len - 1};

		if (!decode(pw, out->password, sizeof(out->password)))
		{
			set_err(err, errlen, "invalid percent-encoding or length of the password");
			return false;
		}
	}
	out->has_password = true;
	return true;
}

static bool
slice_is(Slice s, const char *word)
{
	return s.len == strlen(word) && memcmp(s.p, word, s.len) == 0;
}

/* A file name parameter of a rediss:// URL. */
static bool
parse_file(Slice value, char *dst, size_t dstsize, const char *name,
		   char *err, size_t errlen)
{
	if (value.len == 0 || !decode(value, dst, dstsize))
	{
		set_err(err, errlen, "invalid, empty or too long %s (at most %d bytes)",
				name, REDIS_URL_MAX_FILE);
		return false;
	}
	return true;
}

/* One name=value of a rediss:// URL: the TLS options, libpq's names. */
static bool
parse_tls_param(Slice name, Slice value, RedisUrl *out, char *err,
				size_t errlen)
{
	long		v;

	if (slice_is(name, "sslmode"))
	{
		if (slice_is(value, "require"))
			out->sslmode = REDIS_SSL_REQUIRE;
		else if (slice_is(value, "verify-ca"))
			out->sslmode = REDIS_SSL_VERIFY_CA;
		else if (slice_is(value, "verify-full"))
			out->sslmode = REDIS_SSL_VERIFY_FULL;
		else if (slice_is(value, "disable") || slice_is(value, "allow") ||
				 slice_is(value, "prefer"))
		{
			set_err(err, errlen, "sslmode %.*s is not supported (a rediss:// URL always uses TLS; use redis:// for a node without TLS)",
					(int) value.len, value.p);
			return false;
		}
		else
		{
			set_err(err, errlen, "invalid sslmode (use require, verify-ca or verify-full)");
			return false;
		}
	}
	else if (slice_is(name, "sslrootcert"))
		return parse_file(value, out->sslrootcert, sizeof(out->sslrootcert),
						  "sslrootcert", err, errlen);
	else if (slice_is(name, "sslcert"))
		return parse_file(value, out->sslcert, sizeof(out->sslcert),
						  "sslcert", err, errlen);
	else if (slice_is(name, "sslkey"))
		return parse_file(value, out->sslkey, sizeof(out->sslkey),
						  "sslkey", err, errlen);
	else if (slice_is(name, "sslsni"))
	{
		if (!parse_number(value, 0, 1, &v))
		{
			set_err(err, errlen, "invalid sslsni (use 0 or 1)");
			return false;
		}
		out->sslsni = (v == 1);
	}
	else
	{
		set_err(err, errlen, "unknown query parameter (use sslmode, sslrootcert, sslcert, sslkey or sslsni)");
		return false;
	}
	return true;
}

/* One name=value of a unix:// URL. */
static bool
parse_unix_param(Slice name, Slice value, RedisUrl *out, char *err,
				 size_t errlen)
{
	long		v;

	if (slice_is(name, "db"))
	{
		if (!parse_number(value, 0, REDIS_URL_MAX_DB, &v))
		{
			set_err(err, errlen, "invalid database number (must be 0..%d)",
					REDIS_URL_MAX_DB);
			return false;
		}
		out->db = (int) v;
	}
	else if (slice_is(name, "user"))
	{
		if (!decode(value, out->user, sizeof(out->user)))
		{
			set_err(err, errlen, "invalid or too long user name");
			return false;
		}
	}
	else if (slice_is(name, "password"))
	{
		if (!decode(value, out->password, sizeof(out->password)))
		{
			set_err(err, errlen, "invalid percent-encoding or length of the password");
			return false;
		}
		out->has_password = true;
	}
	else
	{
		set_err(err, errlen, "unknown query parameter (use db, user or password)");
		return false;
	}
	return true;
}

/* The query string (after "?"): name=value pairs separated by "&". */
static bool
parse_query(Slice query, RedisUrl *out, char *err, size_t errlen)
{
	while (query.len > 0)
	{
		const char *amp = find_char(query, '&');
		Slice		param = {query.p, amp ? (size_t) (amp - query.p) : query.len};
		const char *eq = find_char(param, '=');
		Slice		name = {param.p, eq ? (size_t) (eq - param.p) : param.len};
		Slice		value = {eq ? eq + 1 : NULL, eq ? param.len - name.len - 1 : 0};
		bool		ok;

		if (eq == NULL)
		{
			set_err(err, errlen, "query parameter without a value");
			return false;
		}
		if (out->kind == REDIS_URL_UNIX)
			ok = parse_unix_param(name, value, out, err, errlen);
		else
			ok = parse_tls_param(name, value, out, err, errlen);
		if (!ok)
			return false;
		if (amp == NULL)
			break;
		query.p = amp + 1;
		query.len -= param.len + 1;
	}
	if (out->kind == REDIS_URL_TCP &&
		(out->sslcert[0] == '\0') != (out->sslkey[0] == '\0'))
	{
		set_err(err, errlen, "sslcert and sslkey go together (a client certificate needs its key)");
		return false;
	}
	return true;
}

static bool
parse_tcp(Slice all, RedisUrl *out, char *err, size_t errlen)
{
	const char *q = find_char(all, '?');
	Slice		rest = {all.p, q ? (size_t) (q - all.p) : all.len};
	const char *slash = find_char(rest, '/');
	Slice		authority = {rest.p, slash ? (size_t) (slash - rest.p) : rest.len};
	const char *at = find_last_char(authority, '@');
	Slice		hostport = authority;
	Slice		host;
	Slice		port = {NULL, 0};
	long		v;

	if (at != NULL)
	{
		Slice		ui = {authority.p, (size_t) (at - authority.p)};

		if (!parse_userinfo(ui, out, err, errlen))
			return false;
		hostport.p = at + 1;
		hostport.len = authority.len - ui.len - 1;
	}

	if (hostport.len > 0 && hostport.p[0] == '[')
	{
		Slice		after = {hostport.p + 1, hostport.len - 1};
		const char *close = find_char(after, ']');

		if (close == NULL)
		{
			set_err(err, errlen, "missing \"]\" after IPv6 address");
			return false;
		}
		host.p = after.p;
		host.len = (size_t) (close - after.p);
		if (!valid_ipv6(host))
		{
			set_err(err, errlen, "invalid IPv6 address");
			return false;
		}
		after.p = close + 1;
		after.len = hostport.len - 2 - host.len;
		if (after.len > 0)
		{
			if (after.p[0] != ':')
			{
				set_err(err, errlen, "unexpected characters after IPv6 address");
				return false;
			}
			port.p = after.p + 1;
			port.len = after.len - 1;
		}
	}
	else
	{
		const char *colon = find_char(hostport, ':');

		host.p = hostport.p;
		host.len = colon ? (size_t) (colon - hostport.p) : hostport.len;
		if (colon)
		{
			port.p = colon + 1;
			port.len = hostport.len - host.len - 1;
		}
		if (host.len == 0)
		{
			set_err(err, errlen, "missing host");
			return false;
		}
		if (!valid_hostname(host))
		{
			set_err(err, errlen, "invalid host name");
			return false;
		}
	}
	if (!copy_slice(host, out->host, sizeof(out->host)))
	{
		set_err(err, errlen, "host name is too long");
		return false;
	}

	out->port = 6379;
	if (port.p != NULL)
	{
		if (!parse_number(port, 1, 65535, &v))
		{
			set_err(err, errlen, "invalid port (must be 1..65535)");
			return false;
		}
		out->port = (int) v;
	}

	if (slash != NULL)
	{
		Slice		db = {slash + 1, rest.len - authority.len - 1};

		if (db.len > 0)
		{
			if (!parse_number(db, 0, REDIS_URL_MAX_DB, &v))
			{
				set_err(err, errlen, "invalid database number (must be 0..%d)",
						REDIS_URL_MAX_DB);
				return false;
			}
			out->db = (int) v;
		}
	}
	if (q != NULL)
	{
		Slice		query = {q + 1, all.len - rest.len - 1};

		if (!out->tls)
		{
			set_err(err, errlen, "query parameters are not supported in redis:// URLs (TLS options need rediss://)");
			return false;
		}
		return parse_query(query, out, err, errlen);
	}
	return true;
}

static bool
parse_unix(Slice rest, RedisUrl *out, char *err, size_t errlen)
{
	const char *q = find_char(rest, '?');
	Slice		path = {rest.p, q ? (size_t) (q - rest.p) : rest.len};

	if (path.len == 0 || path.p[0] != '/')
	{
		set_err(err, errlen, "unix socket path must be absolute (unix:///path)");
		return false;
	}
	if (!copy_slice(path, out->path, sizeof(out->path)))
	{
		set_err(err, errlen, "unix socket path is too long (at most %d bytes)",
				REDIS_URL_MAX_PATH);
		return false;
	}
	if (q != NULL)
	{
		Slice		query = {q + 1, rest.len - path.len - 1};

		return parse_query(query, out, err, errlen);
	}
	return true;
}

bool
redis_url_parse(const char *url, size_t len, RedisUrl *out, char *err,
				size_t errlen)
{
	Slice		s = {url, len};
	size_t		i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) url[i];

		if (c <= ' ' || c == 0x7f)
		{
			set_err(err, errlen, "spaces and control characters are not allowed inside a URL");
			return false;
		}
	}
	if (has_prefix_ci(s, "redis://"))
	{
		Slice		rest = {url + 8, len - 8};

		out->kind = REDIS_URL_TCP;
		return parse_tcp(rest, out, err, errlen);
	}
	if (has_prefix_ci(s, "unix://"))
	{
		Slice		rest = {url + 7, len - 7};

		out->kind = REDIS_URL_UNIX;
		return parse_unix(rest, out, err, errlen);
	}
	if (has_prefix_ci(s, "rediss://"))
	{
		Slice		rest = {url + 9, len - 9};

		out->kind = REDIS_URL_TCP;
		out->tls = true;
		out->sslmode = REDIS_SSL_VERIFY_FULL;
		out->sslsni = true;
		return parse_tcp(rest, out, err, errlen);
	}
	set_err(err, errlen, "unknown scheme (use redis://, rediss:// or unix://)");
	return false;
}

static bool
same_node(const RedisUrl *a, const RedisUrl *b)
{
	size_t		i;

	if (a->kind != b->kind || a->db != b->db)
		return false;
	if (a->kind == REDIS_URL_UNIX)
		return strcmp(a->path, b->path) == 0;
	if (a->port != b->port || strlen(a->host) != strlen(b->host))
		return false;
	for (i = 0; a->host[i]; i++)
		if (lower((unsigned char) a->host[i]) != lower((unsigned char) b->host[i]))
			return false;
	return true;
}

int
redis_url_parse_list(const char *list, RedisUrl *out, int max, char *err,
					 size_t errlen)
{
	const char *p = list;
	int			n = 0;

	/* blank means no nodes */
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return 0;

	p = list;
	for (;;)
	{
		const char *end = strchr(p, ',');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		char		item_err[200];
		int			i;

		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0)
		{
			set_err(err, errlen, "node %d is empty", n + 1);
			return -1;
		}
		if (n >= max)
		{
			set_err(err, errlen, "too many nodes (at most %d)", max);
			return -1;
		}
		if (!redis_url_parse(p, len, &out[n], item_err, sizeof(item_err)))
		{
			set_err(err, errlen, "node %d: %s", n + 1, item_err);
			return -1;
		}
		for (i = 0; i < n; i++)
			if (same_node(&out[i], &out[n]))
			{
				set_err(err, errlen, "node %d is the same as node %d", n + 1, i + 1);
				return -1;
			}
		n++;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return n;
}

/*
 * The user name for a URL: percent-encoded where a byte would end the field
 * or the list item, or not parse again (the parser decodes it back).
 */
static void
encode_user(const char *user, char *out)	/* 3 * REDIS_URL_MAX_USER + 1 */
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		o = 0;

	for (; *user; user++)
	{
		unsigned char c = (unsigned char) *user;

		if (c <= ' ' || c == 0x7f || strchr("%,/?:&", c) != NULL)
		{
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
		else
			out[o++] = (char) c;
	}
	out[o] = '\0';
}

void
redis_url_display(const RedisUrl *url, char *buf, size_t buflen)
{
	char		db[16] = "";
	char		opts[64] = "";
	char		user[3 * REDIS_URL_MAX_USER + 1];

	if (buflen == 0)
		return;
	encode_user(url->user, user);
	if (url->kind == REDIS_URL_UNIX)
	{
		char		query[512] = "";
		size_t		q = 0;

		/* each piece fits: db <= 1023, user <= 3 * 127 bytes encoded */
		if (url->db)
			q += snprintf(query + q, sizeof(query) - q, "&db=%d", url->db);
		if (user[0])
			q += snprintf(query + q, sizeof(query) - q, "&user=%s", user);
		if (url->has_password)
			snprintf(query + q, sizeof(query) - q, "&password=***");
		snprintf(buf, buflen, "unix://%s%s%s", url->path,
				 query[0] ? "?" : "", query[0] ? query + 1 : "");
		return;
	}
	if (url->db)
		snprintf(db, sizeof(db), "/%d", url->db);
	/* TLS: the options that differ from the defaults, file names left out */
	if (url->tls && (url->sslmode != REDIS_SSL_VERIFY_FULL || !url->sslsni))
		snprintf(opts, sizeof(opts), "?%s%s%s",
				 url->sslmode == REDIS_SSL_REQUIRE ? "sslmode=require" :
				 url->sslmode == REDIS_SSL_VERIFY_CA ? "sslmode=verify-ca" : "",
				 url->sslmode != REDIS_SSL_VERIFY_FULL && !url->sslsni ? "&" : "",
				 url->sslsni ? "" : "sslsni=0");
	snprintf(buf, buflen, "%s://%s%s%s%s%s%s:%d%s%s",
			 url->tls ? "rediss" : "redis",
			 user,
			 url->has_password ? ":***" : "",
			 (user[0] || url->has_password) ? "@" : "",
			 strchr(url->host, ':') ? "[" : "",
			 url->host,
			 strchr(url->host, ':') ? "]" : "",
			 url->port, db, opts);
}

bool
redis_url_mask_list(const char *list, char *buf, size_t buflen)
{
	RedisUrl	urls[REDIS_URL_MAX_NODES];
	int			n = redis_url_parse_list(list, urls, REDIS_URL_MAX_NODES, NULL, 0);
	size_t		used = 0;
	int			i;

	if (buflen == 0)
		return false;
	buf[0] = '\0';
	if (n < 0)
	{
		snprintf(buf, buflen, "(invalid)");
		return false;
	}
	for (i = 0; i < n && used + 1 < buflen; i++)
	{
		char		one[1024];

		redis_url_display(&urls[i], one, sizeof(one));
		used += (size_t) snprintf(buf + used, buflen - used, "%s%s",
								  i > 0 ? "," : "", one);
		if (used >= buflen)
			used = buflen - 1;
	}
	return true;
}
