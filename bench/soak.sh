#!/bin/bash
# bench/soak.sh: a long soak on the lab's real guests: tests/lab/soak.sh with N
# cuts (retention keep_last 3 applied after each, a revert + undo + branch
# delete halfway), its per-cut JSON kept in bench/results/, and one plot of the
# group window and the chain depth against the cut number (gnuplot, SVG).
# Prints the window of the first 100 cuts against the last 100. Root.
#
#   bench/soak.sh [--cuts N] [--check-every K]
# --check-every K: check every K-th cut's images (orphans, fsck); the default 10
# keeps a 1,000-cut soak near an hour on 2 cores.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
CUTS=1000 EVERY=10
while (($#)); do
        case "$1" in
        --cuts) CUTS=$2; shift ;;
        --check-every) EVERY=$2; shift ;;
        *) echo "usage: bench/soak.sh [--cuts N] [--check-every K]" >&2; exit 2 ;;
        esac
        shift
done
command -v gnuplot > /dev/null || apt-get install -y -q gnuplot-nox > /dev/null
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$BENCH/results"
out=$BENCH/results/soak-$CUTS-$stamp.jsonl
svg=$BENCH/results/soak-$CUTS-$stamp.svg
export LOCKSTEP_LAB_TEST_DIR=${LOCKSTEP_LAB_TEST_DIR:-/var/tmp/lockstep-lab-test}
export LOCKSTEP_BUILD_DIR=${LOCKSTEP_BUILD_DIR:-$REPO/build}

t0=$(date +%s)
bash "$REPO/tests/lab/soak.sh" --cuts "$CUTS" --check-every "$EVERY" --out "$out"
echo "bench: $CUTS cuts in $(($(date +%s) - t0)) s; per cut: $out"

tab=$(mktemp)
jq -r '[.cut, .window_ms, .max_frozen_ms, .depth, .files, .prune_ms] | @tsv' "$out" > "$tab"
gnuplot << EOF
set terminal svg size 1000,560 dynamic
set output '$svg'
set title 'lockstep soak: $CUTS cuts of one group on the lab (retention keep_last 3, a revert + undo halfway)'
set xlabel 'cut'
set ylabel 'group window (ms)'
set y2label 'backing chain depth (images)'
set ytics nomirror
set y2tics 1
set y2range [0:8]
set key top left
plot '$tab' using 1:2 with points pt 7 ps 0.3 title 'group window (ms)', \
     '' using 1:4 axes x1y2 with steps lw 2 title 'longest chain, before prune (images)'
EOF
rm -f "$tab"
median() { sort -n | awk '{a[NR] = $1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'; }
n=$((CUTS < 200 ? CUTS / 2 : 100))
first=$(jq -r --argjson n "$n" 'select(.cut <= $n) | .window_ms' "$out" | median)
last=$(jq -r --argjson n "$((CUTS - n))" 'select(.cut > $n) | .window_ms' "$out" | median)
echo "bench: group window median, first $n cuts: $first ms; last $n cuts: $last ms"
echo "bench: chain depth max $(jq -s 'map(.depth) | max' "$out"), image files max $(jq -s 'map(.files) | max' "$out"), prune median $(jq -r .prune_ms "$out" | median) ms"
echo "bench: plot: $svg"
