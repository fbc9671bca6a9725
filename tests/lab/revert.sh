#!/bin/bash
# lab test "revert": cut A, let the workload run, cut B, revert the group to A:
# every member runs on a new overlay over A's image, its workload log starts
# exactly with A's (nothing from after A), tiers started back first; --undo
# brings back the pre-revert disks, also after a second revert to B (a cut that
# is then in no disk's chain); a revert with one cut image missing or
# corrupt changes nothing; kill -9 of an agent mid-SWITCH or of lockstepd after
# SWITCH ends with every member back on its pre-revert disk, running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_need_failpoints
t_up_product
W=$(mktemp -d /tmp/lab-revert.XXXXXX)
trap 't_down; rm -rf "$W" "$T_LOG"' EXIT
disk_of() { "$LAB" virsh "$1" domblklist "$1" | awk '$1 == "vda" { print $2 }'; }
dump_log() { # image out: the guest's /workload.log as the image holds it
        qemu-img convert -U -O raw "$1" "$W/raw"
        # Appends of a running guest may sit in ext4's journal for a long while:
        # replay it on the copy, or debugfs reads the file as of the last
        # checkpoint (a guest that writes looked silent for 90 s).
        e2fsck -E journal_only -y "$W/raw" > /dev/null 2>&1 || true
        debugfs -R "dump /workload.log $2" "$W/raw" > /dev/null 2>&1
        rm -f "$W/raw"
        [ -s "$2" ]
}
VMS="web1 app1 db1"
for vm in $VMS; do
        for _ in $(seq 1 60); do [ "$(t_records "$vm")" -gt 5 ] 2> /dev/null && break; sleep 0.5; done
done

ls_cli snapshot create shop --name A > /dev/null || t_fail "cut A"
sleep 4
ls_cli snapshot create shop --name B > /dev/null || t_fail "cut B"
sleep 2
A=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name == "A") | .id')
declare -A imgA pre
for vm in $VMS; do
        imgA[$vm]=$(ls_cli snapshot show "$A" --json | jq -r --arg v "$vm" '.members[] | select(.vm == $v) | .disks[] | select(.disk == "vda") | .image')
        pre[$vm]=$(disk_of "$vm")
done

# 1. Bad images change nothing.
mv "${imgA[app1]}" "${imgA[app1]}.away"
pid_app1=$(qpid app1)
ls_cli snapshot revert "$A" --yes > "$T_LOG.r1" 2>&1 && t_fail "revert with a missing image went through"
mv "${imgA[app1]}.away" "${imgA[app1]}"
grep -q "app1@.*${imgA[app1]}" "$T_LOG.r1" || { cat "$T_LOG.r1"; t_fail "the refusal does not name app1, its host and the file"; }
for vm in $VMS; do [ "$(disk_of "$vm")" = "${pre[$vm]}" ] || t_fail "$vm's disk changed after a refused revert"; done
[ "$(qpid app1)" = "$pid_app1" ] || t_fail "app1 was restarted by a refused revert"
t_ok "revert with a missing cut image refused, naming app1, its host and the file; nothing changed"
cp "${imgA[db1]}" "$W/db1-A.keep"
printf '\x00\x00\x00\x63' | dd of="${imgA[db1]}" bs=1 seek=4 conv=notrunc status=none # qcow2 version 99
ls_cli snapshot revert "$A" --yes > "$T_LOG.r2" 2>&1 && rc=0 || rc=$?
dd if="$W/db1-A.keep" of="${imgA[db1]}" bs=1 count=8 conv=notrunc status=none
((rc != 0)) || t_fail "revert with a corrupt image went through"
for vm in $VMS; do [ "$(disk_of "$vm")" = "${pre[$vm]}" ] || t_fail "$vm's disk changed after a refused revert"; done
t_ok "revert with a corrupt cut image refused ($(grep -o 'fails qemu-img check' "$T_LOG.r2" | head -1)); nothing changed"

# 2. Revert to A.
ls_cli snapshot revert "$A" --yes --json > "$T_LOG.rev" || { cat "$T_LOG.rev"; t_fail "revert to A failed"; }
R=$(jq -r .id "$T_LOG.rev")
for vm in $VMS; do
        now=$(disk_of "$vm")
        [ "$now" = "$(dirname "${imgA[$vm]}")/$vm-vda.$R.qcow2" ] || t_fail "$vm runs on $now, not a new overlay over A's image"
        [ "$(qemu-img info -U --output=json "$now" | jq -r '.["full-backing-filename"]')" = "${imgA[$vm]}" ] ||
                t_fail "$vm's new overlay $now is not backed by A's image ${imgA[$vm]}"
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || t_fail "$vm is not running after the revert"
done
order=$(grep 'START    tier' "$D/logs/lockstepd.log" | tail -3 | sed 's/.*tier \([0-9]\).*/\1/' | tr -d '\n')
[ "$order" = 210 ] || t_fail "tiers started in order $order, not back tiers first (210)"
t_ok "reverted to A: every member on a new overlay over A's image, running; tiers started db, app, web"
for vm in $VMS; do
        dump_log "${imgA[$vm]}" "$W/$vm.A.log" || t_fail "cannot read $vm's log in A's image"
        n=$(wc -l < "$W/$vm.A.log")
        # The application comes back: the guest writes again, after A's records.
        deadline=$((SECONDS + 90))
        while :; do
                dump_log "$(disk_of "$vm")" "$W/$vm.now.log" || t_fail "cannot read $vm's log after the revert"
                (($(wc -l < "$W/$vm.now.log") > n)) && break
                if ((SECONDS > deadline)); then
                        # What is needed to tell a guest that never came back from
                        # one that writes elsewhere (its pre-revert disk).
                        tail -n 25 "$D"/hosts/*/console/"$vm".log 2> /dev/null || true
                        "$LAB" virsh "$vm" dominfo "$vm" 2>&1 | grep -E 'State|CPU time' || true
                        "$LAB" virsh "$vm" domblklist "$vm" 2>&1 || true
                        ps -o pid,lstart,args -p "$(qpid "$vm")" 2>&1 | cut -c1-160 || true
                        dump_log "${pre[$vm]}" "$W/$vm.pre-now.log" && echo "pre-revert disk log: $(wc -l < "$W/$vm.pre-now.log") records"
                        grep "vm=$vm" "$D"/hosts/*/agent.log | tail -n 12 || true
                        t_fail "$vm wrote nothing in 90 s after the revert (console, domain and agent log above)"
                fi
                sleep 1
        done
        head -n "$n" "$W/$vm.now.log" | cmp -s - "$W/$vm.A.log" || t_fail "$vm's log after the revert does not start with A's $n records"
        # What it writes next may equal what it wrote after A the first time
        # (its state is A's again), so the prefix is what proves the revert.
        dump_log "${pre[$vm]}" "$W/$vm.pre.log" || t_fail "cannot read $vm's pre-revert log"
        (($(wc -l < "$W/$vm.pre.log") > n)) || t_fail "$vm's pre-revert log is not longer than A's: no test"
        t_info "$vm: A ended at record $n; after the revert the guest went on from there ($(wc -l < "$W/$vm.now.log") now)"
done
t_ok "every guest's log starts exactly with A's (the pre-revert logs went further) and grows again"

# 2b. Revert to B, a cut that is now on the pre-revert branch, not in the
# disks' chains: its images come from the catalog.
B=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name == "B") | .id')
declare -A imgB
for vm in $VMS; do
        imgB[$vm]=$(ls_cli snapshot show "$B" --json | jq -r --arg v "$vm" '.members[] | select(.vm == $v) | .disks[] | select(.disk == "vda") | .image')
done
ls_cli snapshot revert "$B" --yes --json > "$T_LOG.revB" || { cat "$T_LOG.revB"; t_fail "revert to B from A's branch failed"; }
RB=$(jq -r .id "$T_LOG.revB")
for vm in $VMS; do
        [ "$(disk_of "$vm")" = "$(dirname "${imgB[$vm]}")/$vm-vda.$RB.qcow2" ] || t_fail "$vm runs on $(disk_of "$vm"), not a new overlay over B's image"
        dump_log "${imgB[$vm]}" "$W/$vm.B.log" || t_fail "cannot read $vm's log in B's image"
        n=$(wc -l < "$W/$vm.B.log")
        for _ in $(seq 1 90); do
                dump_log "$(disk_of "$vm")" "$W/$vm.now.log" && (($(wc -l < "$W/$vm.now.log") > n)) && break
                sleep 1
        done
        head -n "$n" "$W/$vm.now.log" | cmp -s - "$W/$vm.B.log" || t_fail "$vm's log after the revert to B does not start with B's $n records"
        (($(wc -l < "$W/$vm.now.log") > n)) || t_fail "$vm wrote nothing in 90 s after the revert to B"
done
t_ok "reverted to B from A's branch (B's layers are in no current chain): every log starts with B's and grows"

# 3. Undo.
ls_cli snapshot revert --undo "$R" --yes > "$T_LOG.undo" 2>&1 || { cat "$T_LOG.undo"; t_fail "undo failed"; }
for vm in $VMS; do
        [ "$(disk_of "$vm")" = "${pre[$vm]}" ] || t_fail "$vm runs on $(disk_of "$vm") after undo, not ${pre[$vm]}"
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || t_fail "$vm is not running after undo"
done
sleep 2
dump_log "${pre[web1]}" "$W/web1.undo.log"
n=$(wc -l < "$W/web1.pre.log")
head -n "$n" "$W/web1.undo.log" | cmp -s - "$W/web1.pre.log" || t_fail "web1's log after undo lost pre-revert records"
t_ok "undo: every member back on its pre-revert disk with everything written before the revert"

# 4. kill -9 of an agent during SWITCH: after its restart every member is back
# on its pre-revert disk and running, never a mix across members.
H=$(awk '$1 == "vm" && $2 == "web1" { print $4 }' "$D/lab.state")
kill -9 "$(cat "$D/hosts/$H/agent.pid")"
ip netns exec "lslab-$H" env LOCKSTEP_FAILPOINT=agent-mid-switch setsid "$LOCKSTEP_BUILD_DIR/agent/lockstep-agent" \
        -c "$D/hosts/$H/agent.yaml" >> "$D/hosts/$H/agent.log" 2>&1 < /dev/null &
echo $! > "$D/hosts/$H/agent.pid"
sleep 1
for vm in $VMS; do pre[$vm]=$(disk_of "$vm"); done
ls_cli snapshot revert "$A" --yes > "$T_LOG.kill" 2>&1 &
bg=$!
for _ in $(seq 1 600); do grep -q 'failpoint agent-mid-switch reached' "$D/hosts/$H/agent.log" && break; sleep 0.1; done
grep -q 'failpoint agent-mid-switch reached' "$D/hosts/$H/agent.log" || t_fail "the agent never reached the middle of SWITCH"
kill -9 "$(cat "$D/hosts/$H/agent.pid")"
# Back at once, while lockstepd decides: its ABORT waits for the agent's
# connection instead of three step timeouts (90 s) of a dead one.
ip netns exec "lslab-$H" setsid "$LOCKSTEP_BUILD_DIR/agent/lockstep-agent" -c "$D/hosts/$H/agent.yaml" \
        >> "$D/hosts/$H/agent.log" 2>&1 < /dev/null &
echo $! > "$D/hosts/$H/agent.pid"
wait "$bg" && t_fail "the revert went through although an agent died in SWITCH"
for _ in $(seq 1 60); do ls_cli recover > /dev/null 2>&1 && break; sleep 1; done
for vm in $VMS; do
        [ "$(disk_of "$vm")" = "${pre[$vm]}" ] || t_fail "$vm runs on $(disk_of "$vm") after the crash, not its pre-revert ${pre[$vm]}"
        for _ in $(seq 1 60); do [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] && break; sleep 1; done
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || t_fail "$vm is not running after the recovery"
done
t_ok "agent killed during SWITCH: after its restart every member is back on its pre-revert disk and running"

# 5. kill -9 of lockstepd after SWITCH (members stopped, disks on the cut's new
# overlays, nothing decided): its restart presumes abort, and every member is
# back on its pre-revert disk and running.
# Booted first: a guest still booting has no guest agent to shut it down
# (and the lab's ignore ACPI), so its STOP would wait the 60 s shutdown timeout.
t_ga_ready 120 $VMS
for vm in $VMS; do pre[$vm]=$(disk_of "$vm"); done
t_lockstepd_restart --nowait LOCKSTEP_FAILPOINT=revert-after-switch
for _ in $(seq 1 50); do ls_cli groups > /dev/null 2>&1 && break; sleep 0.1; done
ls_cli snapshot revert "$A" --yes > "$T_LOG.kill2" 2>&1 &
bg=$!
for _ in $(seq 1 1200); do grep -q 'failpoint revert-after-switch reached' "$D/logs/lockstepd.log" && break; sleep 0.1; done
grep -q 'failpoint revert-after-switch reached' "$D/logs/lockstepd.log" || t_fail "lockstepd never reached the end of SWITCH"
for vm in $VMS; do
        [ "$(disk_of "$vm")" != "${pre[$vm]}" ] || t_fail "$vm is not switched when lockstepd stops after SWITCH: no test"
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = "shut off" ] || t_fail "$vm is not stopped when lockstepd stops after SWITCH"
done
kill -9 "$(cat "$D/pids/lockstepd.pid")"
# Restarted first: the CLI, still following the dead lockstepd's operation,
# then hears at once that it is gone (else it follows for a minute).
t_lockstepd_restart
wait "$bg" && t_fail "the revert went through although lockstepd died after SWITCH"
ls_cli recover > /dev/null 2>&1 || true
for vm in $VMS; do
        for _ in $(seq 1 60); do [ "$(disk_of "$vm")" = "${pre[$vm]}" ] && break; sleep 1; done
        [ "$(disk_of "$vm")" = "${pre[$vm]}" ] || t_fail "$vm runs on $(disk_of "$vm") after lockstepd's restart, not its pre-revert ${pre[$vm]}"
        for _ in $(seq 1 60); do [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] && break; sleep 1; done
        [ "$("$LAB" virsh "$vm" domstate "$vm")" = running ] || t_fail "$vm is not running after lockstepd's recovery"
done
st=$(ls_cli snapshot list shop --json | jq -r '[.[] | select(.kind == "pre-revert")][0].state')
[ "$st" = aborted ] || t_fail "the interrupted revert is '$st' in the catalog, not aborted"
t_ok "lockstepd killed after SWITCH: its restart aborted the revert; every member back on its pre-revert disk and running"
