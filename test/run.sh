#!/usr/bin/env bash
# lockext's test command: installs what is missing (when run as root, from
# Debian's archive), builds and installs the extension, runs every suite
# (pg_regress, isolation, TAP) as an unprivileged user against throwaway
# clusters, and ends with one line "N passed, N failed".
#
#   bash test/run.sh            # everything
#   LOCKEXT_KEEP=1 bash ...     # keep the scratch directory for inspection
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGVER=15
PGBIN=/usr/lib/postgresql/$PGVER/bin
PGXS_DIR=/usr/lib/postgresql/$PGVER/lib/pgxs
TEST_USER=${LOCKEXT_TEST_USER:-lockext_test}
PACKAGES="make gcc libc6-dev postgresql-$PGVER postgresql-server-dev-$PGVER
          postgresql-contrib libipc-run-perl perl libhiredis-dev redis-server
          redis-tools"

log() { printf '== %s\n' "$*"; }

install_packages() {
	local missing="" p
	for p in $PACKAGES; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing:$missing"
	# No Debian "main" cluster, and no service started by the packages.
	if ! dpkg -s postgresql-common >/dev/null 2>&1; then
		mkdir -p /etc/postgresql-common
		[ -e /etc/postgresql-common/createcluster.conf ] ||
			echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
	fi
	local policy_added=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		policy_added=1
	fi
	apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
	local rc=$?
	[ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
	return $rc
}

if [ "$(id -u)" = 0 ]; then
	install_packages || { echo "package installation failed"; echo "0 passed, 1 failed"; exit 1; }
	id "$TEST_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/bash "$TEST_USER"
	as_test_user() { runuser -u "$TEST_USER" -- "$@"; }
else
	TEST_USER=$(id -un)
	as_test_user() { "$@"; }
fi

log "building and installing lockext"
make -C "$ROOT" -s clean >/dev/null 2>&1
if ! make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" ||
	! make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null; then
	echo "build failed"
	echo "0 passed, 1 failed"
	exit 1
fi

WORK=$(mktemp -d /tmp/lockext-test.XXXXXX)
cleanup() {
	# Anything a failed suite left running under our scratch directory.
	pkill -u "$TEST_USER" -f "$WORK" 2>/dev/null
	sleep 0.2
	pkill -9 -u "$TEST_USER" -f "$WORK" 2>/dev/null
	if [ -n "${LOCKEXT_KEEP:-}" ]; then
		echo "scratch directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp -r "$ROOT/sql" "$ROOT/expected" "$ROOT/src" "$ROOT/test/specs" "$ROOT/test/t" \
	"$ROOT/test/unit" "$ROOT/test/suites.sh" "$WORK/"
chown -R "$TEST_USER" "$WORK"

as_test_user env PGBIN="$PGBIN" PGXS_DIR="$PGXS_DIR" ROOT="$ROOT" \
	bash "$WORK/suites.sh" "$WORK"
