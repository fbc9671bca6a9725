#!/bin/bash
# lab test "checker": lab-check on hand-made workload logs: a consistent cut, an
# orphan message, a broken checksum, a hole in seq and a torn tail must each get
# the verdict and exit code they deserve. Needs no root and no VM.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CHECK=${1:-}
W=$(mktemp -d /tmp/lab-checker.XXXXXX)
trap 'rm -rf "$W"' EXIT
if [ -z "$CHECK" ]; then
        command -v gcc > /dev/null || t_skip "no lab-check given and no gcc to build one"
        gcc -std=gnu17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$W/lab-check" \
                "$T_REPO/deploy/lab/src/check.c"
        CHECK=$W/lab-check
fi
command -v jq > /dev/null || t_skip "jq is missing (install with: deploy/lab/lab deps)"

rec() { "$CHECK" --record "$@"; }

# web1 sends web1:1 and web1:2; app1 receives web1:1 and sends app1:1; db1
# receives app1:1. Every receive has its send: consistent.
{ rec 1 tick -; rec 2 sent web1:1; rec 3 sent web1:2; } > "$W/web1.log"
{ rec 1 recv web1:1; rec 2 sent app1:1; rec 3 tick -; } > "$W/app1.log"
{ rec 1 tick -; rec 2 recv app1:1; } > "$W/db1.log"
cp "$W/app1.log" "$W/app1.orig"

expect() { # exit-code description args...
        local want=$1 what=$2 rc=0
        shift 2
        "$CHECK" --logs "$@" > "$W/out" 2>&1 || rc=$?
        [ "$rc" = "$want" ] || {
                cat "$W/out"
                t_fail "$what: exit $rc, want $want"
        }
}
SET3=("web1=$W/web1.log" "app1=$W/app1.log" "db1=$W/db1.log")

expect 0 "consistent logs" "${SET3[@]}"
grep -qx 'orphans: 0' "$W/out" || t_fail "consistent logs: no 'orphans: 0' line"
t_ok "consistent cut: exit 0, orphans: 0"

# app1 also received web1:3, which is not in web1's log: one orphan.
rec 4 recv web1:3 >> "$W/app1.log"
expect 4 "orphan" "${SET3[@]}"
grep -qx 'orphans: 1' "$W/out" || t_fail "orphan: want 'orphans: 1'"
grep -q 'web1:3' "$W/out" || t_fail "orphan: the orphan id web1:3 is not named"
"$CHECK" --logs --json "${SET3[@]}" > "$W/json" || true
[ "$(jq -r '.orphans, .consistent, .intact' "$W/json" | tr '\n' ' ')" = "1 false true " ] ||
        t_fail "orphan: JSON says $(cat "$W/json")"
[ "$(jq -r '.members[] | select(.vm == "app1") | .orphans' "$W/json")" = 1 ] ||
        t_fail "orphan: not charged to app1 in JSON"
t_ok "orphan message: exit 4, orphans: 1, named web1:3, JSON agrees"

# A receive from a VM outside the cut is not an orphan, but is reported.
cp "$W/app1.orig" "$W/app1.log"
rec 4 recv cache1:7 >> "$W/app1.log"
expect 0 "recv from outside the cut" "${SET3[@]}"
grep -q '1 recv from VMs not in the cut' "$W/out" || t_fail "outside recv not reported"
t_ok "receive from a VM outside the cut: reported, not an orphan"

# One flipped character: the checksum must catch it.
cp "$W/app1.orig" "$W/app1.log"
sed -i '2s/app1:1/app1:7/' "$W/app1.log"
expect 1 "bad checksum" "${SET3[@]}"
grep -q 'checksum mismatch' "$W/out" || t_fail "bad checksum: not named"
t_ok "flipped character: exit 1, checksum mismatch"

# A missing record: a hole in seq.
{ rec 1 recv web1:1; rec 3 tick -; } > "$W/app1.log"
expect 1 "seq hole" "${SET3[@]}"
grep -q 'seq 3 where 2 was due' "$W/out" || t_fail "seq hole: not named"
t_ok "hole in seq: exit 1, named"

# A record cut in the middle (no newline): torn tail.
cp "$W/app1.orig" "$W/app1.log"
printf '4 tick - 12' >> "$W/app1.log"
expect 1 "torn tail" "${SET3[@]}"
grep -q 'torn record' "$W/out" || t_fail "torn tail: not named"
t_ok "torn last record: exit 1, named"

# Records carry the host time they were made at (guest's estimate +- error):
# --not-after T fails a log with a record surely later than T, passes one whose
# only later record is within its error, and fails a log whose last record has
# no time (nothing can be proved).
T=1764115200000000
{ rec 1 tick - "$((T - 300000))~500"; rec 2 sent web1:1 "$((T - 200000))~500"; } > "$W/web1.log"
{ rec 1 recv web1:1 "$((T - 100000))~500"; rec 2 tick - "$((T + 400))~500"; } > "$W/app1.log"
{ rec 1 tick - "$((T - 50000))~800"; } > "$W/db1.log"
expect 0 "records within the bound" --not-after "$T" "${SET3[@]}"
grep -qx 'late: 0' "$W/out" || t_fail "within the bound: want 'late: 0'"
rec 3 tick - "$((T + 20000))~500" >> "$W/app1.log"
expect 8 "a record after the bound" --not-after "$T" "${SET3[@]}"
grep -q 'seq 3 (tick) was made 20.000 ms' "$W/out" || t_fail "late record: not named"
"$CHECK" --logs --json --not-after "$T" "${SET3[@]}" > "$W/json" || true
[ "$(jq -r '.late_records, .in_time, .consistent, .intact, (.members[] | select(.vm == "app1") | .late)' "$W/json" | tr '\n' ' ')" = "1 false false true 1 " ] ||
        t_fail "late record: JSON says $(cat "$W/json")"
[ "$(jq -r '.members[] | select(.vm == "app1") | "\(.log.last_at_us) \(.log.last_err_us)"' "$W/json")" = "$((T + 20000)) 500" ] ||
        t_fail "late record: JSON log.last_at_us/last_err_us wrong: $(cat "$W/json")"
expect 0 "the same logs without a bound" "${SET3[@]}"
rec 2 tick - >> "$W/db1.log"
expect 8 "untimed last record" --not-after "$((T + 30000))" "${SET3[@]}"
grep -q 'db1: the last record carries no host time' "$W/out" || t_fail "untimed record: not named"
t_ok "--not-after: a record 20 ms late exits 8 and is named, 0.4 ms within its error passes, an untimed tail cannot pass"

# Usage errors are not verdicts.
expect 2 "bad argument" "not-a-pair"
expect 2 "bad bound" --not-after 12x "${SET3[@]}"
t_ok "bad arguments: exit 2"
