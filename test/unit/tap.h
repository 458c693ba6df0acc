/*
 * tap.h
 *	  The few lines of TAP output lockext's plain-C unit tests share.
 */
#ifndef LOCKEXT_TAP_H
#define LOCKEXT_TAP_H

#include <stdio.h>

static int	ntests = 0;
static int	nfailed = 0;

static void
check(int ok, const char *what, const char *input)
{
	ntests++;
	if (!ok)
		nfailed++;
	printf("%sok %d - %s: %s\n", ok ? "" : "not ", ntests, what, input);
}

/* The plan line; the exit status for main(). */
static int
done_testing(void)
{
	printf("1..%d\n", ntests);
	if (nfailed)
		printf("# %d of %d failed\n", nfailed, ntests);
	return nfailed > 0;
}

#endif							/* LOCKEXT_TAP_H */
