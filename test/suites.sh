#!/usr/bin/env bash
# Runs lockext's suites as an unprivileged user in the scratch directory
# test/run.sh prepared ($1), and prints the summary line.  Each pg_regress
# test, each isolation spec and each TAP assertion counts once.
set -uo pipefail

WORK=$1
cd "$WORK" || exit 1
export PATH="$PGBIN:$PATH"
PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress"
PG_ISOLATION_REGRESS="$PGXS_DIR/src/test/isolation/pg_isolation_regress"

passed=0
failed=0

# Settings of the throwaway instances.
cat >"$WORK/temp.conf" <<'EOF'
max_prepared_transactions = 2
deadlock_timeout = 100ms
EOF

count_regress() {
	local out=$1 p f
	p=$(grep -cE '\.\.\. ok' "$out")
	f=$(grep -cE '\.\.\. FAILED|\.\.\. failed' "$out")
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$p" -eq 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
}

regress_tests() {
	ls "$WORK"/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | grep -v '^lockext--'
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
		-fno-omit-frame-pointer -I"$WORK/src" -I"$WORK/test/unit" -o "$WORK/test_$unit" \
		"$WORK/test/unit/test_$unit.c" "$WORK/src/$unit.c"; then
		"$WORK/test_$unit" >"$WORK/unit_$unit.log" 2>&1
		count_tap "$WORK/unit_$unit.log"
	else
		failed=$((failed + 1))
	fi
done

echo "== static checks: gcc and clang -Wall -Wextra, cppcheck"
bash "$WORK/test/static_checks.sh" "$WORK/src" >"$WORK/static.log" 2>&1
grep -E '^ok' "$WORK/static.log"
count_tap "$WORK/static.log"

echo "== fuzzing the parsers (libFuzzer, ASan, UBSan)"
mkdir -p "$WORK/tmp"
TMPDIR="$WORK/tmp" bash "$WORK/test/fuzz.sh" "${LOCKEXT_FUZZ_SECONDS:-20}" >"$WORK/fuzz.log" 2>&1
grep -E '^ok' "$WORK/fuzz.log"
count_tap "$WORK/fuzz.log"

echo "== pg_regress"
"$PG_REGRESS" --temp-instance="$WORK/tmp_regress" --temp-config="$WORK/temp.conf" \
	--bindir="$PGBIN" --inputdir="$WORK" --outputdir="$WORK/regress" \
	--dbname=lockext_regress $(regress_tests) 2>&1 | tee "$WORK/regress.log"
count_regress "$WORK/regress.log"
[ -f "$WORK/regress/regression.diffs" ] && cat "$WORK/regress/regression.diffs"

echo "== isolation"
"$PG_ISOLATION_REGRESS" --temp-instance="$WORK/tmp_isolation" --temp-config="$WORK/temp.conf" \
	--bindir="$PGBIN" --inputdir="$WORK" --outputdir="$WORK/isolation" \
	--dbname=lockext_isolation \
	$(ls "$WORK"/specs/*.spec | xargs -n1 basename | sed 's/\.spec$//') 2>&1 |
	tee "$WORK/isolation.log"
count_regress "$WORK/isolation.log"
[ -f "$WORK/isolation/regression.diffs" ] && cat "$WORK/isolation/regression.diffs"

echo "== TAP"
# TMPDIR too: the TAP helpers' socket directories go with the scratch tree
export PG_REGRESS TESTDIR="$WORK/tap" PERL5LIB="$PGXS_DIR/src/test/perl:$WORK/t" TMPDIR="$WORK/tmp"
mkdir -p "$TESTDIR" "$TMPDIR"
(cd "$TESTDIR" && prove -v "$WORK"/t/*.pl) 2>&1 | tee "$WORK/tap.log"
prove_rc=${PIPESTATUS[0]}
p=$(grep -cE '^ok [0-9]' "$WORK/tap.log")
f=$(grep -cE '^not ok [0-9]' "$WORK/tap.log")
passed=$((passed + p))
failed=$((failed + f))
# a script that died without a failed assertion still fails the run
[ "$prove_rc" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
if [ "$prove_rc" -ne 0 ]; then
	for l in "$TESTDIR"/tmp_check/log/*.log; do
		[ -f "$l" ] && { echo "---- $l"; tail -n 40 "$l"; }
	done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
