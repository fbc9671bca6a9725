#!/bin/bash
# lab test "lockstep": cuts taken by the product (lockstepd + one lockstep-agent
# per lab host, "lockstep snapshot create shop") on 4 real guests over 2 hosts
# with the ring flowing commit, every one of them is intact, holds no orphan
# message and no record made after the first member's thaw, and no guest is left
# frozen.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_up_product --vms 4

status=$("$LAB" status) || true
[ "$(echo "$status" | grep -c 'agent running')" = 2 ] || t_fail "agents not running: $status"
echo "$status" | grep -q '^lockstepd: running' || t_fail "lockstepd not running: $status"

t_ring_flows web1 app1 db1

for i in 1 2 3; do
        rc=0
        j=$("$LAB" lockstep-cut --json 2>> "$T_LOG") || rc=$?
        if [ -z "$j" ] || ! jq -e . > /dev/null 2>&1 <<< "$j"; then
                tail -n 20 "$T_LOG"
                t_fail "lockstep cut $i: no result (exit $rc)"
        fi
        [ "$(jq -r '.intact' <<< "$j")" = true ] || {
                jq . <<< "$j"
                t_fail "lockstep cut $i: not intact"
        }
        [ "$(jq -r '[.members[].disks[].fsck] | all(. == "clean")' <<< "$j")" = true ] ||
                t_fail "lockstep cut $i: an ext4 is not clean"
        [ "$(jq -r '[.members[] | .log.recv > 0] | all' <<< "$j")" = true ] ||
                t_fail "lockstep cut $i: a member received nothing before the cut"
        o=$(jq -r '.orphans' <<< "$j")
        ((rc == 0 && o == 0)) || t_fail "lockstep cut $i: $o orphans ($(jq -c .orphan_ids <<< "$j")), exit $rc"
        [ "$(jq -r '.in_time' <<< "$j")" = true ] ||
                t_fail "lockstep cut $i: a record in an image is later than the first member's thaw: $(jq -c '[.members[] | {vm, late_reason}]' <<< "$j")"
        for vm in web1 app1 db1 web2; do
                st=$("$LAB" virsh "$vm" qemu-agent-command "$vm" '{"execute":"guest-fsfreeze-status"}' | jq -r .return)
                [ "$st" = thawed ] || t_fail "lockstep cut $i: $vm is $st afterwards"
        done
        [ "$(jq -r '.members | length' <<< "$j")" = 4 ] || t_fail "lockstep cut $i: $(jq -r '.members | length' <<< "$j") members checked, not 4"
        t_ok "lockstep cut $i: committed, intact, 0 orphans, no record after the first thaw, all 4 guests thawed (window $(jq -r '.timings_ms.window_ms' <<< "$j") ms, freeze skew $(jq -r '.timings_ms.freeze_skew_ms' <<< "$j") ms)"
        sleep 1
done
