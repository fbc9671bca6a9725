#!/bin/bash
# lab test "updown": lab up gives running guests on isolated lab hosts without
# touching the machine's own libvirt; lab down leaves nothing behind, also when
# run twice and after an up that failed half-way.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_need_lab

# What must be the same before up and after down: namespaces, links, the
# machine's libvirt dirs, and processes that mention a lab.
machine_state() {
        echo "## netns"
        ip netns list | awk '{ print $1 }' | sort
        echo "## links"
        ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort
        echo "## routes"
        ip -4 route show | sort
        echo "## libvirt dirs"
        for d in /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /run/libvirt; do
                if [ -e "$d" ]; then
                        find "$d" -printf '%p %s %T@\n' 2>/dev/null | sort | md5sum | sed "s|-|$d|"
                else
                        echo "$d absent"
                fi
        done
        echo "## processes"
        lab_processes
}
lab_processes() {
        local p
        for p in /proc/[0-9]*; do
                # Only this lab's processes: its daemons run on configs in the lab
                # dir, and other lockstep daemons on the machine are not ours.
                tr '\0' ' ' 2>/dev/null < "$p/cmdline" | grep -E "$LOCKSTEP_LAB_DIR|lab-relay" |
                        grep -v -E 'grep|updown.sh' || true
        done
}

T_LOG=$(mktemp /tmp/lab-test.XXXXXX)
t_down
before=$(machine_state)

t_up
status=$("$LAB" status) || {
        echo "$status"
        t_fail "lab status is not all-running after up"
}
echo "$status" | grep -q 'vm web1@host-a (web' || t_fail "web1 is not on host-a: $status"
echo "$status" | grep -q 'vm app1@host-b (app' || t_fail "app1 is not on host-b: $status"
echo "$status" | grep -q 'vm db1@host-a (db' || t_fail "db1 is not on host-a: $status"
[ "$(echo "$status" | grep -c 'running, guest agent yes')" = 3 ] || t_fail "not 3 guests with a guest agent: $status"
t_ok "up: 3 guests running with qemu-ga on 2 lab hosts (web1+db1 on host-a, app1 on host-b)"

for f in coordinator.yaml hosts/host-a/agent.yaml hosts/host-b/agent.yaml; do
        [ -s "$LOCKSTEP_LAB_DIR/$f" ] || t_fail "up did not write $f"
done
grep -q 'members: \[web1@host-a\]' "$LOCKSTEP_LAB_DIR/coordinator.yaml" || t_fail "coordinator.yaml lacks web1@host-a"
grep -q "libvirt_uri: \"qemu+unix:///system?socket=$LOCKSTEP_LAB_DIR/hosts/host-b/run/libvirt/libvirt-sock\"" \
        "$LOCKSTEP_LAB_DIR/hosts/host-b/agent.yaml" || t_fail "host-b agent.yaml has the wrong libvirt_uri"
t_ok "up: wrote coordinator.yaml and one agent.yaml per host"

# The lockstep daemons start as soon as they are built, agents inside their host.
if [ -x "$LOCKSTEP_BUILD_DIR/agent/lockstep-agent" ]; then
        [ "$(echo "$status" | grep -c 'agent running')" = 2 ] || t_fail "agents not running on both hosts: $status"
        ip netns exec lslab-host-a ss -ltn | grep -q '10.77.0.2:7400' ||
                t_fail "host-a's agent does not listen on 10.77.0.2:7400"
        t_ok "agents: one lockstep-agent per host, host-a's listening on 10.77.0.2:7400"
else
        t_info "agents: not built in $LOCKSTEP_BUILD_DIR, not started"
fi
if [ -x "$LOCKSTEP_BUILD_DIR/coordinator/lockstepd" ]; then
        echo "$status" | grep -q '^lockstepd: running' || t_fail "lockstepd not running: $status"
        t_ok "lockstepd: running in the root namespace"
fi

# The lab network: hosts reach each other, nothing else (no default route).
ip netns exec lslab-host-a busybox ping -c 1 -W 2 10.77.0.3 > /dev/null ||
        t_fail "host-a cannot reach host-b at 10.77.0.3"
! ip netns exec lslab-host-a ip route | grep -q default || t_fail "host-a has a default route"
t_ok "network: host-a reaches host-b on 10.77.0.0/24, no default route"

# Each host's libvirtd is its own: host-b's does not know host-a's guests.
# Read whole first: with pipefail, grep -q leaving early can make virsh die of
# SIGPIPE and the pipeline fail although the name was there.
doms_b=$("$LAB" virsh host-b list --all --name) || t_fail "virsh list on host-b failed"
doms_a=$("$LAB" virsh host-a list --all --name) || t_fail "virsh list on host-a failed"
grep -qx web1 <<< "$doms_b" && t_fail "host-b's libvirtd knows web1"
grep -qx web1 <<< "$doms_a" || t_fail "host-a's libvirtd does not know web1 (it lists: $(echo $doms_a))"
t_ok "isolation: each lab host has its own libvirtd"

during=$(machine_state)
diff <(echo "$before" | sed -n '/## libvirt dirs/,/## processes/p') \
        <(echo "$during" | sed -n '/## libvirt dirs/,/## processes/p') > /dev/null ||
        t_fail "the machine's own libvirt dirs changed while the lab was up"
t_ok "isolation: the machine's /etc/libvirt, /var/lib/libvirt, /run/libvirt untouched"

t0=$(date +%s%3N)
"$LAB" down 2>> "$T_LOG" || t_fail "lab down failed"
t_info "lab down in $(($(date +%s%3N) - t0)) ms"
after=$(machine_state)
diff <(echo "$before") <(echo "$after") || t_fail "lab down left something behind (diff above)"
[ ! -e "$LOCKSTEP_LAB_DIR" ] || t_fail "lab down left $LOCKSTEP_LAB_DIR"
t_ok "down: no namespace, link, route, process or lab dir left"

"$LAB" down 2>> "$T_LOG" || t_fail "a second lab down failed"
t_ok "down: a second down is a no-op"

# An up that fails half-way (guests never get the 1 s they are given), then down.
if LOCKSTEP_LAB_BOOT_TIMEOUT=1 "$LAB" up > /dev/null 2>> "$T_LOG"; then
        t_fail "lab up with a 1 s boot timeout did not fail"
fi
"$LAB" down 2>> "$T_LOG" || t_fail "lab down after a failed up failed"
after=$(machine_state)
diff <(echo "$before") <(echo "$after") || t_fail "lab down after a failed up left something behind"
t_ok "down after a half-failed up: nothing left"

# A lab whose processes all died (the session that ran it stopped) must not
# block the next up: up removes it and starts afresh.
"$LAB" up --hosts 1 --vms 1 > /dev/null 2>> "$T_LOG" || t_fail "small lab up failed"
for f in "$LOCKSTEP_LAB_DIR"/pids/*.pid "$LOCKSTEP_LAB_DIR"/hosts/*/*.pid \
        "$LOCKSTEP_LAB_DIR"/hosts/*/run/libvirt/qemu/*.pid; do
        [ -e "$f" ] && kill -KILL "$(cat "$f")" 2> /dev/null || true
done
sleep 1
"$LAB" up --hosts 1 --vms 1 > /dev/null 2>> "$T_LOG" || {
        tail -n 5 "$T_LOG"
        t_fail "lab up over a dead lab failed"
}
grep -q 'removing a dead lab' "$T_LOG" || t_fail "lab up did not say it removed the dead lab"
"$LAB" down 2>> "$T_LOG" || t_fail "lab down failed"
after=$(machine_state)
diff <(echo "$before") <(echo "$after") || t_fail "down after reaping a dead lab left something behind"
t_ok "up over a dead lab (its processes killed): removes it, comes up, then down leaves nothing"

# A dead lab of another LOCKSTEP_LAB_DIR (a killed session's) is removed by the
# next down here too, so that tests that start with down start clean.
other=$(mktemp -d /tmp/lab-other.XXXXXX)
rmdir "$other"
LOCKSTEP_LAB_DIR=$other "$LAB" up --hosts 1 --vms 1 > /dev/null 2>> "$T_LOG" || t_fail "other lab up failed"
pids=()
for f in "$other"/pids/*.pid "$other"/hosts/*/*.pid "$other"/hosts/*/run/libvirt/qemu/*.pid; do
        [ -e "$f" ] && pids+=("$(cat "$f")")
done
kill -KILL "${pids[@]}" 2> /dev/null || true
for _ in $(seq 100); do kill -0 "${pids[@]}" 2> /dev/null || break; sleep 0.1; done
"$LAB" down 2>> "$T_LOG" || t_fail "lab down beside a dead lab of another dir failed"
grep -q "removing a dead lab in $other" "$T_LOG" || t_fail "lab down did not say it removed the dead lab in $other"
after=$(machine_state)
diff <(echo "$before") <(echo "$after") || t_fail "down beside a dead lab of another dir left something behind"
[ ! -e "$other" ] || t_fail "down left the dead lab's dir $other"
t_ok "down removes a dead lab another LOCKSTEP_LAB_DIR left (its processes killed)"

# Only its network left (the dir gone too): down removes the bridge and namespace.
ip link add lsbr0 type bridge
ip link set lsbr0 alias "lockstep-lab $other"
ip netns add lslab-host-z
"$LAB" down 2>> "$T_LOG" || t_fail "lab down beside a dead lab's network failed"
after=$(machine_state)
diff <(echo "$before") <(echo "$after") || t_fail "down left a dead lab's network behind"
t_ok "down removes the network of a dead lab whose dir is gone"
rm -f "$T_LOG"
