/*
 * test_owner_value.c
 *	  Unit test of the owner value parser (src/owner_value.c), TAP output.
 *
 * Build and run from the repository root (test/run.sh does this):
 *   gcc -std=c99 -Wall -Wextra -Werror -O1 -g -fsanitize=address,undefined \
 *       -Isrc -Itest/unit -o /tmp/test_owner_value \
 *       test/unit/test_owner_value.c src/owner_value.c && /tmp/test_owner_value
 */
#include <limits.h>
#include <string.h>

#include "owner_value.h"
#include "tap.h"

static int
field_is(OwnerField f, const char *s)
{
	return f.len == strlen(s) && memcmp(f.p, s, f.len) == 0;
}

static void
test_valid(void)
{
	const char *v = "0a1b2c3d4e5f60718293a4b50000000000000007|alpha:5432|4242|shop|785000000000|psql | report";
	OwnerValue	o;

	check(owner_value_parse(v, strlen(v), &o) &&
		  field_is(o.instance, "alpha:5432") && o.pid == 4242 &&
		  field_is(o.database, "shop") && o.since == 785000000000LL &&
		  field_is(o.application_name, "psql | report"),
		  "all fields, '|' allowed in the last", v);
	v = "x|i|1|||";
	check(!owner_value_parse(v, strlen(v), &o), "empty since refused", v);
	v = "x|i|1||-5|";
	check(owner_value_parse(v, strlen(v), &o) && o.since == -5 && o.database.len == 0,
		  "empty database, negative since", v);
	v = "x|i|2147483647||9223372036854775807|a";
	check(owner_value_parse(v, strlen(v), &o) && o.pid == INT_MAX && o.since == LLONG_MAX,
		  "largest pid and since", v);
	v = "x|i|1||-9223372036854775808|a";
	check(owner_value_parse(v, strlen(v), &o) && o.since == LLONG_MIN, "smallest since", v);
}

static void
test_invalid(void)
{
	const char *bad[] = {
		"", "plain value", "x|i|1|d|5", "|i|1|d|5|a", "x||1|d|5|a",
		"x|i|0|d|5|a", "x|i|-1|d|5|a", "x|i|2147483648|d|5|a", "x|i|99999999999999999999|d|5|a",
		"x|i|12a|d|5|a", "x|i| 1|d|5|a", "x|i|1|d|9223372036854775808|a",
		"x|i|1|d|-9223372036854775809|a", "x|i|1|d|-|a", "x|i|1|d|5x|a",
	};
	OwnerValue	o;
	size_t		i;
	char		withnul[] = "x|i|1|d|5|a\0b";

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check(!owner_value_parse(bad[i], strlen(bad[i]), &o), "refused", bad[i]);
	check(!owner_value_parse(withnul, sizeof(withnul) - 1, &o), "refused", "a NUL byte inside");
	check(!owner_value_parse(NULL, 0, &o), "refused", "NULL");
}

int
main(void)
{
	test_valid();
	test_invalid();
	return done_testing();
}
