/*-------------------------------------------------------------------------
 *
 * shared_stats.c
 *	  Per-database counters of dlock activity, in shared memory: what the
 *	  dlock_stats view shows and dlock_stats_reset() zeroes.
 *
 * One entry per database in a dshash table in lockext's DSA area,
 * created by the first acquire in that database (where an ERROR is still
 * allowed) and never deleted, so a backend keeps a pointer to its
 * database's entry and counts with atomic additions alone: counting never
 * ERRORs, takes no lock and allocates nothing, so it also works on the
 * abort path and after the commit record.  Entries of dropped databases
 * stay (a few hundred bytes each: the keeper may still hold a pointer),
 * zeroed by the DROP DATABASE (shared_stats_forget_db), so a database
 * that gets the OID again starts from zero; the view, which lists
 * pg_database, does not show them.  The lease keeper counts renewals into
 * the holders' databases the same way.
 *
 * Without shared_preload_libraries the control struct comes from the DSM
 * registry on PostgreSQL 17 and later (shared_area.c); before 17 there is
 * nothing to count into: the counting functions do nothing and the view
 * refuses.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/dsa.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "lockext.h"
#include "shared_area.h"
#include "shared_stats.h"

typedef struct StatsCtl
{
	LWLock		lock;			/* protects table */
	dshash_table_handle table;	/* InvalidDsaPointer until first use */
} StatsCtl;

typedef struct StatsEntry
{
	Oid			dboid;			/* the dshash key */
	pg_atomic_uint64 reset_at;	/* TimestampTz of the last reset */
	pg_atomic_uint64 c[DLOCK_NSTATS];
} StatsEntry;

static StatsCtl *ctl = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;
static dshash_table *table = NULL;
static StatsEntry *my_entry = NULL;	/* MyDatabaseId's */

/* The keeper's cache of entries by database. */
typedef struct KnownEntry
{
	Oid			dboid;
	StatsEntry *entry;
} KnownEntry;

static KnownEntry *known = NULL;
static int	nknown = 0;

/* tranche_id is set at attach */
static dshash_parameters table_params =
	LOCKEXT_DSHASH_PARAMETERS(sizeof(Oid), sizeof(StatsEntry));

static void
shared_stats_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(StatsCtl)));
}

static void
ctl_init(void *ptr)
{
	StatsCtl   *c = ptr;

	LWLockInitialize(&c->lock, shared_area_tranche());
	c->table = InvalidDsaPointer;
}

static void
shared_stats_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ctl = ShmemInitStruct("lockext stats", MAXALIGN(sizeof(StatsCtl)), &found);
	if (!found)
		ctl_init(ctl);
	LWLockRelease(AddinShmemInitLock);
}

/* The control struct, from the DSM registry if not preloaded.  May ERROR. */
static bool
have_ctl(void)
{
	if (ctl == NULL)
		ctl = shared_area_named_struct("lockext stats", sizeof(StatsCtl),
									   ctl_init);
	return ctl != NULL;
}

/* From _PG_init while preloading: reserve the control struct. */
void
shared_stats_install_hooks(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = shared_stats_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = shared_stats_shmem_startup;
}

/* Attach to (or create) the table; false when there is none.  May ERROR. */
static bool
attach(void)
{
	dsa_area   *area;
	MemoryContext oldcxt;

	if (table != NULL)
		return true;
	if (!have_ctl() || (area = shared_area_get()) == NULL)
		return false;
	table_params.tranche_id = shared_area_tranche();
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	LWLockAcquire(&ctl->lock, LW_EXCLUSIVE);
	if (ctl->table == InvalidDsaPointer)
	{
		table = dshash_create(area, &table_params, NULL);
		ctl->table = dshash_get_hash_table_handle(table);
	}
	else
		table = dshash_attach(area, &table_params, ctl->table, NULL);
	LWLockRelease(&ctl->lock);
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/* The entry of a database, created if need be.  May ERROR. */
static StatsEntry *
entry_of(Oid dboid, bool create)
{
	StatsEntry *entry;
	bool		found;

	if (!attach())
		return NULL;
	if (create)
		entry = dshash_find_or_insert(table, &dboid, &found);
	else
	{
		entry = dshash_find(table, &dboid, false);
		found = true;
		if (entry == NULL)
			return NULL;
	}
	if (!found)
	{
		int			i;

		pg_atomic_init_u64(&entry->reset_at, (uint64) GetCurrentTimestamp());
		for (i = 0; i < DLOCK_NSTATS; i++)
			pg_atomic_init_u64(&entry->c[i], 0);
	}
	/* entries are never deleted, so the pointer outlives the lock */
	dshash_release_lock(table, entry);
	return entry;
}

/*
 * Make sure this database has an entry, so that counting later never needs
 * to create one.  From the acquire path, where an ERROR is allowed.
 */
void
shared_stats_prepare(void)
{
	if (my_entry == NULL && OidIsValid(MyDatabaseId) && have_ctl())
		my_entry = entry_of(MyDatabaseId, true);
}

static inline void
add_to(StatsEntry *entry, DlockStat stat, uint64 n)
{
	pg_atomic_fetch_add_u64(&entry->c[stat], n);
}

/* Count n events of this database.  Never ERRORs. */
void
shared_stats_count(DlockStat stat, uint64 n)
{
	if (my_entry != NULL)
		add_to(my_entry, stat, n);
}

/* The lease keeper: count n events of a holder's database.  May ERROR. */
void
shared_stats_count_db(Oid dboid, DlockStat stat, uint64 n)
{
	int			i;

	for (i = 0; i < nknown; i++)
		if (known[i].dboid == dboid)
		{
			add_to(known[i].entry, stat, n);
			return;
		}
	{
		StatsEntry *entry = entry_of(dboid, false);

		if (entry == NULL)
			return;
		known = known ?
			repalloc(known, (nknown + 1) * sizeof(KnownEntry)) :
			MemoryContextAlloc(TopMemoryContext, sizeof(KnownEntry));
		known[nknown].dboid = dboid;
		known[nknown++].entry = entry;
		add_to(entry, stat, n);
	}
}

/* A wait of wait_us ended (granted or not): total, max, histogram. */
void
shared_stats_wait_ended(int64 wait_us)
{
	uint64		old;
	DlockStat	bucket;

	if (my_entry == NULL || wait_us < 0)
		return;
	add_to(my_entry, DLOCK_STAT_WAIT_US, wait_us);
	old = pg_atomic_read_u64(&my_entry->c[DLOCK_STAT_WAIT_MAX_US]);
	while (old < (uint64) wait_us &&
		   !pg_atomic_compare_exchange_u64(&my_entry->c[DLOCK_STAT_WAIT_MAX_US],
										   &old, wait_us))
		;
	if (wait_us <= 10 * 1000)
		bucket = DLOCK_STAT_WAITS_10MS;
	else if (wait_us <= 100 * 1000)
		bucket = DLOCK_STAT_WAITS_100MS;
	else if (wait_us <= 1000 * 1000)
		bucket = DLOCK_STAT_WAITS_1S;
	else if (wait_us <= 10 * 1000 * 1000)
		bucket = DLOCK_STAT_WAITS_10S;
	else
		bucket = DLOCK_STAT_WAITS_LONGER;
	add_to(my_entry, bucket, 1);
}

/*
 * Call fn for every database's counters (a snapshot of each).  ERRORs
 * when there are none (not preloaded, before 17).
 */
void
shared_stats_scan(void (*fn) (Oid dboid, const uint64 *counters,
							  TimestampTz reset_at, void *arg), void *arg)
{
	dshash_seq_status status;
	StatsEntry *entry;
	List	   *copies = NIL;
	ListCell   *lc;

	shared_area_require("dlock_stats");
	(void) attach();
	dshash_seq_init(&status, table, false);
	while ((entry = dshash_seq_next(&status)) != NULL)
	{
		uint64	   *copy = palloc((DLOCK_NSTATS + 2) * sizeof(uint64));
		int			i;

		copy[0] = entry->dboid;
		copy[1] = pg_atomic_read_u64(&entry->reset_at);
		for (i = 0; i < DLOCK_NSTATS; i++)
			copy[i + 2] = pg_atomic_read_u64(&entry->c[i]);
		copies = lappend(copies, copy);
	}
	dshash_seq_term(&status);
	foreach(lc, copies)
	{
		uint64	   *copy = lfirst(lc);

		fn((Oid) copy[0], copy + 2, (TimestampTz) copy[1], arg);
	}
}

static void
zero_entry(StatsEntry *entry, TimestampTz now)
{
	int			i;

	for (i = 0; i < DLOCK_NSTATS; i++)
		pg_atomic_write_u64(&entry->c[i], 0);
	pg_atomic_write_u64(&entry->reset_at, (uint64) now);
}

/*
 * DROP DATABASE dropped dboid: zero its counters, so that a database that
 * gets the same OID later does not inherit them.  May ERROR.
 */
void
shared_stats_forget_db(Oid dboid)
{
	StatsEntry *entry;

	if (!have_ctl() || (entry = entry_of(dboid, false)) == NULL)
		return;
	zero_entry(entry, GetCurrentTimestamp());
}

/* Zero every database's counters.  ERRORs when there are none. */
void
shared_stats_reset(void)
{
	dshash_seq_status status;
	StatsEntry *entry;
	TimestampTz now = GetCurrentTimestamp();

	shared_area_require("dlock_stats_reset");
	(void) attach();
	dshash_seq_init(&status, table, false);
	while ((entry = dshash_seq_next(&status)) != NULL)
		zero_entry(entry, now);
	dshash_seq_term(&status);
}
