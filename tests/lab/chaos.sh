#!/bin/bash
# lab test "chaos": the fault scenarios of faults_lib.sh, chosen at random (and
# the link and stop-agent ones on a random host) in a loop of cuts, deletes and
# reverts with their undo, on the lab's group with retention keep_last 3
# (lockstep prune after each round). After each round the same four checks as
# faults.sh: no guest frozen longer than lease + 2 s, no committed cut with a
# member missing or a damaged image, nothing leaked, the next cut commits.
#
#   chaos.sh [--seed S] [--rounds N] [--table FILE]
#
# The seed picks everything (bash's RANDOM), so a failing run is replayed with
# its seed. CI runs a fixed seed for a few rounds; long runs are bench work.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SEED=1 ROUNDS=3 TABLE="" NO_LEASE=0
while (($#)); do
        case "$1" in
        --seed) SEED=${2:?}; shift ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --table) TABLE=${2:?--table needs a file}; shift ;;
        *) echo "usage: chaos.sh [--seed S] [--rounds N] [--table FILE]" >&2; exit 2 ;;
        esac
        shift
done
[[ $SEED =~ ^[0-9]+$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "chaos.sh: --seed and --rounds need numbers" >&2; exit 2; }
. "$(dirname "$0")/faults_lib.sh"
RANDOM=$SEED

f_setup
echo "    retention: {keep_last: 3}" >> "$D/coordinator.yaml"
ls_cli reload > /dev/null || t_fail "lockstepd refused the retention setting"
f_table_head

committed_cuts() { ls_cli snapshot list shop --json | jq -r '[.[] | select(.kind == "snapshot" and .state == "committed")] | reverse | .[].id'; }

# Between faults: a delete of the oldest kept cut, or a revert to the newest
# kept cut and its undo (every guest restarts twice), or nothing.
between() {
        local pick=$((RANDOM % 10)) id rv un
        mapfile -t cuts < <(committed_cuts)
        if ((pick < 3 && ${#cuts[@]} >= 2)); then
                id=${cuts[0]}
                ls_cli snapshot delete "$id" > "$W/op.out" 2>&1 || { cat "$W/op.out"; t_fail "round $r: delete of $id failed"; }
                t_info "round $r: deleted $id"
        elif ((pick == 3 && ${#cuts[@]} >= 1)); then
                id=${cuts[${#cuts[@]} - 1]}
                rv=$(ls_cli snapshot revert "$id" --yes --json) || t_fail "round $r: revert to $id: $(jq -r .reason <<< "$rv")"
                un=$(ls_cli snapshot revert --undo "$(jq -r .id <<< "$rv")" --yes --json) ||
                        t_fail "round $r: undo of the revert to $id: $(jq -r .reason <<< "$un")"
                # The undo keeps the reverted-to state as a branch: deleted, so
                # that the image directories again hold the VMs' chains only.
                ls_cli snapshot delete "$(jq -r .id <<< "$un")" > "$W/op.out" 2>&1 ||
                        { cat "$W/op.out"; t_fail "round $r: delete of the branch the undo kept failed"; }
                t_ring_flows
                t_info "round $r: reverted to $id, undid it, deleted the branch it kept"
        fi
}

pool=()
for s in "${ALL[@]}"; do
        # The long ones (three cuts over a slow link, a catalog moved to a
        # small disk) are faults.sh's, once.
        case "$s" in delay-loss | catalog-full) ;; *) pool+=("$s") ;; esac
done
for r in $(seq 1 "$ROUNDS"); do
        between
        if ((RANDOM % 2)); then FH=host-a; else FH=host-b; fi
        s=${pool[RANDOM % ${#pool[@]}]}
        t_info "round $r of $ROUNDS (seed $SEED): $s (link and stop-agent faults on $FH)"
        f_run "$s"
        ls_cli prune shop > "$W/prune.out" 2>&1 || { cat "$W/prune.out"; t_fail "round $r: prune failed"; }
done
t_ok "$ROUNDS round(s) of seed $SEED: every check held"
