/*-------------------------------------------------------------------------
 *
 * owner_value.c
 *	  Parser of the owner value a Redis lock key holds (see owner_value.h).
 *
 * Works on (pointer, length) slices of the input and never reads past it;
 * numbers are range-checked digit by digit, so no input overflows them.
 *
 *-------------------------------------------------------------------------
 */
#include "owner_value.h"

#include <limits.h>
#include <string.h>

#define OWNER_FIELDS 6

/* A decimal number in [min, max], optionally negative; false otherwise. */
static bool
parse_number(OwnerField f, long long min, long long max, long long *out)
{
	size_t		i = 0;
	bool		negative = false;
	long long	v = 0;

	if (f.len > 0 && f.p[0] == '-')
	{
		negative = true;
		i = 1;
	}
	if (i == f.len)
		return false;
	for (; i < f.len; i++)
	{
		int			d = f.p[i] - '0';

		if (d < 0 || d > 9)
			return false;
		/* v stays within [min, max]: check before each step */
		if (negative ? v < (min + d) / 10 : v > (max - d) / 10)
			return false;
		v = v * 10 + (negative ? -d : d);
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool
owner_value_parse(const char *value, size_t len, OwnerValue *out)
{
	OwnerField	field[OWNER_FIELDS];
	size_t		start = 0;
	long long	n;
	int			i;

	memset(out, 0, sizeof(*out));
	if (value == NULL || memchr(value, '\0', len) != NULL)
		return false;

	/* the first five end at a '|'; the last takes the rest */
	for (i = 0; i < OWNER_FIELDS - 1; i++)
	{
		const char *bar = memchr(value + start, '|', len - start);

		if (bar == NULL)
			return false;
		field[i].p = value + start;
		field[i].len = (size_t) (bar - (value + start));
		start += field[i].len + 1;
	}
	field[i].p = value + start;
	field[i].len = len - start;

	if (field[0].len == 0 || field[1].len == 0)
		return false;
	if (!parse_number(field[2], 1, INT_MAX, &n))
		return false;
	out->pid = (int) n;
	if (!parse_number(field[4], LLONG_MIN, LLONG_MAX, &out->since))
		return false;
	out->instance = field[1];
	out->database = field[3];
	out->application_name = field[5];
	return true;
}
