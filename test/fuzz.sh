#!/bin/bash
# fuzz.sh - fuzz the Redis node URL parser (src/redis_url.c) with libFuzzer,
# ASan and UBSan, through test/unit/fuzz_redis_url.c (which also abort()s
# when one of its properties breaks: see its header comment).
#
#   bash test/fuzz.sh [SECONDS]     default 20; a longer run: bash test/fuzz.sh 600
#
# Builds into a scratch directory (mktemp -d, honours $TMPDIR, removed at
# exit) and fuzzes a scratch copy of the committed seed corpus
# test/unit/corpus_redis_url, which it reads but never writes.  Prints one TAP
# line and 1..1; exit 0 only when there was no crash, leak, sanitizer report
# or broken property.  On failure the input is hex-dumped (first 256 bytes).
# Needs clang and libclang-rt-14-dev (the fuzzer and sanitizer runtimes).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-20}
case $secs in
	'' | *[!0-9]* | 0) echo "usage: bash test/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac
name="fuzzing the URL parser for $secs s"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/lockext-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT

fail() {		# fail MESSAGE [LOGFILE]
	echo "not ok 1 - $name: $1"
	[ -n "${2:-}" ] && sed 's/^/# /' "$2" | tail -n 40
	echo "1..1"
	exit 1
}

if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-I"$root/src" -o "$scratch/fuzz_redis_url" \
	"$root/test/unit/fuzz_redis_url.c" "$root/src/redis_url.c" \
	>"$scratch/build.log" 2>&1; then
	fail "build failed" "$scratch/build.log"
fi

mkdir "$scratch/corpus" "$scratch/crash"
cp "$root"/test/unit/corpus_redis_url/* "$scratch/corpus/" || fail "no seed corpus"

# Tokens of the URL syntax help the mutator reach the deeper branches.
cat >"$scratch/dict" <<'EOF'
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

# New inputs go to the first directory only; the seed dir is read-only input.
"$scratch/fuzz_redis_url" -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 \
	-dict="$scratch/dict" -artifact_prefix="$scratch/crash/" -print_final_stats=1 \
	"$scratch/corpus" "$root/test/unit/corpus_redis_url" >"$scratch/fuzz.log" 2>&1
rc=$?

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/fuzz.log" | tail -n 1)
crash=$(find "$scratch/crash" -type f | head -n 1)
if [ "$rc" -eq 0 ] && [ -z "$crash" ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$scratch/fuzz.log"; then
	echo "ok 1 - $name: ${runs:-?} runs, no crash"
	echo "1..1"
	exit 0
fi

echo "not ok 1 - $name: ${runs:-?} runs, exit status $rc"
grep -m 5 -E 'ERROR:|runtime error:|property broken|SUMMARY:' "$scratch/fuzz.log" | sed 's/^/# /'
if [ -n "$crash" ]; then
	echo "# input $(basename "$crash") ($(wc -c <"$crash") bytes), first 256 bytes:"
	head -c 256 "$crash" | od -A x -t x1z -v | sed 's/^/#   /'
else
	sed 's/^/# /' "$scratch/fuzz.log" | tail -n 20
fi
echo "1..1"
exit 1
