#!/usr/bin/env bash
# lockext's benchmark command (make bench): installs what it needs from
# Debian's archive (as root), builds and installs the extension, and runs
# test/bench/bench.py, which prints the table and writes CSV and PNG under
# test/bench/results/.  BENCH_REPEATS (5) and BENCH_SECONDS (5) tune it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib.sh"
PACKAGES="$PACKAGES python3 python3-psycopg2 python3-redis gnuplot-nox"
[ "$(id -u)" = 0 ] || { echo "run as root (it starts servers as lockext_test)" >&2; exit 1; }
setup_runner lockext_test
log "building and installing lockext"
build_and_install "$ROOT"
exec /usr/bin/python3 "$ROOT/test/bench/bench.py"
