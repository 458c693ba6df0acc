/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  lockext's configuration parameters, and the choice of backend.
 *
 * Whatever could weaken mutual exclusion (the backend) is superuser-only;
 * the wait and lease defaults are anyone's.  Ranges and enum values are
 * checked by the GUC machinery, which rejects bad values with a message
 * naming the parameter.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "lockext.h"

int			lockext_backend_choice = LOCKEXT_BACKEND_AUTO;
int			lockext_wait_timeout_ms = 30 * 1000;
int			lockext_lease_ms = 30 * 1000;

static const struct config_enum_entry backend_options[] = {
	{"auto", LOCKEXT_BACKEND_AUTO, false},
	{"advisory", LOCKEXT_BACKEND_ADVISORY, false},
	{NULL, 0, false}
};

void
lockext_define_gucs(void)
{
	DefineCustomEnumVariable("lockext.backend",
							 "Where dlocks live.",
							 "auto chooses redis when lockext.redis_nodes is set, "
							 "else advisory (PostgreSQL's lock manager).",
							 &lockext_backend_choice,
							 LOCKEXT_BACKEND_AUTO,
							 backend_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.wait_timeout",
							"Default time dlock_acquire() waits for a lock.",
							"0 means try once.",
							&lockext_wait_timeout_ms,
							30 * 1000, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("lockext.lease",
							"Default lease of a dlock on a backend with leases.",
							"A held lock whose lease ran out may be taken by another holder.",
							&lockext_lease_ms,
							30 * 1000, 1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("lockext");
}

/* The backend a new lock goes to; a held lock stays with its own. */
const DlockBackend *
lockext_current_backend(void)
{
	return &advisory_backend;
}
