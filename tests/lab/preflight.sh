#!/bin/bash
# lab test "preflight": "lockstep check GROUP" on real guests says OK for a
# healthy group and names the right member for each problem (an existing
# overlay, a full image directory, a guest without qemu-ga, an unreachable
# agent) with a non-zero exit; and a cut that cannot succeed is refused in
# FREEZE's validation before any guest is frozen (guest-fsfreeze-status polled
# every 100 ms stays "thawed" on every guest).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_need_built tests/lockstep-send
t_up_product

host_of() { awk -v v="$1" '$1 == "vm" && $2 == v { print $4 }' "$D/lab.state"; }
disk_of() { "$LAB" virsh "$1" domblklist "$1" | awk -v d="$2" '$1 == d { print $2 }'; }
fsstatus() { "$LAB" virsh "$1" qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' 2> /dev/null | jq -r .return; }
send() { t_send "$@"; }
VMS=$(awk '$1 == "vm" { print $2 }' "$D/lab.state" | tr '\n' ' ')
HA=$(host_of web1)
HB=$(host_of app1)
[ "$HA" != "$HB" ] || t_fail "web1 and app1 on one host: the lab's placement changed"

# The freeze watcher: every 100 ms, every guest's fsfreeze status; any
# "frozen" is written down. watch_stop prints what it saw.
watch_start() {
        : > "$T_LOG.watch"
        (
                while [ ! -e "$T_LOG.watch.stop" ]; do
                        for vm in $VMS; do echo "$vm $(fsstatus "$vm")"; done
                        sleep 0.1
                done
        ) >> "$T_LOG.watch" 2>&1 &
        watcher=$!
}
watch_stop() {
        local n
        # Two more full rounds after the command returned, so the window covers it.
        n=$(($(wc -l < "$T_LOG.watch") + 2 * $(wc -w <<< "$VMS")))
        for _ in $(seq 1 100); do (($(wc -l < "$T_LOG.watch") >= n)) && break; sleep 0.1; done
        touch "$T_LOG.watch.stop"
        wait "$watcher" || true
        rm -f "$T_LOG.watch.stop"
}
never_frozen() { # [VM...]: those (default: all) never seen frozen
        local vm
        for vm in ${*:-$VMS}; do grep -q "^$vm frozen$" "$T_LOG.watch" && return 1; done
        return 0
}

# A small filesystem under web1's images: loop-mounted in the root namespace
# (where the agent runs) and in host-a's libvirtd namespace (where QEMU runs).
small=$D/hosts/$HA/images/small
loopdev=""
small_down() {
        [ -n "$loopdev" ] || return 0
        umount -l "$small" 2> /dev/null || true
        losetup -d "$loopdev" 2> /dev/null || true
        loopdev=""
}
# After lab down (QEMU gone), the mount goes and so does its mount point, so
# the next lab up finds no stray directory in the lab dir.
trap 't_down; small_down; rmdir -p "$small" 2> /dev/null || true; rm -f "$T_LOG" "$T_LOG".*' EXIT

for vm in $VMS; do
        for _ in $(seq 1 60); do [ "$(fsstatus "$vm")" = thawed ] && break; sleep 0.5; done
done

# 1. All well.
out=$(ls_cli check shop) || t_fail "check of a healthy group exits $?: $out"
[ "$(grep -c '^OK ' <<< "$out")" = 3 ] || t_fail "not one OK line per member: $out"
j=$(ls_cli check shop --json) || t_fail "check --json exits $?"
[ "$(jq -r '.ok and ([.members[] | .ok] | all) and (.members | length) == 3' <<< "$j")" = true ] ||
        t_fail "check --json: $j"
t_ok "check of the healthy group: exit 0, one OK line per member"

# 2. An overlay that is already there, for a transaction id chosen here (a
# cut's id is fresh each time, so only a chosen id can meet an existing file).
web1_img=$(disk_of web1 vda)
stale=$(dirname "$web1_img")/web1-vda.ls-exists.qcow2
touch "$stale"
r=$(send "$HA" check ls-exists quiesce 30000 web1:0 db1:2) && t_fail "CHECK with an existing overlay said OK: $r"
[ "$(jq -r '.members[] | select(.vm == "web1") | .code' <<< "$r")" = E_OVERLAY_EXISTS ] ||
        t_fail "CHECK: web1 is not E_OVERLAY_EXISTS: $r"
jq -r '.members[] | select(.vm == "web1") | .message' <<< "$r" | grep -q "web1@$HA: validate: .*$stale\" already exists" ||
        t_fail "CHECK: web1's message does not name the file: $r"
[ "$(jq -r '.members[] | select(.vm == "db1") | .code' <<< "$r")" = OK ] || t_fail "CHECK: db1 not OK: $r"
watch_start
r=$(send "$HA" freeze ls-exists ls-exists quiesce 30000 web1:0 db1:2) && t_fail "FREEZE with an existing overlay voted yes"
watch_stop
[ "$(jq -r '.members[] | select(.vm == "web1") | .code' <<< "$r")" = E_OVERLAY_EXISTS ] || t_fail "FREEZE: $r"
never_frozen || t_fail "a guest was frozen although validation failed: $(grep ' frozen$' "$T_LOG.watch" | head -3)"
[ "$(wc -l < "$T_LOG.watch")" -ge 3 ] || t_fail "the freeze watcher saw nothing"
# The watcher's polls can miss a short freeze; the agent logs every one it makes.
! grep -q 'txid=ls-exists step=FREEZE vm=.* frozen' "$D/hosts/$HA/agent.log" || t_fail "the agent froze a guest for ls-exists"
rm -f "$stale"
t_ok "existing overlay: CHECK names web1 and the file; FREEZE refused it and no guest was frozen ($(wc -l < "$T_LOG.watch") polls)"

# 2b. A VM that runs on a long file name (as older versions made them, each
# cut's name appended to the last) gets a short one at its next cut.
long=$(dirname "$web1_img")/web1-vda.$(printf 'x%.0s' $(seq 1 200)).qcow2
"$LAB" virsh web1 snapshot-create-as web1 --disk-only --no-metadata --atomic --diskspec "vda,file=$long" \
        > /dev/null 2>> "$T_LOG" || t_fail "could not move web1 onto a long file name: $(tail -3 "$T_LOG")"
j=$(ls_cli snapshot create shop --json) || t_fail "a cut of web1 on a ${#long}-byte path failed: $(jq -r .reason <<< "$j")"
want=$(dirname "$web1_img")/web1-vda.$(jq -r .id <<< "$j").qcow2
[ "$(disk_of web1 vda)" = "$want" ] || t_fail "web1 runs on $(disk_of web1 vda), not $want"
[ "$(jq -r '.members[] | select(.vm == "web1") | .disks[0].image' <<< "$j")" = "$long" ] || t_fail "the cut's image is not the long-named file"
t_ok "web1 on a $(basename "$long" | wc -c)-byte file name: the next cut committed and named its overlay $(basename "$want")"

# 3. A full directory: web1 moved onto a 16 MiB filesystem (min_free_mb is 64).
mkdir -p "$small"
truncate -s 16M "$T_LOG.small.img"
mkfs.ext4 -q "$T_LOG.small.img"
loopdev=$(losetup -f --show "$T_LOG.small.img")
mount "$loopdev" "$small"
# The agent runs in a mount namespace of its own too (ip netns exec).
nsenter -t "$(cat "$D/hosts/$HA/libvirtd.pid")" -m mount "$loopdev" "$small"
nsenter -t "$(cat "$D/hosts/$HA/agent.pid")" -m mount "$loopdev" "$small"
"$LAB" virsh web1 snapshot-create-as web1 --disk-only --no-metadata --atomic \
        --diskspec "vda,file=$small/web1-vda.moved.qcow2" > /dev/null 2>> "$T_LOG" ||
        t_fail "could not move web1 onto the small filesystem: $(tail -3 "$T_LOG")"
rc=0
out=$(ls_cli check shop) || rc=$?
((rc == 1)) || t_fail "check with web1's directory full exits $rc: $out"
grep -q "^FAIL  web1@$HA .*E_NO_SPACE: .*MiB free in \"$small\"" <<< "$out" || t_fail "check does not name web1's full directory: $out"
[ "$(grep -c '^OK ' <<< "$out")" = 2 ] || t_fail "the other members are not OK: $out"
watch_start
rc=0
j=$(ls_cli snapshot create shop --json) || rc=$?
watch_stop
((rc == 1)) || t_fail "a cut with web1's directory full exits $rc"
[ "$(jq -r '.members[] | select(.vm == "web1") | .code' <<< "$j")" = E_NO_SPACE ] || t_fail "cut: web1 is not E_NO_SPACE: $j"
# Each agent validates all its members before it freezes any: web1's agent
# froze none of its guests. (Another agent may have frozen its own and thawed
# them at the no vote, as for any failed FREEZE.)
on_ha=$(awk -v h="$HA" '$1 == "vm" && $4 == h { print $2 }' "$D/lab.state" | tr '\n' ' ')
never_frozen $on_ha || t_fail "a guest of $HA was frozen although web1's validation failed: $(grep ' frozen$' "$T_LOG.watch" | head -3)"
! grep -q "txid=$(jq -r .id <<< "$j") step=FREEZE vm=.* frozen" "$D/hosts/$HA/agent.log" || t_fail "$HA's agent froze a guest for the refused cut"
for vm in $VMS; do [ "$(fsstatus "$vm")" = thawed ] || t_fail "$vm is left $(fsstatus "$vm") after the refused cut"; done
t_ok "full directory: check names web1 (E_NO_SPACE), exit 1; the cut was refused before $HA froze any of $on_ha; all thawed after"

# 4. A guest without its guest agent (web1 stays on the full directory).
"$LAB" restart app1 --noga > /dev/null 2>> "$T_LOG"
rc=0
out=$(ls_cli check shop) || rc=$?
((rc == 1)) || t_fail "check with app1 lacking qemu-ga exits $rc: $out"
grep -q "^FAIL  app1@$HB .*E_NO_GUEST_AGENT" <<< "$out" || t_fail "check does not name app1's guest agent: $out"
grep -q "^FAIL  web1@$HA .*E_NO_SPACE" <<< "$out" || t_fail "check lost web1's problem: $out"
t_ok "guest without qemu-ga: check names app1 (E_NO_GUEST_AGENT) and still web1, exit 1"

# 5. An unreachable agent.
kill "$(cat "$D/hosts/$HB/agent.pid")"
rc=0
out=$(ls_cli check shop) || rc=$?
((rc == 1)) || t_fail "check with $HB's agent down exits $rc: $out"
grep -q "^FAIL  app1@$HB .*UNREACHABLE: agent \"$HB\"" <<< "$out" || t_fail "check does not name $HB unreachable: $out"
j=$(ls_cli check shop --json) || true
[ "$(jq -r '.ok' <<< "$j")/$(jq -r '.members[] | select(.vm == "app1") | .code' <<< "$j")" = false/UNREACHABLE ] ||
        t_fail "check --json with $HB down: $j"
t_ok "unreachable agent: check names app1@$HB as UNREACHABLE, exit 1"
