#!/usr/bin/env bash
# revert_sim: cluster-wide revert and undo through lockstepd and 2 real agent
# processes (sim backend): tier order, all-or-nothing, bad images, a failure
# after SWITCH, an agent killed during SWITCH, members that were off.
. "$(dirname "$0")/lib.sh"

sim_agent host-a "domain web1" "domain app1" "domain db1" "latency freeze=10 snapshot=10 stop=20 start=20"
sim_agent host-b "domain web2" "domain app2" "domain db2" "latency freeze=10 snapshot=10 stop=20 start=20"
start_agent host-a
start_agent host-b
GROUP_YAML="  - name: shop
    tiers:
      - name: web
        members: [web1@host-a, web2@host-b]
      - name: app
        members: [app1@host-a, app2@host-b]
      - name: db
        members: [db1@host-a, db2@host-b]"
coordinator host-a host-b
start_lockstepd
cur() { awk '$1 == "disk" && $2 == 0 { print $3 }' "$T/$1/sim/$2.state"; }
state_of() { awk '$1 == "state" { print $2 }' "$T/$1/sim/$2.state"; }
VMS="host-a:web1 host-a:app1 host-a:db1 host-b:web2 host-b:app2 host-b:db2"
snapshot_disks() { for hv in $VMS; do echo "${hv%%:*} ${hv#*:} $(cur "${hv%%:*}" "${hv#*:}")"; done; }
id_of() { ls_cli snapshot list shop --json | jq -r --arg n "$1" '.[] | select(.name == $n) | .id'; }

ls_cli snapshot create shop --name A >/dev/null
ls_cli snapshot create shop --name B >/dev/null
A=$(id_of A)
imgA_web1=$(ls_cli snapshot show "$A" --json | jq -r '.members[] | select(.vm=="web1") | .disks[0].image')
before_revert=$(snapshot_disks)

# 1. Revert to A: every member on a new overlay over A's image, tiers in order.
out=$(ls_cli snapshot revert "$A" --yes --json) && rc=0 || rc=$?
check "revert to A: exit 0" [ "$rc" = 0 ]
R=$(jqr .id <<<"$out")
check "revert committed" [ "$(jqr .state <<<"$out")" = committed ]
check "web1 runs on a new overlay over A's image" [ "$(cur host-a web1)" = "$imgA_web1.$R.qcow2" ]
check "... backed by A's image" grep -q "^backing $imgA_web1.$R.qcow2 $imgA_web1\$" "$T/host-a/sim/web1.state"
check "every member running again" bash -c "for f in $T/host-*/sim/*.state; do grep -q '^state 0' \$f || exit 1; done"
check "stopped front tier first" bash -c "grep -n 'STOP     tier' $T/lockstepd.log | tail -3 | awk -F'tier ' '{print \$2}' | cut -c1 | tr -d '\n' | grep -qx 012"
check "started back tier first" bash -c "grep -n 'START    tier' $T/lockstepd.log | tail -3 | awk -F'tier ' '{print \$2}' | cut -c1 | tr -d '\n' | grep -qx 210"
check "progress per member: each stopped, switched and started" bash -c "for vm in web1@host-a app1@host-a db1@host-a web2@host-b app2@host-b db2@host-b; do
        grep -q \"STOP     \$vm  *stopped in\" $T/lockstepd.log && grep -q \"SWITCH   \$vm  *1 disk(s) on .*$R\" $T/lockstepd.log &&
        grep -q \"START    \$vm  *booted, guest agent answered\" $T/lockstepd.log || exit 1; done"
check "... db1 started before app1 before web1" bash -c "grep -o 'START    [a-z]*1@host-a' $T/lockstepd.log | tail -3 | awk '{print \$2}' | tr '\n' ' ' | grep -qx 'db1@host-a app1@host-a web1@host-a '"
check "the pre-revert branch is listed, kind pre-revert" [ "$(ls_cli snapshot list shop --json | jq -r --arg r "$R" '.[] | select(.id==$r) | .kind')" = pre-revert ]
check "... its images are what the VMs ran on before" [ "$(ls_cli snapshot show "$R" --json | jq -r '.members[] | select(.vm=="db2") | .disks[0].image')" = "$(echo "$before_revert" | awk '$2=="db2" {print $3}')" ]

# 2. Undo: back on the pre-revert branch.
out=$(ls_cli snapshot revert --undo "$R" --yes --json) && rc=0 || rc=$?
check "undo: exit 0" [ "$rc" = 0 ]
check "undo: every member back on its pre-revert branch" [ "$(snapshot_disks)" = "$before_revert" ]
check "... and running" bash -c "for f in $T/host-*/sim/*.state; do grep -q '^state 0' \$f || exit 1; done"

# 2b. Revert to A, then to A again from there (A's layer is no longer in the
# disks' chains: the catalog's images are used), then to B (on the pre-revert
# branch now), then undo all the way back.
B=$(id_of B)
imgB_web1=$(ls_cli snapshot show "$B" --json | jq -r '.members[] | select(.vm=="web1") | .disks[0].image')
out=$(ls_cli snapshot revert "$A" --yes --json) && rc=0 || rc=$?
R1=$(jqr .id <<<"$out")
out=$(ls_cli snapshot revert "$A" --yes --json) && rc=0 || rc=$?
check "revert to A again from the reverted disks: exit 0 ($(jqr .reason <<<"$out"))" [ "$rc" = 0 ]
R2=$(jqr .id <<<"$out")
check "... web1 on a second new overlay over A's image" [ "$(cur host-a web1)" = "$imgA_web1.$R2.qcow2" ]
out=$(ls_cli snapshot revert "$B" --yes --json) && rc=0 || rc=$?
check "revert to B, a cut on another branch: exit 0 ($(jqr .reason <<<"$out"))" [ "$rc" = 0 ]
R3=$(jqr .id <<<"$out")
check "... web1 on a new overlay over B's image" [ "$(cur host-a web1)" = "$imgB_web1.$R3.qcow2" ]
out=$(ls_cli snapshot delete "$A" 2>&1) && rc=0 || rc=$?
check "delete of A, older than the reverts: refused, exit 2" [ "$rc" = 2 ]
check "... with the reason" grep -q "cut \"$A\" is older than [0-9]* revert(s) of its VMs.*shared with the pre-revert branch" <<<"$out"
out=$(ls_cli snapshot delete "$B" 2>&1) && rc=0 || rc=$?
check "delete of B (on the kept pre-revert branch): refused too" grep -q "cut \"$B\" is older than" <<<"$out"
check "... A's images untouched" [ -e "$imgA_web1" ]
out=$(ls_cli snapshot revert --undo "$R1" --yes --json) && rc=0 || rc=$?
check "undo of the first revert after two more: back on the disks before it" [ "$rc:$(snapshot_disks)" = "0:$before_revert" ]

# 3. A cut image missing on one host: nothing is touched.
ls_cli snapshot create shop --name C >/dev/null
C=$(id_of C)
imgC_app2=$(ls_cli snapshot show "$C" --json | jq -r '.members[] | select(.vm=="app2") | .disks[0].image')
mv "$imgC_app2" "$imgC_app2.away"
before=$(snapshot_disks)
out=$(ls_cli snapshot revert "$C" --yes --json) && rc=0 || rc=$?
check "missing cut image: exit 1" [ "$rc" = 1 ]
check "... reason names the VM, host and file" bash -c "jq -r .reason <<<'$(jq -c . <<<"$out")' | grep -q 'app2@host-b.*$imgC_app2'"
check "... nothing touched" [ "$(snapshot_disks)" = "$before" ]
check "... nothing stopped" bash -c "for f in $T/host-*/sim/*.state; do grep -q '^state 0' \$f || exit 1; done"
mv "$imgC_app2.away" "$imgC_app2"
echo "corrupt db1" >> "$T/host-a/sim.txt"
out=$(ls_cli snapshot revert "$C" --yes --json) && rc=0 || rc=$?
check "corrupt cut image: exit 1, nothing touched" bash -c "[ $rc = 1 ] && [ '$(snapshot_disks | md5sum)' = '$(echo "$before" | md5sum)' ]"
sed -i '/corrupt db1/d' "$T/host-a/sim.txt"

# 4. A failure after SWITCH: every member back on its pre-revert branch.
echo "fail start app1" >> "$T/host-a/sim.txt"
out=$(ls_cli snapshot revert "$C" --yes --json) && rc=0 || rc=$?
check "start failing: exit 1" [ "$rc" = 1 ]
check "... every member back on its pre-revert branch" [ "$(snapshot_disks)" = "$before" ]
check "... app1 cannot start while its start fails" [ "$(state_of host-a app1)" = 2 ]
check "... the others run" bash -c "for f in $T/host-*/sim/*.state; do case \$f in *app1*) continue;; esac; grep -q '^state 0' \$f || exit 1; done"
sed -i '/fail start app1/d' "$T/host-a/sim.txt"
ls_cli recover >/dev/null || true
check "... once it can, recover starts it" [ "$(state_of host-a app1)" = 0 ]
check "... the overlays made on C removed" bash -c "! ls $T/host-*/sim/img/*.$(jqr .id <<<"$out").qcow2 2>/dev/null"

# 5. An agent killed during SWITCH: after restart, every member on its branch.
echo "latency point_disks=3000" >> "$T/host-a/sim.txt"
(ls_cli snapshot revert "$C" --yes >/dev/null 2>&1 || true) &
bg=$!
for _ in $(seq 1 200); do grep -q 'REVERT_SWITCH' "$T/host-b/agent.log" && break; sleep 0.05; done
sleep 0.5
kill9_agent host-a
wait "$bg" || true
sed -i '/latency point_disks=3000/d' "$T/host-a/sim.txt"
start_agent host-a
ls_cli recover >/dev/null || true
check "agent killed in SWITCH: every member back on its pre-revert branch, no mix" [ "$(snapshot_disks)" = "$before" ]
check "... all running" bash -c "for f in $T/host-*/sim/*.state; do grep -q '^state 0' \$f || exit 1; done"
check "... nothing in doubt" [ "$(ls_cli agents --json | jq '[.[].in_doubt] | add')" = 0 ]

# 5b. lockstepd killed after SWITCH (disks on the cut, members stopped): on
# restart, presumed abort puts every member back on its branch and starts it.
before=$(snapshot_disks)
kill9_lockstepd; start_lockstepd revert-after-switch
(ls_cli snapshot revert "$C" --yes >/dev/null 2>&1 || true) &
bg=$!
for _ in $(seq 1 200); do grep -q 'failpoint revert-after-switch reached' "$T/lockstepd.log" && break; sleep 0.05; done
check "coordinator stopped after SWITCH" grep -q 'failpoint revert-after-switch reached' "$T/lockstepd.log"
check "... members are off, on the cut's overlays" bash -c "[ '$(state_of host-a web1)' = 2 ] && [ '$(cur host-a web1)' != '$(echo "$before" | awk '$2=="web1" {print $3}')' ]"
kill9_lockstepd
wait "$bg" || true
start_lockstepd
ls_cli recover >/dev/null || true
check "... restart: every member back on its pre-revert branch" [ "$(snapshot_disks)" = "$before" ]
check "... and running" bash -c "for f in $T/host-*/sim/*.state; do grep -q '^state 0' \$f || exit 1; done"
check "... the revert is aborted in the catalog" bash -c "'$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot list shop --json | jq -e '[.[] | select(.kind==\"pre-revert\")][0].state == \"aborted\"' >/dev/null"

# 6. A member that was off at revert time stays off.
sed -i 's/^state 0/state 2/' "$T/host-b/sim/web2.state"
out=$(ls_cli snapshot revert "$C" --yes --json) && rc=0 || rc=$?
check "revert with web2 shut off: exit 0" [ "$rc" = 0 ]
check "... web2 stays off" [ "$(state_of host-b web2)" = 2 ]
check "... the others run" [ "$(state_of host-a web1)$(state_of host-b db2)" = 00 ]

# 7. Refusals.
ls_cli snapshot revert "$C" >/dev/null 2>&1 </dev/null && rc=0 || rc=$?
check "revert without --yes off a terminal: refused, exit 2" [ "$rc" = 2 ]
ls_cli snapshot revert nosuch --yes >/dev/null 2>&1 && rc=0 || rc=$?
check "revert to an unknown cut: exit 2" [ "$rc" = 2 ]

finish
