/*-------------------------------------------------------------------------
 *
 * liveness.c
 *	  Is the process that made a hold still there, and can it act?  The
 *	  lease keeper asks before it renews (design: "Liveness of a holder").
 *
 * A hold's shared row names its process by pid and by the process's start
 * time as the kernel counts it (field 22 of /proc/PID/stat): a pid the
 * kernel handed to a new process has another start time, so a row can
 * never be mistaken for a later process's.  The keeper reads the same file
 * to learn whether the process is stopped (SIGSTOP, a debugger): such a
 * holder cannot act, and its leases are left to run out.
 *
 * Nothing here runs in the holder, and nothing depends on a timer there:
 * PostgreSQL's error recovery disables every timeout (an abort inside an
 * aborted block runs no callback that could re-arm one), and a timer
 * would wake idle backends.  Without /proc (not Linux), a holder counts
 * as alive while its pid is in the proc array, and stops are not seen.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "storage/procarray.h"

#include "lockext_base.h"
#include "liveness.h"

/*
 * Read the state letter and the start time of a process from
 * /proc/PID/stat; false when there is no such file.  Never ERRORs.
 */
static bool
read_stat(int pid, char *state, uint64 *start)
{
	char		path[64];
	char		buf[1024];
	char	   *p;
	ssize_t		len;
	int			fd;
	int			field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return false;
	buf[len] = '\0';

	/* "pid (comm) state ...": comm may hold spaces and parentheses */
	p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ')
		return false;
	p += 2;
	*state = *p;
	/* the state is field 3, the start time field 22 */
	for (field = 3; field < 22; field++)
	{
		p = strchr(p, ' ');
		if (p == NULL)
			return false;
		p++;
	}
	*start = strtou64(p, NULL, 10);
	return true;
}

/* Does this system show processes in /proc? */
static bool
have_proc(void)
{
	static int	known = -1;

	if (known < 0)
		known = access("/proc/self/stat", R_OK) == 0;
	return known == 1;
}

/*
 * This process's start time, for the rows it publishes (0 without /proc).
 * Never ERRORs.
 */
uint64
liveness_my_start(void)
{
	static uint64 start = 0;
	static bool known = false;
	char		state;

	if (!known)
	{
		if (!read_stat(getpid(), &state, &start))
			start = 0;
		known = true;
	}
	return start;
}

/*
 * The keeper: what is the process pid, started at start (0: unknown),
 * now?  Gone when it is not a backend of this instance any more or its
 * pid belongs to another process; stopped when it cannot run.
 */
HolderLiveness
liveness_of(int pid, uint64 start)
{
	char		state;
	uint64		now_start;

	if (BackendPidGetProc(pid) == NULL)
		return HOLDER_GONE;
	if (!have_proc())
		return HOLDER_ACTIVE;
	if (!read_stat(pid, &state, &now_start))
		return HOLDER_GONE;
	if (start != 0 && now_start != start)
		return HOLDER_GONE;
	switch (state)
	{
		case 'T':				/* stopped by a signal */
		case 't':				/* stopped by a debugger */
			return HOLDER_STOPPED;
		case 'Z':
		case 'X':
			return HOLDER_GONE;
		default:
			return HOLDER_ACTIVE;
	}
}
