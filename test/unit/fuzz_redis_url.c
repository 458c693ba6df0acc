/*
 * fuzz_redis_url.c
 *	  libFuzzer target for the Redis node URL parser (src/redis_url.c).
 *
 * The sanitizers catch memory errors, undefined behaviour and leaks; on top
 * of that the target abort()s when one of these properties breaks:
 *  1. messages: a failed parse leaves a non-empty, NUL-terminated message
 *     within the errlen bytes it was given, writes nothing past them, a
 *     smaller buffer gets a prefix of the same message, and no message ever
 *     contains "Sekr1t" (the password seed of the corpus: messages never
 *     quote the input);
 *  2. parsed nodes: every field is terminated inside its array, port is
 *     1..65535, db 0..REDIS_URL_MAX_DB;
 *  3. redis_url_display: the text does not depend on the password at all
 *     (so it cannot show it), is terminated, and truncates to a prefix;
 *  4. redis_url_mask_list: "(invalid)" exactly when the list does not parse,
 *     else the comma-joined displays of its nodes; a small buffer gets a
 *     prefix; no node's non-empty password appears in it (unless the same
 *     text is there anyway, e.g. password "1" and port 1), and neither it nor
 *     any display contains "Sekr1t" unless a user, host or path does;
 *  5. the masked list (passwords become "***", a valid password) parses
 *     again to the same nodes: same count and fields, passwords "***";
 *  6. one URL alone (no comma, no edge blanks) parses with redis_url_parse
 *     exactly as it does as a one-item list.
 *
 * Run it with test/fuzz.sh (scratch build and corpus, TAP line):
 *   bash test/fuzz.sh 60
 * or by hand, from the repository root:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -Isrc -o /tmp/fuzz_redis_url test/unit/fuzz_redis_url.c src/redis_url.c
 *   mkdir -p /tmp/corpus && /tmp/fuzz_redis_url -max_total_time=60 \
 *       /tmp/corpus test/unit/corpus_redis_url
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

#define SEED_PW "Sekr1t"
#define CANARY 'Z'
#define ERRLEN 256
#define DISPLEN 2048			/* more than any display needs */
#define MASKLEN (REDIS_URL_MAX_NODES * DISPLEN)

#define require(cond) \
	do { if (!(cond)) broken(#cond, __LINE__); } while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
broken(const char *what, int line)
{
	fprintf(stderr, "fuzz_redis_url.c:%d: property broken: %s\n", line, what);
	abort();
}

static bool
terminated(const char *buf, size_t size)
{
	return memchr(buf, '\0', size) != NULL;
}

/* The bytes of buf from "from" on (64 at most, below size) hold the canary. */
static bool
untouched(const char *buf, size_t from, size_t size)
{
	size_t		i;

	for (i = from; i < size && i < from + 64; i++)
		if (buf[i] != CANARY)
			return false;
	return true;
}

/* small (from a buffer of smalllen) is full cut to smalllen - 1 bytes. */
static bool
is_truncation(const char *small, size_t smalllen, const char *full)
{
	size_t		want = strlen(full);

	if (want > smalllen - 1)
		want = smalllen - 1;
	return strlen(small) == want && memcmp(small, full, want) == 0;
}

/* Property 1, for a failed parse: err[0..errlen) of a buffer of bufsize. */
static void
check_message(const char *err, size_t errlen, size_t bufsize)
{
	require(terminated(err, errlen));
	require(untouched(err, errlen, bufsize));
	require(errlen == 1 || err[0] != '\0');
	require(strstr(err, SEED_PW) == NULL);
}

/* Property 2. */
static void
check_node(const RedisUrl *u)
{
	require(u->kind == REDIS_URL_TCP || u->kind == REDIS_URL_UNIX);
	require(terminated(u->host, sizeof(u->host)));
	require(terminated(u->path, sizeof(u->path)));
	require(terminated(u->user, sizeof(u->user)));
	require(terminated(u->password, sizeof(u->password)));
	require(u->db >= 0 && u->db <= REDIS_URL_MAX_DB);
	require(u->has_password || u->password[0] == '\0');
	if (u->kind == REDIS_URL_TCP)
		require(u->host[0] != '\0' && u->port >= 1 && u->port <= 65535);
	else
		require(u->path[0] == '/');
}

/* Everything but the password. */
static bool
same_node(const RedisUrl *a, const RedisUrl *b)
{
	if (a->kind != b->kind || a->db != b->db ||
		a->has_password != b->has_password || strcmp(a->user, b->user) != 0)
		return false;
	if (a->kind == REDIS_URL_UNIX)
		return strcmp(a->path, b->path) == 0;
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Some user, host or path of the n nodes contains s. */
static bool
fields_contain(const RedisUrl *urls, int n, const char *s)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strstr(urls[i].user, s) || strstr(urls[i].host, s) ||
			strstr(urls[i].path, s))
			return true;
	return false;
}

/* Property 3: display u into out (DISPLEN); also checks truncations. */
static void
check_display(const RedisUrl *u, char *out, size_t cut)
{
	RedisUrl	other = *u;
	char		alt[DISPLEN];
	char		small[DISPLEN];
	size_t		len;
	size_t		sizes[3];
	int			i;

	memset(out, CANARY, DISPLEN);
	redis_url_display(u, out, DISPLEN);
	require(terminated(out, DISPLEN));
	len = strlen(out);
	require(len > 0 && len < DISPLEN - 1);	/* not truncated */

	/* another password (has_password unchanged) gives the same text */
	memset(other.password, 0, sizeof(other.password));
	strcpy(other.password, u->password[0] ? "" : "other");
	redis_url_display(&other, alt, sizeof(alt));
	require(strcmp(out, alt) == 0);

	memset(small, CANARY, sizeof(small));
	redis_url_display(u, small, 0);
	require(untouched(small, 0, sizeof(small)));
	sizes[0] = 1;
	sizes[1] = 1 + cut % (len + 1);
	sizes[2] = len + 1;
	for (i = 0; i < 3; i++)
	{
		memset(small, CANARY, sizeof(small));
		redis_url_display(u, small, sizes[i]);
		require(terminated(small, sizes[i]));
		require(untouched(small, sizes[i], sizeof(small)));
		require(is_truncation(small, sizes[i], out));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static RedisUrl urls[REDIS_URL_MAX_NODES];
	static RedisUrl again[REDIS_URL_MAX_NODES];
	static char masked[MASKLEN];
	static char joined[MASKLEN];
	static char nopw[MASKLEN];
	char		small[128];
	char		display[DISPLEN];
	char		err[ERRLEN];
	char		err2[ERRLEN];
	size_t		errlen2 = 1 + size % 40;
	size_t		smalllen = 1 + size % 100;	/* < sizeof(small) */
	char	   *s = malloc(size + 1);
	RedisUrl	one;
	bool		ok;
	int			n;
	int			m;
	int			i;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';				/* the list API takes a C string */

	/* the list, with a full and with a small message buffer */
	memset(err, CANARY, sizeof(err));
	n = redis_url_parse_list(s, urls, REDIS_URL_MAX_NODES, err, sizeof(err));
	require(n >= -1 && n <= REDIS_URL_MAX_NODES);
	memset(err2, CANARY, sizeof(err2));
	m = redis_url_parse_list(s, again, REDIS_URL_MAX_NODES, err2, errlen2);
	require(m == n);
	if (n < 0)
	{
		check_message(err, sizeof(err), sizeof(err));
		check_message(err2, errlen2, sizeof(err2));
		require(is_truncation(err2, errlen2, err));
	}

	/* displays; joined = what the masked list must be */
	joined[0] = nopw[0] = '\0';
	for (i = 0; i < n; i++)
	{
		RedisUrl	bare = urls[i];

		check_node(&urls[i]);
		check_display(&urls[i], display, size + (size_t) i);
		if (!fields_contain(urls, n, SEED_PW))
			require(strstr(display, SEED_PW) == NULL);
		if (i > 0)
			strcat(joined, ",");
		strcat(joined, display);

		memset(bare.password, 0, sizeof(bare.password));
		redis_url_display(&bare, display, sizeof(display));
		if (i > 0)
			strcat(nopw, ",");
		strcat(nopw, display);
	}

	/* property 4 */
	memset(masked, CANARY, sizeof(masked));
	ok = redis_url_mask_list(s, masked, sizeof(masked));
	require(ok == (n >= 0));
	require(terminated(masked, sizeof(masked)));
	require(strcmp(masked, n < 0 ? "(invalid)" : joined) == 0);
	for (i = 0; i < n; i++)
		if (urls[i].password[0] && strstr(masked, urls[i].password))
			require(strstr(nopw, urls[i].password) != NULL);
	if (!fields_contain(urls, n > 0 ? n : 0, SEED_PW))
		require(strstr(masked, SEED_PW) == NULL);
	memset(small, CANARY, sizeof(small));
	require(!redis_url_mask_list(s, small, 0));
	require(untouched(small, 0, sizeof(small)));
	require(redis_url_mask_list(s, small, smalllen) == ok);
	require(terminated(small, smalllen));
	require(untouched(small, smalllen, sizeof(small)));
	require(is_truncation(small, smalllen, masked));

	/* property 5: the masked list parses to the same nodes */
	if (n > 0)
	{
		memset(err2, CANARY, sizeof(err2));
		m = redis_url_parse_list(masked, again, REDIS_URL_MAX_NODES,
								 err2, sizeof(err2));
		require(m == n);
		for (i = 0; i < n; i++)
		{
			require(same_node(&urls[i], &again[i]));
			require(strcmp(again[i].password,
						   urls[i].has_password ? "***" : "") == 0);
		}
	}

	/* property 6, and the single-URL parser on the raw bytes */
	memset(err2, CANARY, sizeof(err2));
	ok = redis_url_parse((const char *) data, size, &one, err2, errlen2);
	if (ok)
		check_node(&one);
	else
		check_message(err2, errlen2, sizeof(err2));
	if (size > 0 && memchr(data, '\0', size) == NULL &&
		memchr(data, ',', size) == NULL &&
		data[0] != ' ' && data[0] != '\t' &&
		data[size - 1] != ' ' && data[size - 1] != '\t')
	{
		require(ok == (n == 1));
		if (ok)
			require(same_node(&one, &urls[0]) &&
					strcmp(one.password, urls[0].password) == 0);
	}

	free(s);
	return 0;
}
