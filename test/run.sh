#!/usr/bin/env bash
# lockext's test command: installs what is missing (when run as root, from
# Debian's archive), builds and installs the extension, runs every suite
# (unit test, static checks, fuzzing, pg_regress, isolation, TAP) as an
# unprivileged user against throwaway clusters, and ends with one line
# "N passed, N failed".
#
#   bash test/run.sh                   # everything
#   LOCKEXT_KEEP=1 bash ...            # keep the scratch directory for inspection
#   LOCKEXT_FUZZ_SECONDS=60 bash ...   # fuzz each parser longer than the default 20 s
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib.sh"
setup_runner "${LOCKEXT_TEST_USER:-lockext_test}" ||
	{ echo "package installation failed"; echo "0 passed, 1 failed"; exit 1; }

log "building and installing lockext"
if ! build_and_install "$ROOT"; then
	echo "build failed"
	echo "0 passed, 1 failed"
	exit 1
fi

WORK=$(mktemp -d /tmp/lockext-test.XXXXXX)
cleanup() {
	# Anything a failed suite left running under our scratch directory.
	pkill -u "$RUN_USER" -f "$WORK" 2>/dev/null
	sleep 0.2
	pkill -9 -u "$RUN_USER" -f "$WORK" 2>/dev/null
	if [ -n "${LOCKEXT_KEEP:-}" ]; then
		echo "scratch directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp -r "$ROOT/sql" "$ROOT/expected" "$ROOT/src" "$ROOT/test/specs" "$ROOT/test/t" \
	"$ROOT/test/suites.sh" "$WORK/"
mkdir "$WORK/test"
cp -r "$ROOT/test/unit" "$ROOT/test/static_checks.sh" "$ROOT/test/fuzz.sh" "$WORK/test/"
chown -R "$RUN_USER" "$WORK"

as_user env PGBIN="$PGBIN" PGXS_DIR="$PGXS_DIR" ROOT="$ROOT" \
	bash "$WORK/suites.sh" "$WORK"
