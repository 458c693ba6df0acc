#!/usr/bin/env bash
# Builds and tests lockext against the PostgreSQL versions Debian 12's own
# archive lacks, each in a root filesystem of the Debian suite that ships it:
# 17 in trixie, 18 in sid.  Run as root.  For each version it makes (or
# reuses) the root filesystem in a cache directory, copies git HEAD into it,
# builds there at -Werror, installs, and as an unprivileged user runs make
# installcheck (pg_regress and isolation, against a server it starts) and a
# subset of the TAP suite; then prints one line per version:
#     PG 17 (trixie): build ok, installcheck ok, TAP 8/8 ok (312 s)
# and exits non-zero when any stage of any version failed.  /proc and /dev
# are mounted into a root only while it is in use; whatever happens, nothing
# stays mounted or running when the script exits.
#
#   bash test/pgversions.sh                  # 17 and 18
#   bash test/pgversions.sh 18               # only 18
#   bash test/pgversions.sh --tests "test/t/001_session_end.pl" 17
#   bash test/pgversions.sh --tests 'test/t/*.pl' 18   # the whole TAP suite
#   bash test/pgversions.sh --worktree 17    # the working tree, not HEAD
#   bash test/pgversions.sh --keep 17        # keep the build tree and logs
#
#   LOCKEXT_PGV_CACHE=/dir   where the roots live (default /var/tmp/lockext-pgversions,
#                            about 2 GB per version); delete a root to remake it
#   LOCKEXT_PGV_TESTS="..."  the TAP subset, like --tests
#
# The default TAP subset (the whole suite takes too long for two more
# versions): the session end (001), the Redis backend (010), the quorum (020),
# Redis refusing (030: ACL denials, whose wording changed in Redis 7.2), the
# views and the upgrade from 1.0 (092), the keeper (093), acquiring on all
# nodes (095), TLS (098), the views without preloading (122: the DSM
# registry) and the named wait events (123).  Timings of every stage go to the log,
# $CACHE/log/<version>.log, and to stdout.
set -uo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${LOCKEXT_PGV_CACHE:-/var/tmp/lockext-pgversions}
MIRROR=http://deb.debian.org/debian
TESTS=${LOCKEXT_PGV_TESTS:-"test/t/001_session_end.pl test/t/010_redis.pl test/t/020_quorum.pl
	test/t/030_hostile.pl test/t/092_dlock_locks.pl test/t/093_keeper.pl test/t/095_acquire_all.pl
	test/t/098_tls.pl test/t/122_no_preload.pl test/t/123_wait_events.pl"}
RUNUSER=lockext_pgv
WORKTREE=
KEEP=
VERSIONS=()
while [ $# -gt 0 ]; do
	case $1 in
	--tests) TESTS=$2; shift 2 ;;
	--worktree) WORKTREE=1; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	[0-9]*) VERSIONS+=("$1"); shift ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done
[ ${#VERSIONS[@]} -eq 0 ] && VERSIONS=(17 18)
# one line, globs expanded: --tests 'test/t/*.pl' is the whole suite
# shellcheck disable=SC2116,SC2086
TESTS=$(cd "$SRC" && echo $TESTS)
[ "$(id -u)" = 0 ] || { echo "test/pgversions.sh runs as root (debootstrap, chroot, mount)" >&2; exit 2; }
# the host's own tool for making the roots (Debian 12's archive has it)
command -v debootstrap >/dev/null 2>&1 ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 ||
	{ echo "test/pgversions.sh: debootstrap is missing and could not be installed" >&2; exit 1; }

suite_of() {
	case $1 in
	17) echo trixie ;;
	18) echo sid ;;
	*) return 1 ;;
	esac
}

# What a root needs for version $1: what test/lib.sh installs on the host
# for 15 to run the TAP suite (pgbouncer: 070; faketime: 098, 111), less
# what only the static checks and fuzzing use (they stay on 15).
# postgresql-contrib is a metapackage of the suite's default version: the
# modules are in postgresql-NN.
packages_of() {
	echo "make gcc libc6-dev libssl-dev openssl postgresql-$1 postgresql-server-dev-$1
	      libipc-run-perl perl libhiredis-dev redis-server redis-tools faketime
	      pgbouncer ca-certificates"
}

mkdir -p "$CACHE/log" || exit 2
CACHE=$(cd "$CACHE" && pwd -P)   # as /proc/PID/root names it
# one run at a time in a cache
exec 9>"$CACHE/.lock"
flock -n 9 || { echo "another test/pgversions.sh uses $CACHE" >&2; exit 2; }
MOUNTED=()   # mount points, in the order mounted
ROOT=

# Everything of ours still running in $ROOT (processes whose root is it),
# then every mount, newest first.  Also on failure and on a signal.
release_root() {
	[ -n "$ROOT" ] || return 0
	local pids p i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		pids=""
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && pids="$pids ${p#/proc/}"
		done
		[ -z "$pids" ] && break
		# shellcheck disable=SC2086
		if [ "$i" -lt 6 ]; then kill $pids 2>/dev/null; else kill -9 $pids 2>/dev/null; fi
		sleep 0.5
	done
	for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" ||
			echo "could not unmount ${MOUNTED[i]}" >&2
	done
	MOUNTED=()
	ROOT=
}
trap release_root EXIT
trap 'echo "test/pgversions.sh: interrupted" >&2; exit 130' INT TERM

# Long commands run in the background and are waited for, so that a signal
# to the script runs its traps at once (bash defers them until a
# foreground command ends); release_root then ends what runs in the root.
run() {
	"$@" &
	wait $!
}

mount_into() {   # mount_into TARGET mount-arguments...
	local target=$1
	shift
	mount "$@" "$target" || return 1
	MOUNTED+=("$target")
}

# proc, and the host's /dev, /dev/shm and /dev/pts bound (as slaves: a
# mount inside never propagates out).
mount_root() {
	ROOT=$1
	mount_into "$ROOT/proc" -t proc proc &&
		mount_into "$ROOT/dev" --bind /dev && mount --make-rslave "$ROOT/dev" &&
		mount_into "$ROOT/dev/shm" --bind /dev/shm &&
		mount_into "$ROOT/dev/pts" --bind /dev/pts
}

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

# Seconds since $1 (date +%s).
since() { echo $(($(date +%s) - $1)); }

# stage NAME COMMAND...: runs it with its output in the version's log, and
# notes its time; returns its status.
stage() {
	local name=$1 t0 rc
	shift
	t0=$(date +%s)
	echo "== $name" >>"$LOG"
	run "$@" >>"$LOG" 2>&1
	rc=$?
	TIMES="$TIMES $name $(since "$t0")s"
	echo "== $name: rc $rc, $(since "$t0") s" >>"$LOG"
	return $rc
}

# What of packages_of is not installed in the root.
missing_packages() {
	local p
	for p in $(packages_of "$v"); do
		# shellcheck disable=SC2016
		in_root dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || echo "$p"
	done
}

# Make or reuse the root $ROOTDIR for version $v (suite $suite), and
# install what it lacks.
make_root() {
	local missing
	# something left mounted by a killed run: never remove through it
	if grep -q " $ROOTDIR/" /proc/mounts; then
		echo "$ROOTDIR has mounts left: unmount them first" >>"$LOG"
		return 1
	fi
	if [ ! -e "$ROOTDIR/.lockext-debootstrap" ]; then
		rm -rf --one-file-system "$ROOTDIR"
		stage debootstrap debootstrap --variant=minbase "$suite" "$ROOTDIR" "$MIRROR" || return 1
		touch "$ROOTDIR/.lockext-debootstrap"
	fi
	mount_root "$ROOTDIR" || return 1
	missing=$(missing_packages | tr '\n' ' ')
	[ -z "$missing" ] && return 0
	printf '#!/bin/sh\nexit 101\n' >"$ROOTDIR/usr/sbin/policy-rc.d"
	chmod +x "$ROOTDIR/usr/sbin/policy-rc.d"
	mkdir -p "$ROOTDIR/etc/postgresql-common"
	echo "create_main_cluster = false" >"$ROOTDIR/etc/postgresql-common/createcluster.conf"
	cp /etc/resolv.conf "$ROOTDIR/etc/resolv.conf" 2>/dev/null
	# sid's Release file can look expired
	stage apt in_root sh -c "apt-get -qq -o Acquire::Check-Valid-Until=false update &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing" ||
		return 1
	in_root sh -c "id $RUNUSER >/dev/null 2>&1 || useradd --create-home --shell /bin/bash $RUNUSER"
}

# The source into $ROOTDIR/build/lockext: git HEAD, or with --worktree the
# working tree's files (tracked and untracked, not ignored).
copy_source() {
	rm -rf --one-file-system "$ROOTDIR/build"
	mkdir -p "$ROOTDIR/build/lockext"
	if [ -n "$WORKTREE" ]; then
		(cd "$SRC" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - --ignore-failed-read) |
			tar -xf - -C "$ROOTDIR/build/lockext"
	else
		git -C "$SRC" archive HEAD | tar -xf - -C "$ROOTDIR/build/lockext"
	fi || { echo "cannot copy the source (git HEAD of $SRC)" >>"$LOG"; return 1; }
}

# The tests, as the unprivileged user inside the root (written there as
# /build/run_tests.sh): a server set up as test/suites.sh sets up its own
# for make installcheck, pg_regress and isolation against it, then the TAP
# subset.  Prints "RESULT installcheck ok|FAILED" and "TIME stage seconds".
write_test_script() {
	cat >"$ROOTDIR/build/run_tests.sh" <<-'EOF'
	set -u
	PG_CONFIG=/usr/lib/postgresql/$PGV/bin/pg_config
	export PATH=/usr/lib/postgresql/$PGV/bin:$PATH
	cd /build/lockext || exit 1
	W=/build/work
	D=$W/pg_installcheck
	mkdir -p $W/tmp
	ok=1
	t0=$(date +%s)
	if initdb -D $D -A trust -U postgres >$W/initdb.log 2>&1 &&
		printf "%s\n" "shared_preload_libraries = 'lockext'" "max_prepared_transactions = 2" \
			"listen_addresses = ''" "unix_socket_directories = '$W'" "port = 55432" \
			>>$D/postgresql.conf &&
		pg_ctl -D $D -l $W/installcheck_server.log -w start >/dev/null; then
		# pg_regress, then isolation (each runs even when the other failed)
		export PGHOST=$W PGPORT=55432 PGUSER=postgres
		make -s installcheck PG_CONFIG=$PG_CONFIG ISOLATION= TAP_TESTS= || ok=0
		make -s installcheck PG_CONFIG=$PG_CONFIG REGRESS= TAP_TESTS= || ok=0
		unset PGHOST PGPORT PGUSER
		for f in regression.diffs test/regression.diffs; do [ -f $f ] && cat $f; done
		pg_ctl -D $D -m fast -w stop >/dev/null
	else
		ok=0
		cat $W/initdb.log $W/installcheck_server.log
	fi
	echo "TIME installcheck $(( $(date +%s) - t0 ))"
	[ $ok = 1 ] && echo "RESULT installcheck ok" || echo "RESULT installcheck FAILED"
	t0=$(date +%s)
	TMPDIR=$W/tmp make -s prove_installcheck PG_CONFIG=$PG_CONFIG PROVE_TESTS="$TESTS" 2>&1
	echo "TIME tap $(( $(date +%s) - t0 ))"
	EOF
}

# One version: prints its result line; returns non-zero when a stage failed.
run_version() {
	v=$1
	local t0 suite build=FAILED check="not run" tap="not run" passed=0 total=1 out l
	t0=$(date +%s)
	TIMES=""
	LOG=$CACHE/log/$v.log
	: >"$LOG"
	if ! suite=$(suite_of "$v"); then
		echo "PG $v: no Debian suite known for it (17: trixie, 18: sid)"
		return 1
	fi
	ROOTDIR=$CACHE/$suite
	if ! make_root; then
		release_root
		echo "PG $v ($suite): the root filesystem could not be made, see $LOG ($(since "$t0") s)"
		return 1
	fi
	if ! copy_source; then
		release_root
		echo "PG $v ($suite): the source could not be copied, see $LOG"
		return 1
	fi
	if stage build in_root sh -c "cd /build/lockext &&
			make -s PG_CONFIG=/usr/lib/postgresql/$v/bin/pg_config COPT=-Werror &&
			make -s PG_CONFIG=/usr/lib/postgresql/$v/bin/pg_config install"; then
		build=ok
		write_test_script
		in_root chown -R "$RUNUSER" /build
		out=$CACHE/log/$v.tests.log
		run in_root runuser -u "$RUNUSER" -- env PGV="$v" TESTS="$TESTS" HOME=/build \
			bash /build/run_tests.sh >"$out" 2>&1
		cat "$out" >>"$LOG"
		check=$(sed -n 's/^RESULT installcheck //p' "$out")
		TIMES="$TIMES $(sed -n 's/^TIME \([a-z]*\) \([0-9]*\)/\1 \2s/p' "$out" | tr '\n' ' ')"
		total=$(echo "$TESTS" | wc -w)
		passed=$(grep -cE '^test/t/[^ ]+\.pl \.+ ok$' "$out")
		tap="$passed/$total $([ "$passed" = "$total" ] && echo ok || echo FAILED)"
		[ -z "$check" ] && check=FAILED
		if [ "$passed" != "$total" ]; then
			for l in "$ROOTDIR"/build/lockext/tmp_check/log/*.log; do
				[ -f "$l" ] && { echo "---- $l"; tail -n 40 "$l"; } >>"$LOG"
			done
		fi
	fi
	[ -n "$KEEP" ] || rm -rf --one-file-system "$ROOTDIR/build"
	release_root
	echo "PG $v ($suite): build $build, installcheck $check, TAP $tap ($(since "$t0") s:$(echo "$TIMES" | tr -s ' ' ' ' | sed 's/ *$//'))"
	[ "$build" = ok ] && [ "$check" = ok ] && [ "$passed" = "$total" ] && return 0
	# what failed, indented under the line; the rest is in the log
	grep -E '^(not ok|#\s+Failed test)|error:|\.pl \.+ $|^Dubious' "$LOG" | head -n 20 | sed 's/^/    /'
	echo "    log: $LOG"
	return 1
}

status=0
for v in "${VERSIONS[@]}"; do
	run_version "$v" || status=1
done
exit $status
