#!/bin/bash
# lab test "memory": a memory-mode cut saves each guest's memory beside its
# disk overlays; reverting to it brings the guests back running from that
# memory state, without a reboot (their uptime goes on from the cut's).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_up_product
uptime_of() { # seconds since the guest booted, read inside it through its agent
        local pid out
        pid=$("$LAB" virsh "$1" qemu-agent-command "$1" \
                '{"execute":"guest-exec","arguments":{"path":"/bin/cat","arg":["/proc/uptime"],"capture-output":true}}' |
                jq -r .return.pid)
        for _ in $(seq 1 40); do
                out=$("$LAB" virsh "$1" qemu-agent-command "$1" \
                        "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}")
                [ "$(jq -r .return.exited <<< "$out")" = true ] && break
                sleep 0.1
        done
        jq -r '.return["out-data"]' <<< "$out" | base64 -d | awk '{ printf "%d\n", $1 }'
}
for vm in web1 app1 db1; do
        for _ in $(seq 1 60); do [ "$(t_records "$vm")" -gt 5 ] 2> /dev/null && break; sleep 0.5; done
done
# Up long enough that a reboot (uptime back to a few seconds) cannot pass for a restore.
while (($(uptime_of web1) < 40)); do sleep 2; done

j=$(ls_cli snapshot create shop --mode memory --name M --json) || t_fail "memory-mode cut: $(jq -r .reason <<< "$j")"
M=$(jq -r .id <<< "$j")
u0=$(uptime_of web1)
for vm in web1 app1 db1; do
        img=$(jq -r --arg v "$vm" '.members[] | select(.vm == $v) | .disks[0].image' <<< "$j")
        mem=$(dirname "$img")/$vm.$M.mem
        [ -s "$mem" ] || t_fail "$vm: no memory state at $mem"
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || t_fail "$vm not running after the memory cut"
done
t_ok "memory-mode cut committed: memory state saved beside each guest's image (window $(jq -r .group_window_ms <<< "$j") ms); web1 up ${u0} s"
sleep 8
u_pre=$(uptime_of web1)
ls_cli snapshot revert "$M" --yes --json > "$T_LOG.rev" || { cat "$T_LOG.rev"; t_fail "revert to the memory cut failed"; }
grep -q 'restored from memory state' "$D"/hosts/*/agent.log || t_fail "no agent restored a memory state"
u1=$(uptime_of web1)
((u1 >= u0 - 1)) || t_fail "web1 rebooted: uptime $u1 s after the revert, $u0 s at the cut"
((u1 < u_pre)) || t_fail "web1's uptime ($u1 s) did not go back to the cut's ($u0 s; $u_pre s before the revert)"
for vm in web1 app1 db1; do
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || t_fail "$vm not running after the revert"
done
t_ok "revert to the memory cut: guests back running without a reboot (web1 uptime $u1 s: $u0 s at the cut, $u_pre s before the revert)"
