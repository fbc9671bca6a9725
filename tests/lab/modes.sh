#!/bin/bash
# lab test "modes": a pause-mode cut of real guests (frozen and vCPUs suspended
# across the cut) commits with 0 orphans, no record in any image made after the
# first member was released (a sequential virsh cut fails that check), and leaves
# every guest running and thawed; a guest without qemu-ga fails the cut, unless the group names it in
# crash_consistent, and then it is paused, snapshotted and resumed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_up_product
VMS="web1 app1 db1"
all_running_thawed() {
        local vm st
        for vm in $VMS; do
                [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || return 1
                [ "$vm" = "${1:-}" ] && continue # no guest agent to ask
                st=$("$LAB" virsh "$vm" qemu-agent-command "$vm" '{"execute":"guest-fsfreeze-status"}' | jq -r .return)
                [ "$st" = thawed ] || return 1
        done
}
for vm in $VMS; do
        for _ in $(seq 1 60); do [ "$(t_records "$vm")" -gt 5 ] 2> /dev/null && break; sleep 0.5; done
done

# 1. Pause mode.
j=$(ls_cli snapshot create shop --mode pause --name paused --json) || t_fail "pause-mode cut: $(jq -r .reason <<< "$j")"
[ "$(jq -r '[.members[].message] | all(. == "frozen and paused")' <<< "$j")" = true ] ||
        t_fail "pause mode: members not reported frozen and paused: $(jq -c '[.members[].message]' <<< "$j")"
mapfile -t imgs < <(jq -r '.members[] | .vm as $v | .disks[] | "\($v)=\(.image)"' <<< "$j")
out=$("$LAB" check --json "${imgs[@]}") || t_fail "pause-mode cut fails the checks"
[ "$(jq -r .orphans <<< "$out")" = 0 ] || t_fail "pause-mode cut has orphans"
all_running_thawed || t_fail "a guest is left paused or frozen after the pause-mode cut"
t_ok "pause mode: committed, every member frozen and paused across the cut, 0 orphans, all resumed (window $(jq -r .group_window_ms <<< "$j") ms)"

# One instant held every member: the last hold began before the first release,
# and no record in any image was made after that first release (the workload
# stamps records with host time, +- its own error).
last_hold=$(jq '[.members[].frozen_at_us] | max' <<< "$j")
first_release=$(jq '[.members[].thawed_at_us] | min' <<< "$j")
((last_hold < first_release)) ||
        t_fail "pause mode: no instant held all members (last hold began at $last_hold, first release at $first_release)"
rc=0
out=$("$LAB" check --json --not-after "$first_release" "${imgs[@]}") || rc=$?
((rc == 0)) || t_fail "pause mode: a record is later than the first release (exit $rc): $(jq -c '[.members[] | {vm, late, late_reason}]' <<< "$out")"
[ "$(jq -r '[.members[].log.last_at_us != null] | all' <<< "$out")" = true ] ||
        t_fail "pause mode: a member's last record carries no time"
margin=$(jq -r --argjson b "$first_release" '[.members[] | .log.last_at_us + .log.last_err_us] | max | ($b - .) / 1000' <<< "$out")
err=$(jq -r '[.members[].log.last_err_us] | max / 1000' <<< "$out")
t_ok "pause mode: all $(jq '.members | length' <<< "$j") members held together for $(((first_release - last_hold) / 1000)) ms; the newest record in any image is $margin ms before the first release (clock error <= $err ms)"

# The same check on today's way of cutting (virsh --quiesce VM after VM) must
# fail: the later VMs' images hold records made after the first VM ran again.
rc=0
seqj=$("$LAB" sequential-cut --json 2>> "$T_LOG") || rc=$?
((rc == 0)) || t_fail "sequential virsh cut failed (exit $rc)"
cut=$(jq -r .cut <<< "$seqj")
first=$(awk '$1 == "released" { print $2, $3; exit }' "$D/cuts/$cut/manifest")
rc=0
out=$("$LAB" check --json --not-after "${first#* }" --cut "$cut") || rc=$?
((rc & 8)) || t_fail "sequential cut: no record later than ${first% *}'s release (exit $rc): the timestamp check cannot tell"
late=$(jq -r '[.members[] | select(.late > 0) | "\(.vm): \(.late)"] | join(", ")' <<< "$out")
t_ok "control: a sequential virsh cut has records made after ${first% *} was released ($late late), exit $rc"

# 2. A guest without its guest agent.
"$LAB" restart app1 --noga > /dev/null 2>> "$T_LOG"
host=$(awk '$1 == "vm" && $2 == "app1" { print $4 }' "$D/lab.state")
j=$(ls_cli snapshot create shop --json) && t_fail "a cut with app1 lacking qemu-ga went through"
[ "$(jq -r '.members[] | select(.vm == "app1") | .code' <<< "$j")" = E_NO_GUEST_AGENT ] ||
        t_fail "app1 without qemu-ga: $(jq -c '.members[] | select(.vm == "app1")' <<< "$j")"
all_running_thawed app1 || t_fail "a guest is left paused or frozen after the failed cut"
t_ok "app1 without qemu-ga and not crash-consistent: the cut fails (E_NO_GUEST_AGENT), nothing left paused or frozen"

echo "    crash_consistent: [app1@$host]" >> "$D/coordinator.yaml"
t_lockstepd_restart
j=$(ls_cli snapshot create shop --json) || t_fail "crash-consistent cut: $(jq -r .reason <<< "$j")"
msg=$(jq -r '.members[] | select(.vm == "app1") | .message' <<< "$j")
[[ "$msg" == "paused, not frozen"* ]] || t_fail "app1 not reported paused: $msg"
all_running_thawed app1 || t_fail "a guest is left paused or frozen after the crash-consistent cut"
t_ok "app1 in crash_consistent: paused, snapshotted and resumed; the cut committed"

# 3. Guest hooks: each agent.yaml defines them per VM, an argv that the guest
# agent runs without a shell; the group only names one. app1 is crash-consistent
# here: it runs none and needs none.
declare -A hook_vms=()
for vm in web1 db1; do
        h=$(awk -v v="$vm" '$1 == "vm" && $2 == v { print $4 }' "$D/lab.state")
        hook_vms[$h]+=" $vm"
done
for h in "${!hook_vms[@]}"; do
        {
                echo "vms:"
                for vm in ${hook_vms[$h]}; do
                        # "mark" writes through a shell the operator chose here; its last
                        # argument is one file name, never split or run by a shell.
                        cat << 'YAML' | sed "s/@VM@/$vm/"
  - name: @VM@
    hooks:
      - name: mark
        pre_freeze: [/bin/sh, -c, "echo pre >> /data/hooks.log"]
        post_thaw: [/bin/touch, "/data/no shell; $(reboot)"]
        timeout_s: 10
      - name: fail
        pre_freeze: [/bin/sh, -c, "exit 3"]
YAML
                done
        } >> "$D/hosts/$h/agent.yaml"
        kill "$(cat "$D/hosts/$h/agent.pid")"
        while kill -0 "$(cat "$D/hosts/$h/agent.pid")" 2> /dev/null; do sleep 0.1; done
        ip netns exec "lslab-$h" setsid "$LOCKSTEP_BUILD_DIR/agent/lockstep-agent" -c "$D/hosts/$h/agent.yaml" \
                >> "$D/hosts/$h/agent.log" 2>&1 < /dev/null &
        echo $! > "$D/hosts/$h/agent.pid"
        for _ in $(seq 1 50); do t_send "$h" status > /dev/null 2>&1 && break; sleep 0.1; done
done
guest_run() { # vm argv-json: the output of a command run in the guest
        local pid out
        pid=$("$LAB" virsh "$1" qemu-agent-command "$1" \
                "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\",\"arg\":$2,\"capture-output\":true}}" |
                jq -r .return.pid)
        for _ in $(seq 1 40); do
                out=$("$LAB" virsh "$1" qemu-agent-command "$1" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}")
                [ "$(jq -r .return.exited <<< "$out")" = true ] && break
                sleep 0.1
        done
        jq -r '.return["out-data"] // ""' <<< "$out" | base64 -d
}
hooklog() { guest_run "$1" '["-c","cat /data/hooks.log 2>/dev/null; ls /data | grep -c \"^no shell\""]' | tr '\n' ' '; }

echo "    hook: nosuch" >> "$D/coordinator.yaml"
t_lockstepd_restart
j=$(ls_cli snapshot create shop --json) && t_fail "a cut naming a hook no agent.yaml defines went through"
h=$(awk '$1 == "vm" && $2 == "web1" { print $4 }' "$D/lab.state")
[ "$(jq -r '.members[] | select(.vm == "web1") | .code + " " + .message' <<< "$j")" = "E_HOOK_FAILED web1@$h: freeze: unknown hook \"nosuch\": agent.yaml defines no hook of that name for this VM (vms[].hooks[])" ] ||
        t_fail "unknown hook: web1 is $(jq -c '.members[] | select(.vm == "web1")' <<< "$j")"
all_running_thawed app1 || t_fail "a guest is left paused or frozen after the unknown hook"
for vm in web1 db1; do
        [ "$(hooklog "$vm")" = "0 " ] || t_fail "$vm: something ran for an unknown hook: $(hooklog "$vm")"
done
out=$(ls_cli check shop) && t_fail "lockstep check passed a hook no agent.yaml defines"
grep -q "^FAIL  web1@$h .*E_HOOK_FAILED.*check: unknown hook \"nosuch\"" <<< "$out" || t_fail "check does not name the unknown hook: $out"
t_ok "unknown hook name: the cut is refused before any freeze (web1@$h named), nothing ran, lockstep check says so"

sed -i 's/^    hook: nosuch$/    hook: mark/' "$D/coordinator.yaml"
t_lockstepd_restart
j=$(ls_cli snapshot create shop --name hooked --json) || t_fail "cut with hooks: $(jq -r .reason <<< "$j")"
for vm in web1 db1; do
        [ "$(hooklog "$vm")" = "pre 1 " ] || t_fail "$vm: hooks ran as \"$(hooklog "$vm")\", not pre then the touch"
done
j=$(ls_cli snapshot create shop --name hooked2 --json) || t_fail "second cut with hooks"
sed -i 's/^    hook: mark$/    hook: fail/' "$D/coordinator.yaml"
t_lockstepd_restart
j=$(ls_cli snapshot create shop --json) && t_fail "a cut whose pre-freeze hook fails went through"
[ "$(jq -r '.members[] | select(.vm == "web1") | .code' <<< "$j")" = E_HOOK_FAILED ] ||
        t_fail "failing hook: web1 is $(jq -r '.members[] | select(.vm == "web1") | .code' <<< "$j")"
all_running_thawed app1 || t_fail "a guest is left paused or frozen after the failed hook"
t_ok "guest hooks from agent.yaml: pre-freeze then post-thaw ran in web1 and db1, the argument \"no shell; \$(reboot)\" reached touch as one file name; a failing pre-freeze hook (exit 3) voted no"
