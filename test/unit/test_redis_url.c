/*
 * test_redis_url.c
 *	  Unit test of the Redis node URL parser (src/redis_url.c), TAP output.
 *
 * Build and run from the repository root (test/run.sh does this):
 *   gcc -std=c99 -Wall -Wextra -Werror -O1 -g -fsanitize=address,undefined \
 *       -fno-omit-frame-pointer -Isrc -o /tmp/test_redis_url \
 *       test/unit/test_redis_url.c src/redis_url.c && /tmp/test_redis_url
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"
#include "tap.h"

/* Valid lists: count, and the display of the first node. */
static const struct
{
	const char *input;
	int			count;
	const char *display;	/* of node 1 */
}			valid[] = {
	{"redis://127.0.0.1:6380", 1, "redis://127.0.0.1:6380"},
	{"redis://localhost", 1, "redis://localhost:6379"},
	{"REDIS://Host-1.example_x:1", 1, "redis://Host-1.example_x:1"},
	{"redis://127.0.0.1:65535/1023", 1, "redis://127.0.0.1:65535/1023"},
	{"redis://127.0.0.1/", 1, "redis://127.0.0.1:6379"},
	{"redis://127.0.0.1:6380/2", 1, "redis://127.0.0.1:6380/2"},
	{"redis://[::1]:7000", 1, "redis://[::1]:7000"},
	{"redis://[::1]", 1, "redis://[::1]:6379"},
	{"redis://:s3cret@127.0.0.1:6380", 1, "redis://:***@127.0.0.1:6380"},
	{"redis://app:s3cret@127.0.0.1:6380/1", 1, "redis://app:***@127.0.0.1:6380/1"},
	{"redis://a%40b:p%40ss%2Cw%3Ard@h:1", 1, "redis://a@b:***@h:1"},
	{"redis://u:@h:1", 1, "redis://u:***@h:1"},
	{"redis://u:p@ss@h:1", 1, "redis://u:***@h:1"},
	{"redis://app@h:1", 1, "redis://app@h:1"},
	{"rediss://h:6380", 1, "rediss://h:6380"},
	{"rediss://app:pw@h:6380/2?sslmode=verify-full", 1, "rediss://app:***@h:6380/2"},
	{"REDISS://h?sslmode=verify-ca&sslrootcert=ca.crt", 1,
	"rediss://h:6379?sslmode=verify-ca"},
	{"rediss://h:1?sslmode=require&sslsni=0", 1, "rediss://h:1?sslmode=require&sslsni=0"},
	{"rediss://h:1?sslsni=0", 1, "rediss://h:1?sslsni=0"},
	{"rediss://[::1]:1?sslcert=c.crt&sslkey=c%26.key", 1, "rediss://[::1]:1"},
	{"rediss://h:1,redis://h:2", 2, "rediss://h:1"},
	{"unix:///tmp/r.sock?user=app", 1, "unix:///tmp/r.sock?user=app"},
	{"unix:///tmp/redis.sock", 1, "unix:///tmp/redis.sock"},
	{"unix:///tmp/redis.sock?db=3", 1, "unix:///tmp/redis.sock?db=3"},
	{"unix:///tmp/r.sock?db=1&user=app&password=x%26y", 1,
	"unix:///tmp/r.sock?db=1&user=app&password=***"},
	{"unix:///tmp/r.sock?password=pw", 1, "unix:///tmp/r.sock?password=***"},
	{"  redis://a:1 ,\tredis://b:2 , unix:///s  ", 3, "redis://a:1"},
	{"redis://h:1,redis://h:2,redis://h:3,redis://h:4,redis://h:5", 5, "redis://h:1"},
	{"redis://h:1/0,redis://h:1/1", 2, "redis://h:1"},
	{"", 0, NULL},
	{"   \t ", 0, NULL},
};

/* Invalid lists, and a word the message must contain. */
static const struct
{
	const char *input;
	const char *message;
}			invalid[] = {
	{"redis://", "missing host"},
	{"redis://:6379", "missing host"},
	{"redis://h:0", "invalid port"},
	{"redis://h:99999", "invalid port"},
	{"redis://h:65536", "invalid port"},
	{"redis://h:abc", "invalid port"},
	{"redis://h:", "invalid port"},
	{"redis://h:1/1024", "invalid database"},
	{"redis://h:1/x", "invalid database"},
	{"redis://h:1/1/2", "invalid database"},
	{"redis://h:1?db=1", "query"},
	{"redis://@h:1", "user name"},
	{"redis://u:p%zz@h:1", "percent-encoding"},
	{"redis://u:p%4@h:1", "percent-encoding"},
	{"redis://u:p%00@h:1", "percent-encoding"},
	{"redis://[::1:1", "missing \"]\""},
	{"redis://[zz]:1", "invalid IPv6"},
	{"redis://[::1]x", "unexpected"},
	{"redis://ho$t:1", "invalid host"},
	{"rediss://h:1?sslmode=disable", "use redis://"},
	{"rediss://h:1?sslmode=prefer", "not supported"},
	{"rediss://h:1?sslmode=verify", "invalid sslmode"},
	{"rediss://h:1?sslsni=2", "invalid sslsni"},
	{"rediss://h:1?sslrootcert=", "sslrootcert"},
	{"rediss://h:1?sslcert=c.crt", "go together"},
	{"rediss://h:1?sslkey=c.key", "go together"},
	{"rediss://h:1?db=1", "unknown query"},
	{"rediss://h:1?sslmode", "without a value"},
	{"redis://h:1?sslmode=require", "need rediss://"},
	{"unix:///s?sslmode=require", "unknown query"},
	{"rediss://h:1,redis://H:1", "same as node 1"},
	{"http://h:1", "unknown scheme"},
	{"h:1", "unknown scheme"},
	{"unix://tmp/r.sock", "absolute"},
	{"unix://", "absolute"},
	{"unix:///tmp/r.sock?db=x", "invalid database"},
	{"unix:///tmp/r.sock?foo=1", "unknown query"},
	{"unix:///tmp/r.sock?db", "without a value"},
	{"redis://a:1,,redis://b:2", "node 2 is empty"},
	{",redis://a:1", "node 1 is empty"},
	{"redis://a:1,", "node 2 is empty"},
	{"redis://a:1,redis://A:1", "same as node 1"},
	{"unix:///s,unix:///s", "same as node 1"},
	{"redis://a:1\n", "control"},
	{"redis://a :1", "spaces"},
	{"redis://a:1,redis://b:2\n,redis://c:3", "node 2"},
	{"redis://h:1,redis://h:2,redis://h:3,redis://h:4,redis://h:5,redis://h:6,"
		"redis://h:7,redis://h:8,redis://h:9,redis://h:10,redis://h:11,redis://h:12,"
	"redis://h:13,redis://h:14,redis://h:15,redis://h:16", "too many nodes"},
};

static void
test_valid(void)
{
	size_t		i;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
	{
		RedisUrl	urls[REDIS_URL_MAX_NODES];
		char		err[256] = "";
		char		shown[600] = "";
		int			n = redis_url_parse_list(valid[i].input, urls,
											 REDIS_URL_MAX_NODES, err, sizeof(err));

		if (n > 0)
			redis_url_display(&urls[0], shown, sizeof(shown));
		check(n == valid[i].count &&
			  (valid[i].display == NULL || strcmp(shown, valid[i].display) == 0),
			  "valid", valid[i].input);
		if (n != valid[i].count || (valid[i].display && strcmp(shown, valid[i].display)))
			printf("# got %d \"%s\" (%s)\n", n, shown, err);
	}
}

static void
test_invalid(void)
{
	size_t		i;

	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
	{
		RedisUrl	urls[REDIS_URL_MAX_NODES];
		char		err[256] = "";
		int			n = redis_url_parse_list(invalid[i].input, urls,
											 REDIS_URL_MAX_NODES, err, sizeof(err));

		check(n == -1 && strstr(err, invalid[i].message) != NULL, "invalid",
			  invalid[i].input);
		if (n != -1 || strstr(err, invalid[i].message) == NULL)
			printf("# got %d \"%s\", wanted \"%s\"\n", n, err, invalid[i].message);
	}
}

static void
test_fields(void)
{
	RedisUrl	u;
	char		err[256];

	const char *pct = "redis://a%40b:p%40ss%2Cw%3Ard@h:1/5";

	check(redis_url_parse(pct, strlen(pct), &u, err, sizeof(err)) &&
		  strcmp(u.user, "a@b") == 0 && strcmp(u.password, "p@ss,w:rd") == 0 &&
		  u.has_password && strcmp(u.host, "h") == 0 && u.port == 1 && u.db == 5 &&
		  u.kind == REDIS_URL_TCP, "fields decoded", "percent-encoded user and password");
	check(redis_url_parse("redis://[::1]:7000", 18, &u, err, sizeof(err)) &&
		  strcmp(u.host, "::1") == 0 && u.port == 7000, "fields", "IPv6 host without brackets");
	check(redis_url_parse("unix:///tmp/r.sock?db=2&password=pw", 35, &u, err, sizeof(err)) &&
		  u.kind == REDIS_URL_UNIX && strcmp(u.path, "/tmp/r.sock") == 0 && u.db == 2 &&
		  strcmp(u.password, "pw") == 0, "fields", "unix socket with db and password");
	{
		const char *tls = "rediss://u@h:7/1?sslrootcert=%2Fetc%2Fca.pem&sslcert=c&sslkey=k&sslsni=0";

		check(redis_url_parse(tls, strlen(tls), &u, err, sizeof(err)) &&
			  u.tls && u.kind == REDIS_URL_TCP && u.sslmode == REDIS_SSL_VERIFY_FULL &&
			  !u.sslsni && strcmp(u.sslrootcert, "/etc/ca.pem") == 0 &&
			  strcmp(u.sslcert, "c") == 0 && strcmp(u.sslkey, "k") == 0 &&
			  u.db == 1 && strcmp(u.user, "u") == 0, "fields", "rediss:// with TLS options");
		check(redis_url_parse("redis://h:1", 11, &u, err, sizeof(err)) && !u.tls,
			  "fields", "redis:// is not TLS");
	}
	/* length-bounded: trailing bytes beyond len are not read */
	check(redis_url_parse("redis://h:1XXXX", 11, &u, err, sizeof(err)) && u.port == 1,
		  "length", "only len bytes are parsed");
	{
		char		path[200];

		snprintf(path, sizeof(path), "unix:///%0120d", 0);
		check(!redis_url_parse(path, strlen(path), &u, err, sizeof(err)) &&
			  strstr(err, "too long") != NULL, "invalid", "unix path over 107 bytes");
	}
	{
		char		host[400];

		memset(host, 'a', sizeof(host));
		memcpy(host, "redis://", 8);
		host[sizeof(host) - 1] = '\0';
		check(!redis_url_parse(host, strlen(host), &u, err, sizeof(err)) &&
			  strstr(err, "too long") != NULL, "invalid", "host name over 255 bytes");
	}
}

/* The password never shows in a display, a masked list or an error. */
static void
test_password_hidden(void)
{
	const char *lists[] = {
		"redis://:Sekr1t@h:1",
		"redis://app:Sekr1t@h:1,unix:///s?password=Sekr1t",
		"redis://app:Sekr1t@h:0",
		"redis://app:Sekr1t%zz@h:1",
		"redis://app:Sekr1t@h:1,redis://app:Sekr1t@h:1",
		"unix:///s?password=Sekr1t&bogus=1",
		"redis://app:Sekr1t@[zz]:1",
	};
	size_t		i;

	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
	{
		RedisUrl	urls[REDIS_URL_MAX_NODES];
		char		err[256] = "";
		char		masked[2000] = "";
		char		shown[600] = "";
		int			n = redis_url_parse_list(lists[i], urls, REDIS_URL_MAX_NODES,
											 err, sizeof(err));

		if (n > 0)
			redis_url_display(&urls[0], shown, sizeof(shown));
		redis_url_mask_list(lists[i], masked, sizeof(masked));
		check(strstr(err, "Sekr1t") == NULL && strstr(shown, "Sekr1t") == NULL &&
			  strstr(masked, "Sekr1t") == NULL, "password hidden", lists[i]);
	}
	{
		char		masked[2000];

		check(redis_url_mask_list("redis://:x@h:1, unix:///s?db=1", masked, sizeof(masked)) &&
			  strcmp(masked, "redis://:***@h:1,unix:///s?db=1") == 0,
			  "masked list", masked);
		check(!redis_url_mask_list("bogus", masked, sizeof(masked)) &&
			  strcmp(masked, "(invalid)") == 0, "masked list", "(invalid)");
		check(redis_url_mask_list("redis://:x@h:1", masked, 5) && strlen(masked) == 4,
			  "masked list", "truncated to the buffer");
	}
	{
		/* user names that need encoding show encoded, so SHOW parses back */
		const char *const encoded[][2] = {
			{"redis://a%2Cb:Sekr1t@h:1", "redis://a%2Cb:***@h:1"},
			{"redis://a%3Ab:Sekr1t@h:1", "redis://a%3Ab:***@h:1"},
			{"redis://a%0Ab%2F:Sekr1t@h:1", "redis://a%0Ab%2F:***@h:1"},
			{"unix:///s?user=a%26b&password=Sekr1t", "unix:///s?user=a%26b&password=***"},
		};

		for (i = 0; i < sizeof(encoded) / sizeof(encoded[0]); i++)
		{
			char		masked[2000];
			RedisUrl	before[REDIS_URL_MAX_NODES];
			RedisUrl	after[REDIS_URL_MAX_NODES];
			char		err[256];

			check(redis_url_mask_list(encoded[i][0], masked, sizeof(masked)) &&
				  strcmp(masked, encoded[i][1]) == 0, "user encoded in the masked list", masked);
			check(redis_url_parse_list(encoded[i][0], before, REDIS_URL_MAX_NODES, err, sizeof(err)) == 1 &&
				  redis_url_parse_list(masked, after, REDIS_URL_MAX_NODES, err, sizeof(err)) == 1 &&
				  strcmp(before[0].user, after[0].user) == 0,
				  "the masked list parses back to the same user", encoded[i][0]);
		}
	}
}

/* Random and mutated inputs: must not crash (the sanitizers watch). */
static void
test_robustness(void)
{
	static const char alphabet[] = "redis:/unix@[]%:?&=,. 09azAZ\t\n\x01\xff";
	const char *seeds[] = {"redis://u:p@[::1]:6380/2", "unix:///tmp/r.sock?db=1&password=x"};
	unsigned int seed = 12345;
	int			i;
	int			survived = 0;

	for (i = 0; i < 20000; i++)
	{
		char		buf[300];
		RedisUrl	urls[REDIS_URL_MAX_NODES];
		char		err[64];
		char		masked[128];
		int			len = 0;
		int			j;

		seed = seed * 1103515245 + 12345;
		if (i % 2)
		{
			len = (int) ((seed >> 16) % 120);
			for (j = 0; j < len; j++)
			{
				seed = seed * 1103515245 + 12345;
				buf[j] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
			}
		}
		else
		{
			const char *s = seeds[(seed >> 16) % 2];

			len = (int) strlen(s);
			memcpy(buf, s, len);
			for (j = 0; j < 3; j++)
			{
				seed = seed * 1103515245 + 12345;
				buf[(seed >> 16) % len] = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
			}
		}
		buf[len] = '\0';
		(void) redis_url_parse_list(buf, urls, REDIS_URL_MAX_NODES, err, sizeof(err));
		(void) redis_url_mask_list(buf, masked, sizeof(masked));
		survived++;
	}
	check(survived == 20000, "robustness", "20000 random and mutated inputs");
}

int
main(void)
{
	test_valid();
	test_invalid();
	test_fields();
	test_password_hidden();
	test_robustness();
	return done_testing();
}
