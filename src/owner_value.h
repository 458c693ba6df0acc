/*-------------------------------------------------------------------------
 *
 * owner_value.h
 *	  Parser of the owner value a Redis lock key holds.
 *
 * The value is written by lockext as
 *   unique|instance|pid|database|since|application_name
 * but it is read back from Redis, where anyone with access may have put
 * anything.  Plain C with no PostgreSQL dependency and no allocation, so
 * the unit test and the fuzzer build it alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OWNER_VALUE_H
#define OWNER_VALUE_H

#include <stdbool.h>
#include <stddef.h>

/* A field: a slice of the parsed value (not NUL-terminated). */
typedef struct OwnerField
{
	const char *p;
	size_t		len;
} OwnerField;

typedef struct OwnerValue
{
	OwnerField	instance;
	int			pid;			/* 1 .. INT_MAX */
	OwnerField	database;		/* may be empty */
	long long	since;			/* PostgreSQL timestamp, microseconds */
	OwnerField	application_name;	/* the rest: may contain '|' */
} OwnerValue;

/*
 * Split value (len bytes, NUL bytes allowed and refused) into its fields;
 * false when it is not an owner value lockext wrote.
 */
extern bool owner_value_parse(const char *value, size_t len, OwnerValue *out);

#endif							/* OWNER_VALUE_H */
