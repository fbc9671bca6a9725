#!/bin/bash
# lab test "trust": a guest cannot choose the host files its disk is backed by.
# A shut-off domain on a lab host whose raw disk's bytes (the guest's) carry a
# qcow2 header naming web1's layer of a cut: a DELETE of that cut sent to the
# real agent for it merges nothing, web1's layer and chain stay as they were,
# and the raw disk keeps its format and its bytes. A REVERT_PREPARE of that cut
# for it is refused, with no hint and with a hint naming web1's image of the
# cut (a path from the wire), and again nothing changes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_need_lab
t_need_built coordinator/lockstep agent/lockstep-agent tests/lockstep-send
t_up
# This test is the coordinator: lockstepd would settle our transactions itself.
kill "$(cat "$D/pids/lockstepd.pid")" 2> /dev/null || true
W=$(mktemp -d /tmp/lab-trust.XXXXXX)
trap '"$LAB" virsh web1 undefine evil1 > /dev/null 2>&1 || true; rm -f "${evil:-}"; t_down; rm -rf "$W" "$T_LOG"' EXIT

send() { t_send "$@"; }
disk_of() { "$LAB" virsh "$1" domblklist "$1" | awk -v d="$2" '$1 == d { print $2 }'; }
fsstatus() { "$LAB" virsh "$1" qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' 2> /dev/null | jq -r .return; }
H=$(awk '$1 == "vm" && $2 == "web1" { print $4 }' "$D/lab.state") # web1's host
for _ in $(seq 1 60); do [ "$(fsstatus web1)" = thawed ] && break; sleep 0.5; done

# 1. Two cuts of web1: its layer of tr1 (below tr2's, so no longer written)
# is the file the guest's header will name.
for c in tr1 tr2; do
        send "$H" freeze $c $c quiesce 30000 web1:0 > /dev/null || t_fail "freeze $c"
        send "$H" snapshot $c > /dev/null || t_fail "snapshot $c"
        send "$H" commit $c > /dev/null || t_fail "commit $c"
done
top=$(disk_of web1 vda)
layer=$(dirname "$top")/web1-vda.tr1.qcow2
case "$top" in */web1-vda.tr2.qcow2) ;; *) t_fail "web1 runs on $top after the cuts" ;; esac
[ -e "$layer" ] || t_fail "no layer $layer"
layer_sum=$(md5sum < "$layer")

# 2. evil1: shut off, one raw disk beside web1's whose first bytes are a qcow2
# header naming web1's layer (what root in a guest can write to its disk).
evil=$(dirname "$layer")/evil1-vda.img
qemu-img create -q -f qcow2 -u -b "$layer" -F qcow2 "$W/hdr.qcow2" 64M
cp "$W/hdr.qcow2" "$evil"
truncate -s 64M "$evil"
evil_sum=$(md5sum < "$evil")
cat > "$W/evil1.xml" << XML
<domain type='qemu'><name>evil1</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$evil'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>
XML
"$LAB" virsh web1 define "$W/evil1.xml" > /dev/null || t_fail "define evil1"
[ "$("$LAB" virsh web1 domstate evil1)" = "shut off" ] || t_fail "evil1 is not shut off"

# 3. DELETE of cut tr1 for evil1: the agent must not read the raw disk as qcow2.
r=$(send "$H" delete td1 tr1 tr1 evil1) || t_fail "delete for evil1 failed: $r"
[ "$(jq '[.members[] | select(.vm == "evil1") | .disks[]?] | length' <<< "$r")" = 0 ] ||
        t_fail "delete merged something for evil1: $r"
[ -e "$layer" ] || t_fail "web1's layer $layer is gone"
[ "$(md5sum < "$layer")" = "$layer_sum" ] || t_fail "web1's layer $layer changed"
[ "$(disk_of web1 vda)" = "$top" ] || t_fail "web1 runs on $(disk_of web1 vda), not $top"
[ "$(md5sum < "$evil")" = "$evil_sum" ] || t_fail "evil1's raw disk was rewritten"
# Read whole first: with pipefail, grep -q leaving early can fail the pipeline.
xml=$("$LAB" virsh web1 dumpxml --inactive evil1)
grep -q "<driver name='qemu' type='raw'/>" <<< "$xml" ||
        t_fail "evil1's disk was re-typed: $(grep '<driver' <<< "$xml")"
t_ok "a raw disk's guest-written qcow2 header is never followed: DELETE merged nothing, web1's layer and evil1's disk unchanged"

# 4. REVERT_PREPARE of cut tr1 for evil1. Its raw disk holds no layer of tr1
# (the header is the guest's, not a chain); and a hint naming web1's image of
# tr1 is a path from the wire, which the agent only compares, never uses.
unchanged() {
        [ "$(md5sum < "$layer")" = "$layer_sum" ] || t_fail "$1: web1's layer $layer changed"
        [ "$(disk_of web1 vda)" = "$top" ] || t_fail "$1: web1 runs on $(disk_of web1 vda), not $top"
        [ "$(md5sum < "$evil")" = "$evil_sum" ] || t_fail "$1: evil1's raw disk was rewritten"
        local ed
        ed=$("$LAB" virsh web1 domblklist evil1 | awk '$1 == "vda" { print $2 }') # evil1 is not a lab VM: on web1's host
        [ "$ed" = "$evil" ] || t_fail "$1: evil1's disk is now $ed"
        grep -q "<driver name='qemu' type='raw'/>" <<< "$("$LAB" virsh web1 dumpxml --inactive evil1)" ||
                t_fail "$1: evil1's disk was re-typed"
        [ "$("$LAB" virsh web1 domstate evil1)" = "shut off" ] || t_fail "$1: evil1 is not shut off"
}
img=$(qemu-img info -U --output=json "$layer" | jq -r '."full-backing-filename"')
[ -e "$img" ] || t_fail "web1's image of tr1 ($img) not found"
if r=$(send "$H" revert-prepare tv1 tr1 tr1 evil1:0); then t_fail "revert of evil1 to tr1 accepted: $r"; fi
unchanged "revert without a hint"
if r=$(send "$H" -I "evil1:vda:$img" revert-prepare tv2 tr1 tr1 evil1:0); then
        t_fail "revert of evil1 onto web1's image accepted: $r"
fi
unchanged "revert with a hint"
t_ok "REVERT_PREPARE of evil1 refused without a hint and with web1's image as a hint; nothing changed"
