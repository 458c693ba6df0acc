#!/bin/bash
# fuzz.sh - fuzz lockext's input parsers with libFuzzer, ASan and UBSan:
# the Redis node URL parser (src/redis_url.c, through
# test/unit/fuzz_redis_url.c) and the parser of owner values read back
# from Redis (src/owner_value.c, through test/unit/fuzz_owner_value.c).
# Both targets also abort() when one of their properties breaks (see their
# header comments).
#
#   bash test/fuzz.sh [SECONDS]     per target, default 20; a longer run:
#                                   bash test/fuzz.sh 600 (make fuzz)
#
# Builds into a scratch directory (mktemp -d, honours $TMPDIR, removed at
# exit) and fuzzes scratch copies of the committed seed corpora
# test/unit/corpus_<target>, which it reads but never writes.  Prints one
# TAP line per target and the plan; exit 0 only when no target crashed,
# leaked, tripped a sanitizer or broke a property.  On failure the input is
# hex-dumped (first 256 bytes).
# Needs clang and libclang-rt-14-dev (the fuzzer and sanitizer runtimes).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-20}
case $secs in
	'' | *[!0-9]* | 0) echo "usage: bash test/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac

scratch=$(mktemp -d "${TMPDIR:-/tmp}/lockext-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT

# Tokens of each input syntax help the mutator reach the deeper branches.
cat >"$scratch/redis_url.dict" <<'EOF'
"redis://"
"rediss://"
"unix://"
"?db="
"&db="
"&user="
"&password="
"Sekr1t"
":Sekr1t@"
"%2C"
"%40"
"%3A"
"%25"
"%00"
"[::1]"
":6379"
":65535"
"/1023"
","
EOF
cat >"$scratch/owner_value.dict" <<'EOF'
"|"
"-"
"0"
"2147483647"
"2147483648"
"9223372036854775807"
"-9223372036854775808"
"\x00"
EOF

failed=0
n=0

# fuzz TARGET TITLE: build test/unit/fuzz_TARGET.c with src/TARGET.c, run it
fuzz() {
	local target=$1 name="fuzzing the $2 for $secs s" dir="$scratch/$1"
	local seeds="$root/test/unit/corpus_$1" rc runs crash

	n=$((n + 1))
	mkdir "$dir" "$dir/corpus" "$dir/crash"
	if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-I"$root/src" -o "$dir/fuzz" \
		"$root/test/unit/fuzz_$target.c" "$root/src/$target.c" >"$dir/build.log" 2>&1; then
		echo "not ok $n - $name: build failed"
		sed 's/^/# /' "$dir/build.log" | tail -n 40
		failed=1
		return
	fi
	if ! cp "$seeds"/* "$dir/corpus/"; then
		echo "not ok $n - $name: no seed corpus in $seeds"
		failed=1
		return
	fi

	# New inputs go to the first directory only; the seeds are read-only input.
	"$dir/fuzz" -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 \
		-dict="$scratch/$target.dict" -artifact_prefix="$dir/crash/" -print_final_stats=1 \
		"$dir/corpus" "$seeds" >"$dir/fuzz.log" 2>&1
	rc=$?

	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log" | tail -n 1)
	crash=$(find "$dir/crash" -type f | head -n 1)
	if [ "$rc" -eq 0 ] && [ -z "$crash" ] &&
		! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$dir/fuzz.log"; then
		echo "ok $n - $name: ${runs:-?} runs, no crash"
		return
	fi

	failed=1
	echo "not ok $n - $name: ${runs:-?} runs, exit status $rc"
	grep -m 5 -E 'ERROR:|runtime error:|property broken|SUMMARY:' "$dir/fuzz.log" | sed 's/^/# /'
	if [ -n "$crash" ]; then
		echo "# input $(basename "$crash") ($(wc -c <"$crash") bytes), first 256 bytes:"
		head -c 256 "$crash" | od -A x -t x1z -v | sed 's/^/#   /'
	else
		sed 's/^/# /' "$dir/fuzz.log" | tail -n 20
	fi
}

fuzz redis_url "URL parser"
fuzz owner_value "owner value parser"
echo "1..$n"
exit "$failed"
