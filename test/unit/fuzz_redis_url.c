/*
 * fuzz_redis_url.c
 *	  libFuzzer target for the Redis node URL parser.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       -o /tmp/fuzz_redis_url test/unit/fuzz_redis_url.c src/redis_url.c
 *   /tmp/fuzz_redis_url -max_total_time=60 test/unit/corpus_redis_url
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);
	RedisUrl	urls[REDIS_URL_MAX_NODES];
	RedisUrl	one;
	char		err[128];
	char		masked[256];
	int			n;
	int			i;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = redis_url_parse_list(s, urls, REDIS_URL_MAX_NODES, err, sizeof(err));
	for (i = 0; i < n; i++)
		redis_url_display(&urls[i], masked, sizeof(masked));
	(void) redis_url_mask_list(s, masked, sizeof(masked));
	(void) redis_url_parse((const char *) data, size, &one, err, sizeof(err));
	free(s);
	return 0;
}
