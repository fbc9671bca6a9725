#!/bin/bash
# bench/ha.sh: what high availability costs on the lab's real guests. Two labs in
# turn on the same machine: one lockstepd on SQLite, then three on a 3-member etcd
# cluster (lab up --coordinators 3). For each, N cuts of the lab's group: end to
# end (the CLI's wall time) and lockstepd's part of it (end to end less the group
# window, which is the guests' and agents' time); etcd's cost per cut is the
# difference of the medians of that part. Then F failovers: the leader is killed
# -9 and a cut is asked of the others every 100 ms until one commits: leader death
# to a new leader, to the first accepted cut (its BEGIN) and to that cut's end.
# Root; prints a table, and JSON with --out.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
LABCTL=$REPO/deploy/lab/lab
export LOCKSTEP_LAB_DIR=${LOCKSTEP_LAB_DIR:-/var/tmp/lockstep-lab-bench}
D=$LOCKSTEP_LAB_DIR
BUILD=${LOCKSTEP_BUILD_DIR:-$REPO/build}
export LOCKSTEP_BUILD_DIR=$BUILD
CUTS=10 FAILOVERS=5 OUT='' SETTLE=10

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
        printf 'bench: error: %s\n' "$1" >&2
        exit "${2:-1}"
}
usage() {
        cat << EOF
usage: bench/ha.sh [--cuts N] [--failovers F] [--out FILE]     (as root)

  --cuts N        cuts timed on each catalog (default $CUTS)
  --failovers F   leader kills timed (default $FAILOVERS)
  --out FILE      the results as one JSON object

Environment: LOCKSTEP_BUILD_DIR (default <repo>/build), LOCKSTEP_LAB_DIR (default
/var/tmp/lockstep-lab-bench). Needs etcd (Debian: etcd-server) and no other lab up.
EOF
}
while (($#)); do
        case "$1" in
        --cuts) CUTS=${2:?}; shift 2 ;;
        --failovers) FAILOVERS=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" 2 ;;
        esac
done
[[ $CUTS =~ ^[1-9][0-9]*$ && $FAILOVERS =~ ^[0-9]+$ ]] || die "--cuts needs a positive number, --failovers a number" 2
[ "$(id -u)" = 0 ] || die "needs root (the lab)" 2
for b in coordinator/lockstep coordinator/lockstepd agent/lockstep-agent; do
        [ -x "$BUILD/$b" ] || die "$BUILD/$b is not built (deploy/build.sh $BUILD)" 2
done
! ip link show lsbr0 > /dev/null 2>&1 || die "another lab is up (bridge lsbr0): bring it down first" 2
W=$(mktemp -d /tmp/bench-ha.XXXXXX)
trap '"$LABCTL" down > /dev/null 2>&1 || true; rm -rf "$W"' EXIT
LS=$BUILD/coordinator/lockstep
now_ms() { date +%s%3N; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "null"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# N cuts through config $1; appends "e2e window" lines to $2.
time_cuts() { # config file
        local i t0 t1 out
        for ((i = 0; i < CUTS; i++)); do
                t0=$(now_ms)
                out=$("$LS" -c "$1" snapshot create shop --json) || die "a cut through $1 failed: $out"
                t1=$(now_ms)
                [ "$(jq -r .state <<< "$out")" = committed ] || die "a cut through $1 did not commit"
                echo "$((t1 - t0)) $(jq -r '.group_window_ms | floor' <<< "$out")" >> "$2"
                sleep 1
        done
}
summary() { # file -> e2e median, window median, lockstepd part median
        printf '%s %s %s\n' "$(awk '{ print $1 }' "$1" | median)" "$(awk '{ print $2 }' "$1" | median)" \
                "$(awk '{ print $1 - $2 }' "$1" | median)"
}

say "1/2: one lockstepd on SQLite"
"$LABCTL" up > /dev/null 2> "$W/up1.log" || { cat "$W/up1.log"; die "lab up failed"; }
sleep "$SETTLE"
time_cuts "$D/coordinator.yaml" "$W/sqlite"
"$LABCTL" down > /dev/null 2>&1

say "2/2: three lockstepd on a 3-member etcd cluster"
"$LABCTL" up --coordinators 3 > /dev/null 2> "$W/up2.log" || { cat "$W/up2.log"; die "lab up --coordinators 3 failed"; }
role() { # cluster status exits 1 when etcd cannot be reached, and still says the role
        local j
        j=$("$LS" -c "$D/coords/$1/coordinator.yaml" cluster status --json 2> /dev/null) || true
        jq -r '.role // "down"' <<< "${j:-{\}}" 2> /dev/null || echo down
}
leader() {
        local c
        for c in c1 c2 c3; do [ "$(role "$c")" = leader ] && { echo "$c"; return 0; }; done
        return 1
}
for _ in $(seq 1 300); do L=$(leader) && break; sleep 0.1; done
[ -n "${L:-}" ] || die "no lockstepd leads 30 s after lab up"
sleep "$SETTLE"
time_cuts "$D/coords/$L/coordinator.yaml" "$W/etcd"

# Failovers: kill -9, then watch the others' roles every 100 ms and ask the
# first that leads for a cut. (Asking a follower meanwhile would wait out its
# forward to the dead leader, 5 s, and time that instead.)
for ((f = 0; f < FAILOVERS; f++)); do
        L=$(leader) || die "no leader before failover $((f + 1))"
        "$LABCTL" coord-kill "$L"
        t0=$(now_ms)
        t_lead="" t_begin="" t_end="" N=""
        while [ -z "$t_end" ]; do
                (($(now_ms) - t0 < 60000)) || die "failover $((f + 1)): no cut committed 60 s after $L died"
                if [ -z "$N" ]; then
                        for c in c1 c2 c3; do
                                [ "$c" != "$L" ] && [ "$(role "$c")" = leader ] && { N=$c; t_lead=$(now_ms); break; }
                        done
                        [ -n "$N" ] || { sleep 0.1; continue; }
                fi
                t_begin=$(now_ms)
                if out=$("$LS" -c "$D/coords/$N/coordinator.yaml" snapshot create shop --json 2> /dev/null) &&
                        [ "$(jq -r .state <<< "$out")" = committed ]; then
                        t_end=$(now_ms)
                else
                        sleep 0.1
                fi
        done
        echo "$((t_lead - t0)) $((t_begin - t0)) $((t_end - t0))" >> "$W/failover"
        say "failover $((f + 1)): $L killed; a new leader after $((t_lead - t0)) ms, a cut accepted after $((t_begin - t0)) ms, committed after $((t_end - t0)) ms"
        "$LABCTL" coord-start "$L" 2>> "$W/up2.log"
        sleep 2
done

read -r s_e2e s_win s_own < <(summary "$W/sqlite")
read -r e_e2e e_win e_own < <(summary "$W/etcd")
cost=$(awk -v a="$e_own" -v b="$s_own" 'BEGIN { print a - b }')
printf '\n%-34s %10s %10s\n' "median over $CUTS cuts, ms" SQLite etcd
printf '%-34s %10s %10s\n' "end to end (CLI)" "$s_e2e" "$e_e2e"
printf '%-34s %10s %10s\n' "group window (guests, agents)" "$s_win" "$e_win"
printf '%-34s %10s %10s\n' "lockstepd's part (e2e - window)" "$s_own" "$e_own"
printf '%-34s %21s\n' "etcd's cost per cut" "$cost"
if ((FAILOVERS)); then
        printf '\n%-34s %10s %10s\n' "failover ($FAILOVERS leader kills), ms" median max
        for k in 1 2 3; do
                name=$(case $k in 1) echo "death to a new leader" ;; 2) echo "death to an accepted cut" ;; 3) echo "death to that cut committed" ;; esac)
                printf '%-34s %10s %10s\n' "$name" "$(awk -v k=$k '{ print $k }' "$W/failover" | median)" \
                        "$(awk -v k=$k '{ print $k }' "$W/failover" | sort -n | tail -1)"
        done
fi
if [ -n "$OUT" ]; then
        jq -n --argjson cuts "$CUTS" --argjson s_e2e "$s_e2e" --argjson s_own "$s_own" --argjson e_e2e "$e_e2e" \
                --argjson e_own "$e_own" --argjson cost "$cost" \
                --argjson failovers "$(awk '{ printf "%s[%s,%s,%s]", (NR > 1 ? "," : "["), $1, $2, $3 } END { print (NR ? "]" : "[]") }' "$W/failover" 2> /dev/null || echo '[]')" \
                --arg rev "$(git -C "$REPO" rev-parse --short HEAD 2> /dev/null || echo unknown)" \
                '{rev: $rev, cuts: $cuts, sqlite: {e2e_ms: $s_e2e, lockstepd_ms: $s_own},
                  etcd: {e2e_ms: $e_e2e, lockstepd_ms: $e_own}, etcd_cost_ms: $cost,
                  failovers_ms: [$failovers[] | {leader: .[0], accepted: .[1], committed: .[2]}]}' > "$OUT"
        say "results: $OUT"
fi
