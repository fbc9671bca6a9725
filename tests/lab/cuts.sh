#!/bin/bash
# lab test "cuts": with messages flowing in the ring web -> app -> db -> web, cuts
# taken VM after VM (virsh --quiesce, today's way) are intact per VM but may hold
# orphan messages (reported, not asserted: it depends on timing), while cuts taken
# with every VM frozen first must be intact and hold none.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_need_lab
t_up --no-daemons

# The ring must really flow, or "no orphan" would prove nothing.
t_ring_flows web1 app1 db1
t_ok "ring flows: every VM has received messages"

assert_intact() { # json label
        local j=$1 what=$2
        [ "$(jq -r '.intact' <<< "$j")" = true ] || {
                echo "$j" | jq .
                t_fail "$what: not intact"
        }
        [ "$(jq -r '[.members[].disks[].fsck] | all(. == "clean")' <<< "$j")" = true ] ||
                t_fail "$what: an ext4 is not clean"
        [ "$(jq -r '.members | length' <<< "$j")" = 3 ] || t_fail "$what: not 3 members"
        [ "$(jq -r '[.members[] | .log.recv > 0] | all' <<< "$j")" = true ] ||
                t_fail "$what: a member received nothing before the cut"
        [ "$(jq -r '.members[] | select(.vm == "app1") | .pages.valid' <<< "$j")" -gt 0 ] ||
                t_fail "$what: app1's page store has no valid page"
        [ "$(jq -r '[.members[] | select(.vm == "app1") | .disks[].disk] | join(",")' <<< "$j")" = vda,vdb ] ||
                t_fail "$what: app1's cut is not vda+vdb"
}

seq_orphans=()
for i in 1 2; do
        j=$("$LAB" sequential-cut --json 2>> "$T_LOG") || {
                echo "$j"
                t_fail "sequential cut $i: damaged images"
        }
        assert_intact "$j" "sequential cut $i"
        seq_orphans+=("$(jq -r '.orphans' <<< "$j")")
        sleep 1
done
t_ok "sequential cuts (virsh --quiesce VM after VM): intact; orphans ${seq_orphans[*]} (not asserted)"

grp=()
for i in 1 2 3; do
        rc=0
        j=$("$LAB" group-cut-virsh --json 2>> "$T_LOG") || rc=$?
        assert_intact "$j" "group cut $i"
        o=$(jq -r '.orphans' <<< "$j")
        ((rc == 0 && o == 0)) || t_fail "group cut $i (all frozen first): $o orphans ($(jq -c .orphan_ids <<< "$j")), exit $rc"
        grp+=("$o")
        sleep 1
done
t_ok "all-frozen cuts: intact, orphans ${grp[*]}"
grep '^lab: group cut' "$T_LOG" | tail -n 1 | sed "s/^lab: /     $T_NAME: /"
