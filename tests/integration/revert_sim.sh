#!/usr/bin/env bash
# revert_sim: cluster-wide revert and undo through lockstepd and 2 real agent
# processes (sim backend): tier order, all-or-nothing, bad images, a failure
# after SWITCH, an agent killed during SWITCH, members that were off.
. "$(dirname "$0")/lib.sh"
need_failpoints

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
# The overlay a revert REV makes for web1's vda beside IMAGE: named for the VM,
# the disk and the revert, never for the image it sits on.
revert_ovl() { echo "$(dirname "$1")/web1-vda.$2.qcow2"; }

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
check "web1 runs on a new overlay over A's image" [ "$(cur host-a web1)" = "$(revert_ovl "$imgA_web1" "$R")" ]
check "... backed by A's image" grep -q "^backing $(revert_ovl "$imgA_web1" "$R") $imgA_web1\$" "$T/host-a/sim/web1.state"
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
check "... web1 on a second new overlay over A's image" [ "$(cur host-a web1)" = "$(revert_ovl "$imgA_web1" "$R2")" ]
out=$(ls_cli snapshot revert "$B" --yes --json) && rc=0 || rc=$?
check "revert to B, a cut on another branch: exit 0 ($(jqr .reason <<<"$out"))" [ "$rc" = 0 ]
R3=$(jqr .id <<<"$out")
check "... web1 on a new overlay over B's image" [ "$(cur host-a web1)" = "$(revert_ovl "$imgB_web1" "$R3")" ]
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

# 3b. An agent down: the revert ends before PREPARE, nothing sent, nothing to
# tell anyone afterwards (it does not wait out PREPARE's deadline, nor tell
# host-b the abort until it is back).
stop_agent host-b
out=$(ls_cli snapshot revert "$C" --yes --json) && rc=0 || rc=$?
check "agent down: exit 1, aborted and finished, the reason names host-b and says nothing was touched" [ "$rc/$(jqr .state <<<"$out")/$(jq '.reason | test("agent \"host-b\": not connected: .*nothing was sent, nothing touched")' <<<"$out")" = 1/aborted/true ]
aud=$(ls_cli audit --limit 1000 --json)
check "... not one command sent for it (the operations before it: some)" [ "$(jq --arg t "$(jqr .id <<<"$out")" '[.[] | select(.dir == "sent" and .txid == $t)] | length' <<<"$aud")/$(jq '[.[] | select(.dir == "sent")] | length > 0' <<<"$aud")" = 0/true ]
check "... nothing touched, all running" bash -c "[ '$(snapshot_disks | md5sum)' = '$(echo "$before" | md5sum)' ] && for f in $T/host-*/sim/*.state; do grep -q '^state 0' \$f || exit 1; done"
start_agent host-b

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
# host-a's switch of its last member is held by the sim and the agent killed there.
last=$(awk '$1 == "domain" { v = $2 } END { print v }' "$T/host-a/sim.txt")
echo "hold point_disks $last" >> "$T/host-a/sim.txt"
(ls_cli snapshot revert "$C" --yes >/dev/null 2>&1 || true) &
bg=$!
check "held in SWITCH on host-a" wait_for 60 test -e "$T/host-a/sim/held.point_disks.$last"
kill9_agent host-a
sed -i "/hold point_disks $last/d" "$T/host-a/sim.txt"
rm -f "$T/host-a/sim/held.point_disks.$last" # the killed agent could not remove it
# Back while lockstepd decides: its ABORT reaches the restarted agent instead
# of three step timeouts of a dead one.
start_agent host-a
wait "$bg" || true
ls_cli recover >/dev/null || true
check "agent killed in SWITCH: every member back on its pre-revert branch, no mix" [ "$(snapshot_disks)" = "$before" ]
check "... all running" bash -c "for f in $T/host-*/sim/*.state; do grep -q '^state 0' \$f || exit 1; done"
check "... nothing in doubt" [ "$(ls_cli agents --json | jq '[.[].in_doubt] | add')" = 0 ]

# 5b. lockstepd killed after SWITCH (disks on the cut, members stopped): on
# restart, presumed abort puts every member back on its branch and starts it.
before=$(snapshot_disks)
kill9_lockstepd; start_lockstepd revert-after-switch
"$LOCKSTEP_BIN" -c "$T/coordinator.yaml" snapshot revert "$C" --yes >/dev/null 2>&1 &
bg=$!
for _ in $(seq 1 200); do grep -q 'failpoint revert-after-switch reached' "$T/lockstepd.log" && break; sleep 0.05; done
check "coordinator stopped after SWITCH" grep -q 'failpoint revert-after-switch reached' "$T/lockstepd.log"
check "... members are off, on the cut's overlays" bash -c "[ '$(state_of host-a web1)' = 2 ] && [ '$(cur host-a web1)' != '$(echo "$before" | awk '$2=="web1" {print $3}')' ]"
kill9_lockstepd
# The CLI would follow the dead lockstepd's operation for a minute more.
kill "$bg" 2>/dev/null || true
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

# 8. Pre-revert branches: deleted by "snapshot delete REVERT_ID" and by
# retention (keep_branches); the cuts they pinned can go then, and at the end
# every image file is in a VM's chain: nothing leaked.
kept_branches() { ls_cli snapshot list shop --json | jq -r '.[] | select(.kind == "pre-revert" and .state == "committed") | .id'; }
branch_tops() { ls_cli snapshot show "$1" --json | jq -r '.members[] | .disks[] | .image'; }
# Every sim image file of a VM that its chain (active layer down) does not hold.
leaked() {
        local h vm f cur chain
        for hv in $VMS; do
                h=${hv%%:*} vm=${hv#*:}
                chain=" $(cur "$h" "$vm")"
                cur=$(cur "$h" "$vm")
                while b=$(awk -v p="$cur" '$1 == "backing" && $2 == p { print $3 }' "$T/$h/sim/$vm.state") && [ -n "$b" ]; do
                        chain+=" $b"
                        cur=$b
                done
                for f in "$T/$h/sim/img/$vm"-*; do
                        [[ " $chain " == *" $f "* ]] || echo "$f"
                done
        done
}
mapfile -t branches < <(kept_branches)
check "reverts R2, R3, the undo and the revert with web2 off keep branches (${#branches[@]})" [ "${#branches[@]}" -ge 3 ]
out=$(ls_cli snapshot revert --undo "$R1" --yes 2>&1) && rc=0 || rc=$?
check "undo of an undone revert refused (exit 2), saying why" bash -c "[ $rc = 2 ] && grep -q 'put back already' <<<'$out'"
victim=$R2
mapfile -t tops < <(branch_tops "$victim")
disks_now=$(snapshot_disks)
out=$(ls_cli snapshot delete "$victim" --json) && rc=0 || rc=$?
check "delete the branch of R2: exit 0" [ "$rc" = 0 ]
check "... listed as deleted" [ "$(ls_cli snapshot show "$victim" --json | jq -r .state)" = deleted ]
check "... its files gone (${#tops[@]} tops)" bash -c "for f in ${tops[*]}; do [ ! -e \$f ] || exit 1; done"
check "... what the VMs run on untouched" [ "$(snapshot_disks)" = "$disks_now" ]
check "... every chain still valid" bash -c "for f in $T/host-*/sim/*.state; do for p in \$(awk '/^disk|^backing/ {print \$NF}' \$f); do [ -e \$p ] || exit 1; done; done"
ls_cli snapshot delete "$victim" >/dev/null 2>&1 && rc=0 || rc=$?
check "deleting it again: refused, exit 2" [ "$rc" = 2 ]
out=$(ls_cli snapshot revert --undo "$victim" --yes 2>&1) && rc=0 || rc=$?
check "undo of a revert whose branch is deleted: refused, exit 2" bash -c "[ $rc = 2 ] && grep -q 'deleted' <<<'$out'"
out=$(ls_cli snapshot delete "$A" 2>&1) && rc=0 || rc=$?
check "A is still pinned by the other kept branches" grep -q "cut \"$A\" is older than" <<<"$out"

# keep_branches: 1 through retention, applied by prune.
echo "    retention: {keep_last: 1, keep_branches: 1}" >> "$T/coordinator.yaml"
ls_cli reload >/dev/null
n_before=$(kept_branches | wc -l)
out=$(ls_cli prune shop --dry-run --json)
check "prune --dry-run: $((n_before - 1)) branch(es) would go, the newest stays" [ "$(jq '[.cuts[] | select(.kind == "branch" and .action == "remove")] | length' <<<"$out")/$(jq -r '[.cuts[] | select(.kind == "branch" and .action == "keep")][0].id' <<<"$out")" = "$((n_before - 1))/$(kept_branches | head -1)" ]
ls_cli prune shop >/dev/null && rc=0 || rc=$?
check "prune: exit 0" [ "$rc" = 0 ]
check "... one branch kept" [ "$(kept_branches | wc -l)" = 1 ]
for id in $(kept_branches); do ls_cli snapshot delete "$id" >/dev/null; done
check "the last branch deleted by hand" [ "$(kept_branches | wc -l)" = 0 ]
ls_cli prune shop >/dev/null && rc=0 || rc=$?
check "no branch left: prune removes the cuts they pinned (keep_last 1)" [ "$rc/$(ls_cli snapshot list shop --json | jq '[.[] | select(.kind == "snapshot" and .state == "committed")] | length')" = 0/1 ]
check "... nothing leaked: every image file is in its VM's chain" [ -z "$(leaked)" ]
check "... no branch record left on the agents" bash -c "[ -z \"\$(ls $T/host-*/journal/branches/ 2>/dev/null | grep -v '^/\|^\$')\" ]"

# 9. A group reverted again and again stays bounded: once a revert's branch is
# deleted, deleting the cut it reverted to merges the revert's own overlay into
# that cut's image (the cut's layer left with the branch). A delete that fails
# on one host and is run again never merges a live cut's data.
sed -i 's/^state 2/state 0/' "$T/host-b/sim/web2.state"
ls_cli snapshot create shop --name X9 >/dev/null
X9=$(id_of X9)
imgX9_web1=$(ls_cli snapshot show "$X9" --json | jq -r '.members[] | select(.vm=="web1") | .disks[0].image')
out=$(ls_cli snapshot revert "$X9" --yes --json) && rc=0 || rc=$?
R9=$(jqr .id <<<"$out")
oR9=$(revert_ovl "$imgX9_web1" "$R9")
check "revert to X9: web1 on the revert's overlay" [ "$rc/$(cur host-a web1)" = "0/$oR9" ]
ls_cli snapshot create shop --name Z9 >/dev/null
Z9=$(id_of Z9)
ls_cli snapshot delete "$R9" >/dev/null && rc=0 || rc=$?
check "the branch of R9 deleted" [ "$rc" = 0 ]
echo "fail delete web2" >> "$T/host-b/sim.txt"
ls_cli snapshot delete "$X9" >/dev/null 2>&1 && rc=0 || rc=$?
sed -i '/fail delete web2/d' "$T/host-b/sim.txt"
check "delete X9 failing on host-b: exit 1" [ "$rc" = 1 ]
check "... on host-a the revert's overlay was merged into X9's image" bash -c "[ ! -e $oR9 ] && grep -q '^backing .* $imgX9_web1\$' $T/host-a/sim/web1.state"
zimg=$(ls_cli snapshot show "$Z9" --json | jq -r '.members[] | select(.vm=="web1") | .disks[0].image')
check "... and Z9's image on host-a is X9's image now (same content)" [ "$zimg" = "$imgX9_web1" ]
chain_before=$(snapshot_disks; cat $T/host-a/sim/web1.state)
out=$(ls_cli snapshot delete "$X9" --json) && rc=0 || rc=$?
check "deleting X9 again finishes it: exit 0" [ "$rc/$(jqr .state <<<"$out")" = 0/deleted ]
check "... host-a's chain untouched by the retry (Z9's data is above X9's image now)" bash -c "grep -q '^backing .* $imgX9_web1\$' $T/host-a/sim/web1.state && [ -e $imgX9_web1 ]"
check "... host-b's revert overlay merged too" bash -c "! ls $T/host-b/sim/img/*.$R9.qcow2 2>/dev/null"
check "... Z9 still committed" [ "$(ls_cli snapshot show "$Z9" --json | jq -r .state)" = committed ]
check "... no revert overlay left in any chain, every chain valid" bash -c "! grep -q '$R9' $T/host-*/sim/*.state && for f in $T/host-*/sim/*.state; do for p in \$(awk '/^disk|^backing/ {print \$NF}' \$f); do [ -e \$p ] || exit 1; done; done"
check "... nothing leaked" [ -z "$(leaked)" ]

# 7. Refusals.
ls_cli snapshot revert "$C" >/dev/null 2>&1 </dev/null && rc=0 || rc=$?
check "revert without --yes off a terminal: refused, exit 2" [ "$rc" = 2 ]
ls_cli snapshot revert nosuch --yes >/dev/null 2>&1 && rc=0 || rc=$?
check "revert to an unknown cut: exit 2" [ "$rc" = 2 ]

finish
