/*-------------------------------------------------------------------------
 *
 * shared_waits.c
 *	  The waits of this instance, read from the shared lock table, for
 *	  deadlock detection across instances (deadlock.c): the local queue's
 *	  waits as edges between sessions, and whether a session of this
 *	  instance still holds a key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "miscadmin.h"
#include "utils/dsa.h"
#include "utils/hsearch.h"

#include "lockext_base.h"
#include "shared_locks.h"
#include "shared_locks_int.h"

/*
 * Is the session session_id one of this instance's, and holding key no
 * more?  Then the value Redis still shows for key is a release on its way
 * (a COMMIT does not wait for it), not a holder a wait could be part of a
 * cycle through.  One look at the table.  May ERROR.
 */
bool
shared_locks_holder_gone_local(const char *session_id, const char *key)
{
	dshash_seq_status status;
	SharedLockRow *row;
	bool		local = false;
	bool		holds = false;

	if (!shared_locks_attach())
		return false;
	dshash_seq_init(&status, shared_locks_table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		const char *text = dsa_get_address(shared_locks_dsa, row->keytext);
		const char *ns = text + row->keylen + 1;
		const char *owner = ns + strlen(ns) + 1;

		if (strncmp(owner, session_id, LOCKEXT_SESSION_ID_LEN) != 0)
			continue;
		local = true;
		if (pg_atomic_read_u32(&row->life) == LOCKEXT_ROW_LIVE &&
			row->state != 'w' && strcmp(text, key) == 0)
		{
			holds = true;
			break;
		}
	}
	dshash_seq_term(&status);
	return local && !holds;
}

/*
 * The waits in the local queue of database dboid on this instance, as
 * edges of the wait-for graph between sessions, for deadlock detection
 * across instances: a session waiting in the local queue for a key waits
 * for the session holding its local lock.  blocker_of(arg, ...) tells
 * whose, and 0 when that wait is not live in the lock manager (over, or a
 * wait on Redis).  Sessions are named by their session ids, read from
 * their wait rows and the owner values of their Redis holds; a holder with
 * neither cannot be part of a cycle and is left out.  Waits on Redis
 * itself, and this backend's own, are their waiters' to publish.
 */
typedef struct SessionId
{
	int			pid;			/* the hash key */
	char		id[LOCKEXT_SESSION_ID_LEN + 1];
} SessionId;

int
shared_locks_wait_edges(Oid dboid, WaitBlockerFn blocker_of, void *arg,
						WaitEdge **edges)
{
	dshash_seq_status status;
	SharedLockRow *row;
	List	   *waits = NIL;
	HTAB	   *ids;			/* pid -> session id, one per session */
	HASHCTL		ctl_ids;
	ListCell   *lc;
	int			n = 0;

	*edges = NULL;
	if (!shared_locks_attach())
		return 0;
	ctl_ids.keysize = sizeof(int);
	ctl_ids.entrysize = sizeof(SessionId);
	ctl_ids.hcxt = CurrentMemoryContext;
	ids = hash_create("lockext session ids", 64, &ctl_ids,
					  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	dshash_seq_init(&status, shared_locks_table, false);
	while ((row = dshash_seq_next(&status)) != NULL)
	{
		const char *key = dsa_get_address(shared_locks_dsa, row->keytext);
		const char *ns = key + row->keylen + 1;
		const char *owner = ns + strlen(ns) + 1;
		int			pid = row->key.pid;
		SessionId  *sid;

		if (pg_atomic_read_u32(&row->life) != LOCKEXT_ROW_LIVE)
			continue;
		if (row->dboid != dboid || strlen(owner) < LOCKEXT_SESSION_ID_LEN)
			continue;			/* another database, or an advisory hold */
		sid = hash_search(ids, &pid, HASH_ENTER, NULL);
		memcpy(sid->id, owner, LOCKEXT_SESSION_ID_LEN);
		sid->id[LOCKEXT_SESSION_ID_LEN] = '\0';
		/* a wait on Redis names its remote holder */
		if (row->state == 'w' && pid != MyProcPid &&
			row->blocker_instance[0] == '\0' && row->blocker_pid == 0)
		{
			WaitEdge   *e = palloc0(sizeof(WaitEdge));

			e->waiter_pid = pid;
			memcpy(e->waiter, owner, LOCKEXT_SESSION_ID_LEN);
			e->since = row->since;
			e->hash = row->key.hash;
			e->key = pstrdup(key);
			waits = lappend(waits, e);
		}
	}
	dshash_seq_term(&status);

	*edges = palloc(Max(list_length(waits), 1) * sizeof(WaitEdge));
	foreach(lc, waits)
	{
		WaitEdge   *w = lfirst(lc);
		int			holder = blocker_of(arg, w->waiter_pid, dboid, w->hash);
		SessionId  *sid;

		if (holder == 0)
			continue;			/* not waiting in the local queue now */
		sid = hash_search(ids, &holder, HASH_FIND, NULL);
		if (sid == NULL)
			continue;			/* no id known: it cannot be in a cycle */
		(*edges)[n] = *w;
		(*edges)[n].holder_pid = holder;
		memcpy((*edges)[n].holder, sid->id, LOCKEXT_SESSION_ID_LEN + 1);
		n++;
	}
	hash_destroy(ids);
	return n;
}
