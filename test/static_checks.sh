#!/bin/bash
# static_checks.sh - compiler warnings (gcc, clang) and cppcheck over lockext's
# C sources (src/*.c) and the plain-C unit test and fuzz target
# (test/unit/*.c), and the release path's call graph
# (test/release_path_check.pl).  No build products, no network, no root needed.
#
#   bash test/static_checks.sh [SRCDIR]     SRCDIR defaults to the repo's src/
#   PG_CONFIG=/x/bin/pg_config bash ...      headers of another PostgreSQL 15
#
# TAP output (ok N / not ok N, then 1..N, diagnostics as # lines); exit 0
# only when every check passes.  Needs gcc, clang, cppcheck,
# postgresql-server-dev-15 (headers, pg_config) and libhiredis-dev.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
srcdir=${1:-$root/src}
unitdir=$root/test/unit
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

n=0
failed=0

# report NAME OUTPUT STATUS: one TAP line; the output as diagnostics on failure.
report() {
	n=$((n + 1))
	if [ "$3" -eq 0 ]; then
		echo "ok $n - $1"
	else
		failed=$((failed + 1))
		echo "not ok $n - $1"
		[ -n "$2" ] && printf '%s\n' "${2%$'\n'}" | sed 's/^/#   /' | head -n 60
	fi
}

# have CMD: the tool exists, else a failed check saying so.
have() {
	command -v "$1" >/dev/null 2>&1 && return 0
	report "$2" "$1 is not installed" 1
	return 1
}

shopt -s nullglob
srcfiles=("$srcdir"/*.c)
unitfiles=("$unitdir"/*.c)
if [ ${#srcfiles[@]} -eq 0 ]; then
	report "C sources found in $srcdir" "no *.c files there" 1
	echo "1..$n"
	exit 1
fi

if [ -x "$pg_config" ]; then
	pginc=$("$pg_config" --includedir-server)
else
	pginc=/nonexistent
	report "pg_config found" "$pg_config is missing (postgresql-server-dev-15)" 1
fi

# No exception for our code.  PostgreSQL's own headers are not clean at
# -Wextra (unused parameters in ilist.h, bufpage.h, fmgr.h; clang does not
# know the gnu_printf attribute of pg_config.h), so they are included as
# system headers, which both compilers leave out of their warnings.
# -D_GNU_SOURCE is what pg_config --cppflags gives the real PGXS build.
warn=(-Wall -Wextra -Werror)
pgflags=(-D_GNU_SOURCE -isystem "$pginc" "-I$srcdir")

# compile_all CC EXTRA...: -fsyntax-only over src/*.c; prints diagnostics.
compile_all() {
	local cc=$1 f status=0
	shift
	for f in "${srcfiles[@]}"; do
		"$cc" -fsyntax-only "${warn[@]}" "$@" "${pgflags[@]}" "$f" 2>&1 || status=1
	done
	return $status
}

for cc in gcc clang; do
	if have "$cc" "$cc: src/*.c without warnings"; then
		out=$(compile_all "$cc")
		report "$cc: src/*.c without warnings (-Wall -Wextra -Werror)" "$out" $?
	fi
done

# The release path never fails (design: "The release path"): what the
# commit, abort, resource-owner and exit callbacks reach (src/release.c and
# the backends' release members) calls nothing outside an allowlist, by
# gcc's own call graph.
if have gcc "the release path calls only what cannot fail"; then
	out=$(perl "$root/test/release_path_check.pl" "$srcdir" "$pginc" 2>&1)
	status=$?
	report "$(printf '%s\n' "$out" | sed -n 's/^\(not \)\{0,1\}ok 1 - //p' | head -n 1)" \
		"$(printf '%s\n' "$out" | grep '^#' | sed 's/^#   //')" $status
fi

# Layering (design: "Layering"): the Redis layers, which the keeper uses
# without the SQL layer, include nothing of the layers above them: no
# lockext.h (the registry's backend interface), registry, release or SQL
# headers, even indirectly (gcc -MM lists every header a file reads).
if have gcc "the Redis layers include nothing of the layers above"; then
	out=""
	status=0
	for f in "$srcdir"/redis_*.c; do
		case "$(basename "$f")" in redis_backend*.c) continue ;; esac
		deps=$(gcc -MM "${pgflags[@]}" "$f" 2>&1) || { out+="$deps"$'\n'; status=1; continue; }
		bad=$(printf '%s\n' "$deps" | tr ' \\' '\n\n' |
			grep -E '/(lockext|registry|registry_int|local_lock|views|redis_backend)\.h$' | sed "s|^|$(basename "$f"): |")
		[ -n "$bad" ] && { out+="$bad"$'\n'; status=1; }
	done
	report "the Redis layers (src/redis_*.c but the redis backend) include nothing of the layers above" "$out" $status
fi

# The unit test and the fuzz target are plain C99 with no PG headers: all
# warnings, no exception.
for cc in gcc clang; do
	if have "$cc" "$cc: test/unit/*.c without warnings"; then
		out=""
		status=0
		for f in "${unitfiles[@]}"; do
			o=$("$cc" -std=c99 -fsyntax-only -Wall -Wextra -Werror "-I$srcdir" "$f" 2>&1) || status=1
			[ -n "$o" ] && out+="$o"$'\n'
		done
		report "$cc: test/unit/*.c without warnings (-std=c99 -Wall -Wextra -Werror)" "$out" $status
	fi
done

# cppcheck without PostgreSQL's headers (fast, and no findings inside them).
# missingIncludeSystem: <hiredis/...>, <stdio.h> etc. are not given to it.
# pg_attribute_noreturn() is defined so that it knows
# lockext_report_timeout() does not return (else a false
# nullPointerRedundantCheck after "if (entry == NULL) report...").
# --library=posix: the socket and file calls of redis_conn.c.
cppcheck_args=(--error-exitcode=1 --enable=warning,style,performance,portability
	--inline-suppr --std=c99 --quiet --library=posix
	--suppress=missingIncludeSystem
	'-Dpg_attribute_noreturn()=__attribute__((noreturn))'
	"-I$srcdir")
if have cppcheck "cppcheck: src/*.c"; then
	out=$(cppcheck "${cppcheck_args[@]}" "${srcfiles[@]}" 2>&1)
	status=$?
	[ -n "$out" ] && status=1	# with --quiet, any output is a finding
	report "cppcheck: src/*.c without findings" "$out" $status

	out=$(cppcheck "${cppcheck_args[@]}" "${unitfiles[@]}" 2>&1)
	status=$?
	[ -n "$out" ] && status=1
	report "cppcheck: test/unit/*.c without findings" "$out" $status
fi

echo "1..$n"
[ "$failed" -eq 0 ]
