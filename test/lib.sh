# Shared by test/run.sh and test/demo.sh: Debian packages, the unprivileged
# user that runs PostgreSQL (initdb refuses root), free loopback ports.
PGVER=15
PGBIN=/usr/lib/postgresql/$PGVER/bin
PGXS_DIR=/usr/lib/postgresql/$PGVER/lib/pgxs
PACKAGES="make gcc libc6-dev libssl-dev openssl postgresql-$PGVER postgresql-server-dev-$PGVER
          postgresql-contrib libipc-run-perl perl libhiredis-dev redis-server
          redis-tools clang libclang-rt-14-dev cppcheck pgbouncer"

log() { printf '== %s\n' "$*"; }

# Install what is missing from $PACKAGES (as root), starting no services.
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

# Create $1 as a system user when missing.
ensure_user() {
	id "$1" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/bash "$1"
}

# As root: install what is missing and run servers as user $1 (created when
# missing); otherwise run them as ourselves.  Sets RUN_USER, defines as_user.
setup_runner() {
	if [ "$(id -u)" = 0 ]; then
		install_packages || return 1
		ensure_user "$1"
		RUN_USER=$1
		as_user() { runuser -u "$RUN_USER" -- "$@"; }
	else
		RUN_USER=$(id -un)
		as_user() { "$@"; }
	fi
}

# Build and install the extension from the repository at $1.
build_and_install() {
	make -C "$1" -s clean >/dev/null 2>&1
	make -C "$1" -s PG_CONFIG="$PGBIN/pg_config" &&
		make -C "$1" -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null
}

# A loopback TCP port nothing listens on, from $1 upwards.
free_port() {
	local p=${1:-55000}
	while (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; do
		p=$((p + 1))
	done
	echo "$p"
}
