#!/usr/bin/env bash
# lockext's test command: installs what is missing (when run as root, from
# Debian's archive), makes the release archive of git HEAD (make dist),
# builds it in an empty directory at -Werror while watching which files the
# build uses, installs it, and runs every suite (unit tests, static checks,
# fuzzing, release checks, then make installcheck against a server started
# as the README says and make prove_installcheck) as an unprivileged user;
# then, as root, builds and tests on PostgreSQL 17 and 18 in debootstrap
# roots (test/pgversions.sh); ends with one line "N passed, N failed".  It tests what git HEAD holds:
# commit first (uncommitted changes are pointed out, not tested).  Every
# user, server and directory it made is gone when it exits.
#
#   bash test/run.sh                   # everything
#   LOCKEXT_KEEP=1 bash ...            # keep the scratch directory for inspection
#   LOCKEXT_FUZZ_SECONDS=60 bash ...   # fuzz each parser longer than the default 20 s
#   LOCKEXT_TEST_USER=name bash ...    # the unprivileged user (default lockext_test;
#                                      # created and removed again when missing)
#   LOCKEXT_PG_CONFIG=/x/bin/pg_config bash ...   # another PostgreSQL 15 install
#   LOCKEXT_NO_STRACE=1 bash ...       # as where ptrace is not allowed: the package
#                                      # check takes the compilers' -H output
#   LOCKEXT_NO_PGVERSIONS=1 bash ...   # PostgreSQL 15 only (no debootstrap roots of
#                                      # trixie and sid for 17 and 18)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib.sh"

fail() {
	echo "$1"
	echo "0 passed, 1 failed"
	exit 1
}

WORK=$(mktemp -d /tmp/lockext-test.XXXXXX)
chmod 755 "$WORK"
cleanup() {
	if [ -n "${RUN_USER:-}" ]; then
		# Anything a failed suite left running under our scratch directory.
		pkill -u "$RUN_USER" -f "$WORK" 2>/dev/null && sleep 0.2
		pkill -9 -u "$RUN_USER" -f "$WORK" 2>/dev/null
		remove_runner
	fi
	if [ -n "${LOCKEXT_KEEP:-}" ]; then
		echo "scratch directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup_runner "${LOCKEXT_TEST_USER:-lockext_test}" || fail "package installation failed"

log "packing git HEAD (make dist)"
git -C "$ROOT" rev-parse -q --verify HEAD >/dev/null ||
	fail "test/run.sh tests git HEAD: run it in a git checkout"
[ -n "$(git -C "$ROOT" status --porcelain)" ] &&
	log "note: uncommitted changes and untracked files are not tested (the build is of HEAD)"
git -C "$ROOT" ls-tree -r --name-only HEAD >"$WORK/head_files"
make -s -C "$ROOT" PG_CONFIG="$PG_CONFIG" DISTDIR="$WORK" dist || fail "make dist failed"
ZIP=$(echo "$WORK"/lockext-*.zip)
SRC=${ZIP%.zip}
unzip -q "$ZIP" -d "$WORK" && [ -d "$SRC" ] || fail "cannot unpack $ZIP into $SRC"

log "building and installing lockext from ${ZIP##*/} (COPT=-Werror)"
mkdir "$WORK/trace"
if [ -z "${LOCKEXT_NO_STRACE:-}" ] && strace -f -qq -o /dev/null true 2>/dev/null; then
	build_and_install "$SRC" env COPT=-Werror \
		strace -f -qq -ff -o "$WORK/trace/build" -e trace=execve,open,openat ||
		fail "build failed"
else
	# No ptrace here (a container may forbid it): the compilers name every
	# header they read (-H), and the tools and libraries are looked up.
	log "note: strace cannot trace here; the package check takes the headers the compilers name (-H)"
	build_and_install "$SRC" env COPT="-Werror -H" 2>"$WORK/headers.log" ||
		{ grep -v '^\.' "$WORK/headers.log"; fail "build failed"; }
	headers_as_trace "$SRC" "$WORK/headers.log" >"$WORK/trace/build"
fi

# A relocated copy of Debian's PostgreSQL: its files count as Debian's.
case $PGBIN in
*/usr/lib/postgresql/$PGVER/bin) PG_PREFIX=${PGBIN%/usr/lib/postgresql/$PGVER/bin} ;;
*) PG_PREFIX= ;;
esac

chown -R "$RUN_USER" "$WORK"
as_user env ${LOCKEXT_PG_CONFIG:+LOCKEXT_PG_CONFIG="$LOCKEXT_PG_CONFIG"} \
	${LOCKEXT_FUZZ_SECONDS:+LOCKEXT_FUZZ_SECONDS="$LOCKEXT_FUZZ_SECONDS"} \
	PG_PREFIX="$PG_PREFIX" ZIP="$ZIP" bash "$SRC/test/suites.sh" "$SRC" "$WORK" |
	tee "$WORK/suites.out"
total=$(tail -n 1 "$WORK/suites.out")
passed=$(echo "$total" | sed -n 's/^\([0-9]*\) passed, [0-9]* failed$/\1/p')
failed=$(echo "$total" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed$/\1/p')
[ -n "$passed" ] && [ -n "$failed" ] || { passed=0; failed=1; }

# PostgreSQL 17 and 18 (test/pgversions.sh, as root: debootstrap roots of
# Debian trixie and sid): the build at -Werror, make installcheck and the
# Redis, keeper, TLS and upgrade TAP scripts; everything else runs on 15
# above.  Each version's build, installcheck and TAP script counts once.
if [ -n "${LOCKEXT_NO_PGVERSIONS:-}" ]; then
	log "note: PostgreSQL 17 and 18 skipped (LOCKEXT_NO_PGVERSIONS)"
elif [ "$(id -u)" != 0 ]; then
	log "note: PostgreSQL 17 and 18 need root (debootstrap): skipped"
else
	echo "== PostgreSQL 17 and 18 (test/pgversions.sh)"
	bash "$ROOT/test/pgversions.sh" 17 18 | tee "$WORK/pgversions.out"
	for v in 17 18; do
		line=$(grep -E "^PG $v " "$WORK/pgversions.out")
		for stage in build installcheck; do
			if echo "$line" | grep -q "$stage ok"; then
				passed=$((passed + 1))
			else
				failed=$((failed + 1))
			fi
		done
		tap=$(echo "$line" | sed -n 's/.*TAP \([0-9]*\)\/\([0-9]*\) .*/\1 \2/p')
		if [ -n "$tap" ]; then
			set -- $tap
			passed=$((passed + $1))
			failed=$((failed + $2 - $1))
		else
			failed=$((failed + 1))
		fi
	done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
