# Shared by test/run.sh and test/demo.sh: Debian packages, the unprivileged
# user that runs PostgreSQL (initdb refuses root), free loopback ports.
PGVER=15
PGBIN=/usr/lib/postgresql/$PGVER/bin
PACKAGES="make gcc libc6-dev libssl-dev openssl postgresql-$PGVER postgresql-server-dev-$PGVER
          postgresql-contrib libipc-run-perl perl libhiredis-dev redis-server
          redis-tools clang libclang-rt-14-dev cppcheck pgbouncer faketime"

log() { printf '== %s\n' "$*"; }

# What building lockext needs, named in the README's "Installing" (the
# test command checks that the build used nothing else; clang and, through
# postgresql-server-dev, llvm make the bitcode for PostgreSQL's JIT).
BUILD_PACKAGES="make gcc libc6-dev postgresql-server-dev-$PGVER libhiredis-dev clang
                libssl-dev"
# What the test command needs besides, to build from the release archive
# and watch that build.
TEST_PACKAGES="git unzip strace"

# LOCKEXT_PG_CONFIG=/path/bin/pg_config: build, install and test against that
# PostgreSQL $PGVER (a relocated copy of Debian's, say) instead of Debian's.
PG_CONFIG=${LOCKEXT_PG_CONFIG:-$PGBIN/pg_config}
PGBIN=$(dirname "$PG_CONFIG")

# Install what is missing from $PACKAGES, $BUILD_PACKAGES and $TEST_PACKAGES
# (as root), starting no services.
install_packages() {
	local missing="" p
	for p in $PACKAGES $BUILD_PACKAGES $TEST_PACKAGES; do
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

# Redis 6.0 (Debian bullseye's), which lockext refuses: 117_old_redis.pl
# starts one.  Not installed, and bullseye not added to apt's sources: the
# .debs are fetched once, checked and unpacked here, with the libraries
# bookworm lacks (libssl1.1) or has but we do not install (Lua's, fetched
# with apt-get download).  LOCKEXT_OLD_REDIS_SERVER names a script that
# runs it; set whenever this ran, so the test fails (not skips) if the
# binary is missing.
OLD_REDIS_DIR=/var/cache/lockext-test/redis6.0
OLD_REDIS_POOL=http://deb.debian.org/debian/pool/main
OLD_REDIS_DEBS="
d7d3d93e00d414982eef09b57de3ad39db5ab61c16aef58241dedb75db0105fc r/redis/redis-server_6.0.16-1+deb11u2_amd64.deb
0329056b6cf1cc65ec1069a66bb0825ddb8307d1c6c5c93ab022fb19187138fd r/redis/redis-tools_6.0.16-1+deb11u2_amd64.deb
aadf8b4b197335645b230c2839b4517aa444fd2e8f434e5438c48a18857988f7 o/openssl/libssl1.1_1.1.1w-0+deb11u1_amd64.deb"
OLD_REDIS_APT="liblua5.1-0 lua-cjson lua-bitop"
install_old_redis() {
	export LOCKEXT_OLD_REDIS_SERVER=$OLD_REDIS_DIR/redis-server
	[ -x "$LOCKEXT_OLD_REDIS_SERVER" ] && return 0
	log "fetching Redis 6.0.16 (Debian bullseye) into $OLD_REDIS_DIR"
	local tmp sum path
	tmp=$(mktemp -d) || return 1
	chmod 755 "$tmp"
	(
		cd "$tmp" || exit 1
		echo "$OLD_REDIS_DEBS" | while read -r sum path; do
			[ -n "$path" ] || continue
			curl -fsS --max-time 120 -o "${path##*/}" "$OLD_REDIS_POOL/$path" &&
				echo "$sum  ${path##*/}" | sha256sum -c --quiet || exit 1
		done &&
			{ apt-get download -qq $OLD_REDIS_APT 2>/dev/null ||
				{ apt-get update -qq && apt-get download -qq $OLD_REDIS_APT 2>/dev/null; }; } &&
			mkdir -p root && for d in *.deb; do dpkg-deb -x "$d" root || exit 1; done &&
			mkdir -p "$OLD_REDIS_DIR" && rm -rf "$OLD_REDIS_DIR/root" &&
			mv root "$OLD_REDIS_DIR/root" &&
			printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' \
				"$OLD_REDIS_DIR/root/usr/lib/x86_64-linux-gnu" \
				"$OLD_REDIS_DIR/root/usr/bin/redis-server" >"$OLD_REDIS_DIR/run.new" &&
			chmod 755 "$OLD_REDIS_DIR/run.new" &&
			"$OLD_REDIS_DIR/run.new" --version | grep -q 'v=6\.0\.' &&
			mv "$OLD_REDIS_DIR/run.new" "$LOCKEXT_OLD_REDIS_SERVER"
	)
	local rc=$?
	rm -rf "$tmp"
	[ $rc -eq 0 ] || echo "could not set up Redis 6.0 in $OLD_REDIS_DIR (117_old_redis.pl will fail)" >&2
	return $rc
}

# Create $1 as a system user when missing; RUN_USER_CREATED=1 when we did.
ensure_user() {
	id "$1" >/dev/null 2>&1 && return 0
	useradd --system --no-create-home --shell /bin/bash "$1" && RUN_USER_CREATED=1
}

# Remove the user setup_runner created (not one that was there before),
# with whatever it still runs: everything of that user is ours.
remove_runner() {
	[ -n "${RUN_USER_CREATED:-}" ] || return 0
	local i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		pkill -u "$RUN_USER" 2>/dev/null || break
		sleep 0.3
		[ "$i" -ge 5 ] && pkill -9 -u "$RUN_USER" 2>/dev/null
	done
	userdel "$RUN_USER" 2>/dev/null || echo "could not remove the user $RUN_USER" >&2
}

# As root: install what is missing and run servers as user $1 (created when
# missing, removed by remove_runner); otherwise run them as ourselves.
# Sets RUN_USER, defines as_user.
setup_runner() {
	if [ "$(id -u)" = 0 ]; then
		install_packages || return 1
		install_old_redis
		RUN_USER=$1
		ensure_user "$1" || return 1
		as_user() { runuser -u "$RUN_USER" -- "$@"; }
	else
		RUN_USER=$(id -un)
		as_user() { "$@"; }
	fi
}

# Build and install the extension from the source tree at $1.  Further
# arguments go before the build's make: a command that runs it
# (env COPT=-Werror strace ...).
build_and_install() {
	local dir=$1
	shift
	make -C "$dir" -s clean >/dev/null 2>&1
	"$@" make -C "$dir" -s PG_CONFIG="$PG_CONFIG" &&
		make -C "$dir" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# Without strace: what a build of the tree at $1 used, from the compilers'
# -H output ($2) and the tools and libraries the build names, as the lines
# of a trace (the format test/release_checks.pl reads).
headers_as_trace() {
	local l
	{
		sed -n 's/^\.\+ \(\/.*\)$/\1/p' "$2"
		command -v make gcc "$("$PG_CONFIG" --cc | cut -d' ' -f1)"
		sed -n 's/^CLANG *= *//p' "$(dirname "$("$PG_CONFIG" --pgxs)")/../Makefile.global" |
			xargs -r -n1 sh -c 'command -v "$0"'
		for l in $(grep -o -- '-l[a-z0-9_]*' "$1/Makefile" | sort -u); do
			gcc -print-file-name="lib${l#-l}.so"
		done
	} | sort -u | sed 's/.*/openat(AT_FDCWD, "&", O_RDONLY) = 3/'
}

# A loopback TCP port nothing listens on, from $1 upwards.
free_port() {
	local p=${1:-55000}
	while (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; do
		p=$((p + 1))
	done
	echo "$p"
}
