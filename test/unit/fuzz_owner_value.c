/*
 * fuzz_owner_value.c
 *	  libFuzzer target for the owner value parser (src/owner_value.c): the
 *	  values dlock_holder() and 55P03 details read back from Redis, where
 *	  anyone with access may have written anything.
 *
 * Built and run by test/fuzz.sh.  Besides the sanitizers it aborts when a
 * property breaks: an accepted value's fields lie inside the input and in
 * range, and the value rebuilt from them parses to the same fields.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "owner_value.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PROPERTY(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

static int
inside(OwnerField f, const char *p, size_t size)
{
	return f.p >= p && f.p + f.len <= p + size;
}

static int
same(OwnerField a, OwnerField b)
{
	return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy, so ASan sees any read past the end */
	char	   *value = malloc(size ? size : 1);
	char	   *rebuilt;
	size_t		rebuilt_len;
	OwnerValue	o;
	OwnerValue	again;

	if (value == NULL)
		return 0;
	memcpy(value, data, size);
	if (!owner_value_parse(value, size, &o))
	{
		free(value);
		return 0;
	}
	PROPERTY(inside(o.instance, value, size) && o.instance.len > 0);
	PROPERTY(inside(o.database, value, size));
	PROPERTY(inside(o.application_name, value, size));
	PROPERTY(o.pid >= 1);
	PROPERTY(memchr(value, '\0', size) == NULL);

	rebuilt_len = o.instance.len + o.database.len + o.application_name.len + 64;
	rebuilt = malloc(rebuilt_len);
	if (rebuilt != NULL)
	{
		int			n = snprintf(rebuilt, rebuilt_len, "u|%.*s|%d|%.*s|%lld|%.*s",
								 (int) o.instance.len, o.instance.p, o.pid,
								 (int) o.database.len, o.database.p, o.since,
								 (int) o.application_name.len, o.application_name.p);

		PROPERTY(n > 0 && (size_t) n < rebuilt_len);
		PROPERTY(owner_value_parse(rebuilt, (size_t) n, &again));
		PROPERTY(same(again.instance, o.instance) && again.pid == o.pid &&
				 same(again.database, o.database) && again.since == o.since &&
				 same(again.application_name, o.application_name));
		free(rebuilt);
	}
	free(value);
	return 0;
}
