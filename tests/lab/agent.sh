#!/bin/bash
# lab test "agent": lockstep-agent on real guests, driven directly with signed
# commands (lockstep-send, as the coordinator would): commit leaves each VM on
# its new overlay, thawed, with images that pass the checks; a snapshot after
# the lease is refused and the guest thawed; abort after snapshot puts the VM
# back on its image with no extra file; kill -9 of the agent while frozen thaws
# within lease + 2 s and the restarted agent reports the transaction; a guest
# without qemu-ga fails the freeze with nothing left frozen.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_need_lab
t_need_built coordinator/lockstep agent/lockstep-agent tests/lockstep-send
t_up
# This test is the coordinator: lockstepd would settle our transactions itself.
kill "$(cat "$D/pids/lockstepd.pid")" 2> /dev/null || true

send() { t_send "$@"; }
fsstatus() { "$LAB" virsh "$1" qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' 2> /dev/null | jq -r .return; }
disk_of() { "$LAB" virsh "$1" domblklist "$1" | awk -v d="$2" '$1 == d { print $2 }'; }
# The overlay transaction TXID makes for VM's vda beside IMAGE: named for the VM,
# the disk and the transaction, never for the image it sits on.
ovl() { echo "$(dirname "$1")/$2-vda.$3.qcow2"; }
H=$(awk '$1 == "vm" && $2 == "web1" { print $4 }' "$D/lab.state")  # web1's host
other=$(awk -v h="$H" '$1 == "vm" && $4 == h && $2 != "web1" { print $2; exit }' "$D/lab.state")
[ -n "$other" ] || t_fail "need two VMs on $H (lab placement changed?)"
for vm in web1 "$other"; do
        for _ in $(seq 1 60); do [ "$(fsstatus "$vm")" = thawed ] && break; sleep 0.5; done
done

# 1. freeze -> snapshot -> commit.
before=$(disk_of web1 vda)
r=$(send "$H" freeze t1 s1 quiesce 30000 web1:0 "$other":2) || t_fail "freeze: $r"
[ "$(fsstatus web1)/$(fsstatus "$other")" = frozen/frozen ] || t_fail "not both frozen after FREEZE"
t_ok "FREEZE froze web1 and $other ($(jq -r '[.members[].freeze_us/1000|floor|tostring+" ms"]|join(", ")' <<< "$r"))"
r=$(send "$H" snapshot t1) || t_fail "snapshot: $r"
[ "$(fsstatus web1)/$(fsstatus "$other")" = thawed/thawed ] || t_fail "not thawed after SNAPSHOT"
r=$(send "$H" commit t1) || t_fail "commit: $r"
t1r=$r
after=$(disk_of web1 vda)
[ "$after" = "$(ovl "$before" web1 t1)" ] || t_fail "web1 runs on $after, expected $(ovl "$before" web1 t1)"
[ "$("$LAB" virsh web1 domstate web1)" = running ] || t_fail "web1 not running after commit"
args=()
while read -r vm img; do args+=("$vm=$img"); done < <(jq -r '.members[] | .vm as $v | .disks[] | "\($v) \(.before)"' <<< "$r")
"$LAB" check "${args[@]}" > "$T_LOG.check" || { cat "$T_LOG.check"; t_fail "the committed cut's images fail the checks"; }
t_ok "commit: web1 on its new overlay, running, thawed; images pass the checks"

# 2. Lease expiry: thawed, and the late snapshot refused.
send "$H" freeze t2 s2 quiesce 1500 web1:0 > /dev/null || t_fail "freeze t2"
[ "$(fsstatus web1)" = frozen ] || t_fail "web1 not frozen under the short lease"
sleep 2.2
[ "$(fsstatus web1)" = thawed ] || t_fail "lease expired but web1 still frozen"
r=$(send "$H" snapshot t2) && t_fail "snapshot after the lease was accepted"
[ "$(jq -r .code <<< "$r")" = E_LEASE_EXPIRED ] || t_fail "late snapshot: $(jq -r .code <<< "$r")"
[ ! -e "$(ovl "$(disk_of web1 vda)" web1 t2)" ] || t_fail "an overlay was made after the lease"
send "$H" abort t2 > /dev/null
t_ok "lease expiry thawed web1; the late SNAPSHOT was refused with E_LEASE_EXPIRED"

# 3. Abort after snapshot: back on the original image, no extra file, and the
# older cut's image (t1's) untouched by the discard.
t1_image=$(jq -r '.members[] | select(.vm == "web1") | .disks[] | select(.disk == "vda") | .before' <<< "$t1r")
t1_sum=$(md5sum < "$t1_image")
before=$(disk_of web1 vda)
send "$H" freeze t3 s3 quiesce 30000 web1:0 > /dev/null || t_fail "freeze t3"
send "$H" snapshot t3 > /dev/null || t_fail "snapshot t3"
[ "$(disk_of web1 vda)" = "$(ovl "$before" web1 t3)" ] || t_fail "web1 not on its overlay after SNAPSHOT"
send "$H" abort t3 > /dev/null || t_fail "abort t3"
[ "$(disk_of web1 vda)" = "$before" ] || t_fail "after abort web1 runs on $(disk_of web1 vda), not $before"
[ ! -e "$(ovl "$before" web1 t3)" ] || t_fail "the discarded overlay $(ovl "$before" web1 t3) still exists"
[ -z "$("$LAB" virsh web1 snapshot-list web1 --name | grep -x t3 || true)" ] || t_fail "snapshot metadata t3 left"
[ "$("$LAB" virsh web1 domstate web1)" = running ] || t_fail "web1 not running after abort"
[ "$(md5sum < "$t1_image")" = "$t1_sum" ] || t_fail "the discard changed the older cut's image $t1_image"
t_ok "abort after snapshot: web1 back on $before, overlay and metadata gone, still running, t1's image unchanged"

# 4. kill -9 of the agent while frozen: the guardian thaws within lease + 2 s.
send "$H" freeze t4 s4 quiesce 5000 web1:0 "$other":2 > /dev/null || t_fail "freeze t4"
t0=$(date +%s%3N)
kill -9 "$(cat "$D/hosts/$H/agent.pid")"
while [ "$(fsstatus web1)/$(fsstatus "$other")" != thawed/thawed ]; do
        (($(date +%s%3N) - t0 < 7000)) || t_fail "agent killed: guests still frozen after lease + 2 s"
        sleep 0.1
done
t_ok "agent killed with guests frozen: both thawed $(($(date +%s%3N) - t0)) ms later"
ip netns exec "lslab-$H" setsid "$LOCKSTEP_BUILD_DIR/agent/lockstep-agent" -c "$D/hosts/$H/agent.yaml" \
        >> "$D/hosts/$H/agent.log" 2>&1 < /dev/null &
echo $! > "$D/hosts/$H/agent.pid"
for _ in $(seq 1 50); do send "$H" status > "$T_LOG.st" 2> /dev/null && break; sleep 0.1; done
[ "$(jq -r '.in_doubt[] | select(.txid == "t4") | .state' "$T_LOG.st")" = TXN_ABORTED ] ||
        t_fail "restarted agent does not report t4: $(cat "$T_LOG.st")"
send "$H" abort t4 > /dev/null
t_ok "restarted agent reports t4 in doubt (aborted) until told"

# 5. A guest without qemu-ga: the freeze fails, nothing is left frozen.
"$LAB" restart "$other" --noga > /dev/null 2>> "$T_LOG"
r=$(send "$H" freeze t5 s5 quiesce 30000 web1:0 "$other":2) && t_fail "freeze without a guest agent was accepted"
code=$(jq -r --arg v "$other" '.members[] | select(.vm == $v) | .code' <<< "$r")
case "$code" in E_NO_GUEST_AGENT | E_GUEST_AGENT_TIMEOUT) ;; *) t_fail "no guest agent: member code $code" ;; esac
[ "$(fsstatus web1)" = thawed ] || t_fail "web1 left frozen after the failed freeze"
[ "$("$LAB" virsh "$other" domstate "$other")" = running ] || t_fail "$other not running"
send "$H" abort t5 > /dev/null
t_ok "no qemu-ga in $other: freeze voted no ($code: $(jq -r --arg v "$other" '.members[] | select(.vm == $v) | .message' <<< "$r")), web1 thawed"
