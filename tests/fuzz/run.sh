#!/usr/bin/env bash
# Builds the libFuzzer harnesses (if needed) and runs them, two at a time, for N
# minutes each; prints runs, coverage, corpus size and crashes per harness.
# Usage: tests/fuzz/run.sh [--minutes N | --seconds S] [--jobs J] [--build DIR] [--out DIR] [--resume]
#                          [HARNESS...]
# The repo's corpus is copied into OUT/corpus/HARNESS and grows there (--resume:
# go on from what an earlier run left there); crashes go to OUT/crashes/HARNESS/,
# logs to OUT/HARNESS.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
seconds=300 jobs=2 resume=0
build=${LOCKSTEP_FUZZ_BUILD:-$top/build-fuzz}
out=${LOCKSTEP_FUZZ_OUT:-/tmp/lockstep-fuzz}
all=$(sed -n 's/^set(FUZZ_HARNESSES \(.*\))$/\1/p' "$here/CMakeLists.txt")
harnesses=()
while [ $# -gt 0 ]; do
        case $1 in
        --minutes) seconds=$(($2 * 60)); shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --resume) resume=1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) harnesses+=("$1"); shift ;;
        esac
done
[ ${#harnesses[@]} -gt 0 ] || read -r -a harnesses <<< "$(echo $all)"
# libFuzzer reads 0 as "no limit".
[ "$seconds" -gt 0 ] 2>/dev/null || { echo "run.sh: the time must be at least 1 second" >&2; exit 2; }
for h in "${harnesses[@]}"; do
        case " $(echo $all) " in *" $h "*) ;; *) echo "run.sh: no harness \"$h\" (have: $(echo $all))" >&2; exit 2 ;; esac
done

if [ ! -f "$build/CMakeCache.txt" ]; then
        CC=clang cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOCKSTEP_FUZZ=ON \
                -DLOCKSTEP_BENCH=OFF >/dev/null
fi
nice -n 10 cmake --build "$build" -j"$jobs" --target fuzz_all >/dev/null

mkdir -p "$out"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_one() {
        local h=$1
        [ "$resume" -eq 1 ] || rm -rf "$out/corpus/$h"
        rm -rf "$out/crashes/$h"
        mkdir -p "$out/corpus/$h" "$out/crashes/$h"
        cp "$here/corpus/$h"/* "$out/corpus/$h/"
        nice -n 10 "$build/tests/fuzz/fuzz-$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
                -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/crashes/$h/" "$out/corpus/$h" \
                > "$out/$h.log" 2>&1 || true
}
running=0
for h in "${harnesses[@]}"; do
        echo "fuzz: $h for $seconds s" >&2
        run_one "$h" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
                wait -n || true
                running=$((running - 1))
        fi
done
wait

printf '%-16s %12s %7s %7s %7s %7s\n' harness runs cov ft corpus crashes
bad=0
for h in "${harnesses[@]}"; do
        log=$out/$h.log
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
        cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<< "$last")
        ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<< "$last")
        crashes=$(find "$out/crashes/$h" -type f | wc -l)
        printf '%-16s %12s %7s %7s %7s %7s\n' "$h" "${runs:-?}" "${cov:-?}" "${ft:-?}" \
                "$(find "$out/corpus/$h" -type f | wc -l)" "$crashes"
        [ "$crashes" -eq 0 ] || bad=1
done
[ "$bad" -eq 0 ] || echo "crashes: see $out/crashes/ and $out/HARNESS.log" >&2
exit "$bad"
