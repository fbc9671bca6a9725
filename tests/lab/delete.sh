#!/bin/bash
# lab test "delete": cuts deleted while the guests run and write. Delete the
# newer cut B and the older cut A stays intact; take C, delete A and C stays
# intact (its image is now A's merged base); the VMs never stop (same QEMU
# process, still running, their logs still growing).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_up_product
declare -A pid0
for vm in web1 app1 db1; do
        for _ in $(seq 1 60); do [ "$(t_records "$vm")" -gt 5 ] 2> /dev/null && break; sleep 0.5; done
        pid0[$vm]=$(qpid "$vm")
done

# The images of a cut pass every check (fsck, logs, page store, no orphan).
check_cut() { # id label
        local args=() out
        mapfile -t args < <(ls_cli snapshot show "$1" --json | jq -r '.members[] | .vm as $v | .disks[] | "\($v)=\(.image)"')
        out=$("$LAB" check --json "${args[@]}") || { echo "$out" | jq . ; t_fail "$2: its images fail the checks"; }
        [ "$(jq -r .orphans <<< "$out")" = 0 ] || t_fail "$2: orphans in its images"
}

ls_cli snapshot create shop --name cutA > /dev/null || t_fail "cut A"
sleep 2
ls_cli snapshot create shop --name cutB > /dev/null || t_fail "cut B"
A=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name == "cutA") | .id')
B=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name == "cutB") | .id')
n_before=$(t_records web1)

j=$(ls_cli snapshot delete "$B" --json) || t_fail "delete B: $(jq -r .reason <<< "$j")"
[ "$(jq -r .state <<< "$j")" = deleted ] || t_fail "B is $(jq -r .state <<< "$j"), not deleted"
ls "$D"/hosts/*/images/*."$B".qcow2 > /dev/null 2>&1 && t_fail "B's overlays still exist"
check_cut "$A" "cut A after deleting B"
t_ok "deleted B while running: overlays merged, A intact and clean"

ls_cli snapshot create shop --name cutC > /dev/null || t_fail "cut C"
C=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name == "cutC") | .id')
j=$(ls_cli snapshot delete "$A" --json) || t_fail "delete A: $(jq -r .reason <<< "$j")"
ls "$D"/hosts/*/images/*."$A".qcow2 > /dev/null 2>&1 && t_fail "A's overlays still exist"
check_cut "$C" "cut C after deleting A"
t_ok "deleted A under C while running: C's images (now A's merged base) intact and clean"

for vm in web1 app1 db1; do
        [ "$(qpid "$vm")" = "${pid0[$vm]}" ] || t_fail "$vm was restarted (QEMU pid changed)"
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || t_fail "$vm is not running"
        st=$("$LAB" virsh "$vm" qemu-agent-command "$vm" '{"execute":"guest-fsfreeze-status"}' | jq -r .return)
        [ "$st" = thawed ] || t_fail "$vm is $st"
done
sleep 1
[ "$(t_records web1)" -gt "$n_before" ] || t_fail "web1's log stopped growing"
t_ok "the VMs never stopped: same QEMU processes, running, thawed, still writing"
