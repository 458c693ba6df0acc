#!/usr/bin/env bash
# Runs lockext's suites as an unprivileged user on the unpacked release
# archive $1 that test/run.sh built and installed, with scratch space in
# $2, and prints the summary line.  Each pg_regress test, each isolation
# spec and each TAP assertion (unit, static and release checks, fuzzing,
# the TAP suite, the torture test's invariants) counts once.  The environment: ZIP (the archive),
# PG_PREFIX (see release_checks.pl), and what test/lib.sh reads.
set -uo pipefail

SRC=$1
WORK=$2
cd "$SRC" || exit 1
. "$SRC/test/lib.sh"
export PATH="$PGBIN:$PATH"

passed=0
failed=0

count_regress() {
	local out=$1 p f
	p=$(grep -cE '\.\.\. ok' "$out")
	f=$(grep -cE '\.\.\. FAILED|\.\.\. failed' "$out")
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$p" -eq 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
}

# Count a TAP log's lines; one without a plan line also fails.
count_tap() {
	local out=$1
	grep -E '^(not ok|#)' "$out"
	passed=$((passed + $(grep -cE '^ok [0-9]' "$out")))
	failed=$((failed + $(grep -cE '^not ok [0-9]' "$out")))
	grep -q '^1\.\.' "$out" || failed=$((failed + 1))
	tail -n 1 "$out"
}

# The plain-C parsers: test/unit/test_X.c with src/X.c.
for unit in redis_url owner_value; do
	echo "== unit: $unit (ASan, UBSan)"
	if gcc -std=c99 -Wall -Wextra -Werror -O1 -g -fsanitize=address,undefined \
		-fno-omit-frame-pointer -I"$SRC/src" -I"$SRC/test/unit" -o "$WORK/test_$unit" \
		"$SRC/test/unit/test_$unit.c" "$SRC/src/$unit.c"; then
		"$WORK/test_$unit" >"$WORK/unit_$unit.log" 2>&1
		count_tap "$WORK/unit_$unit.log"
	else
		failed=$((failed + 1))
	fi
done

echo "== static checks: gcc and clang -Wall -Wextra -Werror, cppcheck"
PG_CONFIG="$PG_CONFIG" bash "$SRC/test/static_checks.sh" "$SRC/src" >"$WORK/static.log" 2>&1
grep -E '^ok' "$WORK/static.log"
count_tap "$WORK/static.log"

echo "== fuzzing the parsers (libFuzzer, ASan, UBSan)"
mkdir -p "$WORK/tmp"
TMPDIR="$WORK/tmp" bash "$SRC/test/fuzz.sh" "${LOCKEXT_FUZZ_SECONDS:-20}" >"$WORK/fuzz.log" 2>&1
grep -E '^ok' "$WORK/fuzz.log"
count_tap "$WORK/fuzz.log"

echo "== release: META.json, one version, the packages the build used, make dist"
perl "$SRC/test/release_checks.pl" --packages "$BUILD_PACKAGES" --pg-prefix "$PG_PREFIX" \
	--trace "$WORK/trace" --zip "$ZIP" --head-files "$WORK/head_files" "$SRC" \
	>"$WORK/release.log" 2>&1
grep -E '^ok' "$WORK/release.log"
count_tap "$WORK/release.log"

# make installcheck against a server started as the README's "Installing"
# says (its two settings; a socket of its own instead of a TCP port).
PGDATA_DIR="$WORK/pg_installcheck"
stop_server() {
	[ -f "$PGDATA_DIR/postmaster.pid" ] && pg_ctl -D "$PGDATA_DIR" -m fast -w stop >/dev/null
}
trap stop_server EXIT
echo "== a server for make installcheck"
port=$(free_port 55432)
if initdb -D "$PGDATA_DIR" -A trust -U postgres >"$WORK/initdb.log" 2>&1 &&
	cat >>"$PGDATA_DIR/postgresql.conf" <<-EOF &&
		shared_preload_libraries = 'lockext'
		max_prepared_transactions = 2
		listen_addresses = ''
		unix_socket_directories = '$WORK'
		port = $port
	EOF
	pg_ctl -D "$PGDATA_DIR" -l "$WORK/installcheck_server.log" -w start >/dev/null; then
	export PGHOST=$WORK PGPORT=$port PGUSER=postgres

	echo "== pg_regress (make installcheck)"
	make -C "$SRC" -s installcheck PG_CONFIG="$PG_CONFIG" ISOLATION= TAP_TESTS= 2>&1 |
		tee "$WORK/regress.log"
	count_regress "$WORK/regress.log"
	[ -f "$SRC/regression.diffs" ] && cat "$SRC/regression.diffs"
	# this server allows prepared transactions: the test must not skip
	if grep -q '^skipped:' "$SRC/results/lockext_prepared.out" 2>/dev/null; then
		echo "lockext_prepared skipped on a server with max_prepared_transactions = 2"
		failed=$((failed + 1))
	fi

	echo "== isolation (make installcheck)"
	make -C "$SRC" -s installcheck PG_CONFIG="$PG_CONFIG" REGRESS= TAP_TESTS= 2>&1 |
		tee "$WORK/isolation.log"
	count_regress "$WORK/isolation.log"
	[ -f "$SRC/test/regression.diffs" ] && cat "$SRC/test/regression.diffs"

	unset PGHOST PGPORT PGUSER
else
	echo "the server did not start:"
	cat "$WORK/initdb.log" "$WORK/installcheck_server.log" 2>/dev/null | tail -n 20
	failed=$((failed + 1))
fi
stop_server

echo "== TAP (make prove_installcheck)"
# TMPDIR: the TAP helpers' socket directories go with the scratch tree
# (-v, for one line per assertion to count; printed: each script, the
# failed assertions with what follows them, prove's summary)
TMPDIR="$WORK/tmp" make -C "$SRC" -s prove_installcheck PG_CONFIG="$PG_CONFIG" \
	PROVE_FLAGS=-v >"$WORK/tap.log" 2>&1
prove_rc=$?
grep -E -A 12 '^not ok [0-9]' "$WORK/tap.log"
grep -E '^test/t/[^ ]+\.pl \.|^(Files=|Result:|All tests|Test Summary)|^[a-z/0-9_]+\.pl +\(Wstat' "$WORK/tap.log"
p=$(grep -cE '^ok [0-9]' "$WORK/tap.log")
f=$(grep -cE '^not ok [0-9]' "$WORK/tap.log")
passed=$((passed + p))
failed=$((failed + f))
# a script that died without a failed assertion still fails the run
[ "$prove_rc" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
if [ "$prove_rc" -ne 0 ]; then
	echo "---- the end of prove's output"
	tail -n 40 "$WORK/tap.log"
	for l in "$SRC"/tmp_check/log/*.log; do
		[ -f "$l" ] && { echo "---- $l"; tail -n 40 "$l"; }
	done
fi

# The torture test (make torture): each of its invariants is an assertion.
# Bounded: the script stops itself past its time and 7 minutes; timeout
# is the backstop.
tsecs=${LOCKEXT_TORTURE_SECONDS:-60}
echo "== torture (make torture, $tsecs s of random operations and faults)"
TMPDIR="$WORK/tmp" timeout -k 30 $((tsecs + 600)) make -C "$SRC" -s torture \
	PG_CONFIG="$PG_CONFIG" SECONDS="$tsecs" PROVE_FLAGS=-v >"$WORK/torture.log" 2>&1
torture_rc=$?
grep -E '^# (lockext torture:|violation|[0-9]+ s of operations)' "$WORK/torture.log"
grep -E -A 12 '^not ok [0-9]' "$WORK/torture.log"
grep -E '^(ok|not ok) [0-9]' "$WORK/torture.log"
p=$(grep -cE '^ok [0-9]' "$WORK/torture.log")
f=$(grep -cE '^not ok [0-9]' "$WORK/torture.log")
passed=$((passed + p))
failed=$((failed + f))
[ "$torture_rc" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
if [ "$torture_rc" -ne 0 ]; then
	echo "---- the end of the torture test's output (rc $torture_rc)"
	tail -n 30 "$WORK/torture.log"
	echo "---- the end of its operations log"
	tail -n 30 "$SRC/tmp_check/log/torture_ops.log" 2>/dev/null
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
