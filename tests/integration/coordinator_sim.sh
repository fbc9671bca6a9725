#!/usr/bin/env bash
# coordinator_sim: lockstepd + the lockstep CLI against 3 real agent processes
# (sim backend) on loopback: cuts, faults, crashes of the coordinator.
. "$(dirname "$0")/lib.sh"
need_failpoints

hosts=(host-a host-b host-c)
GROUP_YAML="  - name: shop
    tiers:"
i=0
for h in "${hosts[@]}"; do
        doms=()
        for v in 1 2 3 4 5; do doms+=("domain ${h#host-}vm$v"); done
        doms+=("domain ${h#host-}noga ga=no")
        sim_agent "$h" "${doms[@]}" "latency freeze=30 snapshot=20 thaw=5"
        # Guest hooks are the agent's own, per VM: vm1 of each host has "flush";
        # bvm2 has none (its member of "hooked-bad" names one it lacks).
        cat >> "$T/$h/agent.yaml" <<YAML
vms:
  - name: ${h#host-}vm1
    hooks:
      - name: flush
        pre_freeze: [/usr/bin/sync, --flushed, "a b; c"]
        post_thaw: [/usr/bin/echo, resumed]
        timeout_s: 5
YAML
        start_agent "$h"
done
GROUP_YAML+="
      - name: web
        members: [avm1@host-a, avm2@host-a, bvm1@host-b, cvm1@host-c, cvm2@host-c]
      - name: app
        members: [avm3@host-a, bvm2@host-b, bvm3@host-b, cvm3@host-c]
      - name: db
        members: [avm4@host-a, avm5@host-a, bvm4@host-b, bvm5@host-b, cvm4@host-c, cvm5@host-c]
    lease_s: 10
  - name: crashy
    members: [anoga@host-a, bvm1@host-b]
    crash_consistent: [anoga@host-a]
  - name: noga
    members: [anoga@host-a, bvm1@host-b]
  - name: hooked
    members: [avm1@host-a, bvm1@host-b]
    hook: flush
  - name: hooked-bad
    members: [bvm1@host-b, bvm2@host-b]
    hook: flush"
coordinator "${hosts[@]}"
start_lockstepd

# idof NAME: the txid of the cut named NAME; overlay files carry it.
idof() {
        local id
        id=$(ls_cli snapshot list --json | jq -r --arg n "$1" '[.[] | select(.name==$n) | .id][0] // empty')
        echo "${id:-no-cut-named-$1}"
}

# 1. 3 agents x 5 VMs: committed, catalog complete, --json parsed back.
out=$(ls_cli snapshot create shop --name first --json) && rc=0 || rc=$?
check "snapshot create exits 0 when committed" [ "$rc" = 0 ]
check "state committed" [ "$(jqr .state <<<"$out")" = committed ]
check "15 members recorded" [ "$(jq '.members | length' <<<"$out")" = 15 ]
check "every member ok with timings" [ "$(jq '[.members[] | .code == "OK" and .frozen_ms > 0 and .snapshot_ms > 0] | all' <<<"$out")" = true ]
check "every member has its overlay" [ "$(jq '[.members[] | (.disks | length) == 1] | all' <<<"$out")" = true ]
check "group window and skew reported" [ "$(jq '.group_window_ms > 0 and .freeze_skew_ms >= 0' <<<"$out")" = true ]
# One FREEZE round per tier across the group: every member of a tier was
# frozen (on every host) before any member of the next one began to freeze.
check "tiers frozen in order across all hosts" [ "$(jq '[.members[] | {tier, s: .frozen_at_us, e: (.frozen_at_us + .freeze_ms * 1000)}]
        | [range(0; 2) as $k | ([.[] | select(.tier == $k) | .e] | max) <= ([.[] | select(.tier == $k + 1) | .s] | min)] | all' <<<"$out")" = true ]
id=$(jqr .id <<<"$out")
check "snapshot show returns the same cut" [ "$(ls_cli snapshot show "$id" --json | jq -c '[.id,.state,(.members|length)]')" = "[\"$id\",\"committed\",15]" ]
check "snapshot list has it" [ "$(ls_cli snapshot list shop --json | jq -r '.[0].id')" = "$id" ]
check "nothing frozen afterwards" nothing_frozen
check "overlays exist on every agent" bash -c "ls $T/host-*/sim/img/*.$(idof first).qcow2 | wc -l | grep -qx 15"
out=$(ls_cli agents --json)
check "agents: 3 reachable with version and key" [ "$(jq '[.[] | .reachable and .version != "" and (.key_fingerprint | length) == 23] | all and length == 3' <<<"$out")" = true ]
check "groups lists shop" [ "$(ls_cli groups --json | jq -r '.[0].tiers | map(.name) | join(",")')" = "web,app,db" ]
check "text output names the window" bash -c "'$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot show $id | grep -q 'group window'"
check "catalog audit has every command and reply" [ "$(sqlite3 "$T/catalog.db" "select count(*) from audit where txid='$id'" 2>/dev/null || echo 0)" -ge 18 ]

# 2. One agent refuses freeze: aborted, nothing frozen or pending anywhere.
echo "fail freeze bvm3" >> "$T/host-b/sim.txt"
out=$(ls_cli snapshot create shop --name f2 --json) && rc=0 || rc=$?
check "refused freeze: exit 1" [ "$rc" = 1 ]
check "... aborted with the reason naming VM and host" bash -c "jq -r .reason <<<'$(jq -c . <<<"$out")' | grep -q 'bvm3@host-b'"
check "... nothing frozen" nothing_frozen
check "... no overlay left" bash -c "! ls $T/host-*/sim/img/*.$(idof f2).qcow2 2>/dev/null"
sed -i '/fail freeze bvm3/d' "$T/host-b/sim.txt"

# 3. One agent fails one snapshot: aborted, the others' overlays discarded.
echo "fail snapshot cvm4" >> "$T/host-c/sim.txt"
out=$(ls_cli snapshot create shop --name f3 --json) && rc=0 || rc=$?
check "failed snapshot: exit 1" [ "$rc" = 1 ]
check "... nothing frozen" nothing_frozen
check "... no overlay left on any agent" bash -c "! ls $T/host-*/sim/img/*.$(idof f3).qcow2 2>/dev/null"
sed -i '/fail snapshot cvm4/d' "$T/host-c/sim.txt"

# 4. One agent killed during FREEZE: aborted; its guardian thaws its guests.
# host-a is held inside FREEZE (its next hypervisor call waits on the sim's
# lock) and killed there.
hold_sim host-a
(exec {HOLD_FD}>&-; ls_cli snapshot create shop --name f4 --json > "$T/f4.json" && echo 0 > "$T/f4.rc" || echo $? > "$T/f4.rc") &
bg=$!
wait_for 60 sim_blocked host-a || true
kill9_agent host-a
release_sim
wait "$bg" || true
check "agent killed in FREEZE: exit 1" [ "$(cat "$T/f4.rc")" = 1 ]
wait_for 60 nothing_frozen || true
check "... nothing frozen anywhere" nothing_frozen
start_agent host-a
ls_cli recover >/dev/null || true
check "... after restart and recover, no overlay left" bash -c "! ls $T/host-*/sim/img/*.$(idof f4).qcow2 2>/dev/null"
check "... and nothing in doubt" [ "$(ls_cli agents --json | jq '[.[].in_doubt] | add')" = 0 ]

# 5. One agent's replies dropped (it answers after the step deadline): aborted cleanly.
echo "latency snapshot=6000" >> "$T/host-b/sim.txt"
out=$(ls_cli snapshot create shop --name f5 --json) && rc=0 || rc=$?
sed -i '/latency snapshot=6000/d' "$T/host-b/sim.txt"
check "agent too slow in SNAPSHOT: exit 1" [ "$rc" = 1 ]
# host-b finishes its late snapshot after the cut was aborted: wait for that.
wait_for 60 nothing_frozen || true
check "... nothing frozen" nothing_frozen
settled() { ls_cli recover >/dev/null 2>&1 || true; ! ls $T/host-*/sim/img/*.$(idof f5).qcow2 >/dev/null 2>&1; }
wait_for 60 settled || true
check "... no overlay left once settled" bash -c "! ls $T/host-*/sim/img/*.$(idof f5).qcow2 2>/dev/null"

# 6. A reply signed by the wrong key is ignored and logged.
cp "$T/host-c.pub" "$T/host-c.pub.real"
keygen impostor; cp "$T/impostor.pub" "$T/host-c.pub"
kill9_lockstepd; start_lockstepd
out=$(ls_cli snapshot create shop --name f6 --json) && rc=0 || rc=$?
check "reply under the wrong key: aborted" [ "$rc" = 1 ]
check "... logged as ignored" grep -q 'reply ignored' "$T/lockstepd.log"
check "... audit records it" [ "$(sqlite3 "$T/catalog.db" "select count(*) from audit where dir='ignored'" 2>/dev/null || echo 0)" -ge 1 ]
cp "$T/host-c.pub.real" "$T/host-c.pub"
kill9_lockstepd; start_lockstepd
ls_cli recover >/dev/null || true
check "... host-c's half was settled by recover" bash -c "! ls $T/host-c/sim/img/*.$(idof f6).qcow2 2>/dev/null"

# 7. lockstepd killed -9 right after SNAPSHOT: restart -> presumed abort, agents discard.
kill9_lockstepd; start_lockstepd after-snapshot
"$LOCKSTEP_BIN" -c "$T/coordinator.yaml" snapshot create shop --name f7 >/dev/null 2>&1 &
bg=$!
for _ in $(seq 1 600); do grep -q 'failpoint after-snapshot reached' "$T/lockstepd.log" && break; sleep 0.05; done
check "coordinator stopped after SNAPSHOT, before deciding" grep -q 'failpoint after-snapshot reached' "$T/lockstepd.log"
f7id=$(grep -o 'BEGIN    ls-[^:]*' "$T/lockstepd.log" | tail -1 | awk '{print $2}')
kill9_lockstepd
# The CLI would follow the dead lockstepd's operation for a minute more.
kill "$bg" 2>/dev/null || true
wait "$bg" || true
check "... the agents hold the cut pending" bash -c "ls $T/host-*/sim/img/*.${f7id:-none}.qcow2 | wc -l | grep -qx 15"
start_lockstepd
ls_cli recover >/dev/null || true # recovery at start runs beside the control socket: wait for it
check "... restart: presumed abort" [ "$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name=="f7") | .state')" = aborted ]
check "... agents discarded their overlays" bash -c "! ls $T/host-*/sim/img/*.$(idof f7).qcow2 2>/dev/null"
check "... nothing frozen" nothing_frozen

# 8. lockstepd killed -9 right after logging COMMIT: restart -> commit completes.
kill9_lockstepd; start_lockstepd after-decide
"$LOCKSTEP_BIN" -c "$T/coordinator.yaml" snapshot create shop --name f8 >/dev/null 2>&1 &
bg=$!
for _ in $(seq 1 600); do grep -q 'failpoint after-decide reached' "$T/lockstepd.log" && break; sleep 0.05; done
check "coordinator stopped after logging COMMIT, before sending it" grep -q 'DECIDE   COMMIT logged' "$T/lockstepd.log"
kill9_lockstepd
# The CLI would follow the dead lockstepd's operation for a minute more.
kill "$bg" 2>/dev/null || true
wait "$bg" || true
r=$(send host-a status)
check "... agents hold it in doubt, snapped" [ "$(jq -r '[.in_doubt[] | .state] | unique | join(",")' <<<"$r")" = TXN_SNAPPED ]
start_lockstepd
ls_cli recover >/dev/null || true
check "... restart: commit completes" [ "$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name=="f8") | .state')" = committed ]
check "... overlays kept on every agent" bash -c "ls $T/host-*/sim/img/*.$(idof f8).qcow2 | wc -l | grep -qx 15"
check "... nothing in doubt" [ "$(ls_cli agents --json | jq '[.[].in_doubt] | add')" = 0 ]

# 9. Delete: merge a cut's overlays while the VMs run; neighbours stay intact.
ls_cli snapshot create shop --name dA >/dev/null
ls_cli snapshot create shop --name dB >/dev/null
idA=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name=="dA") | .id')
idB=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name=="dB") | .id')
out=$(ls_cli snapshot delete "$idB" --json) && rc=0 || rc=$?
check "delete the newest cut: exit 0" [ "$rc" = 0 ]
check "... marked deleted" [ "$(ls_cli snapshot show "$idB" --json | jq -r .state)" = deleted ]
check "... its overlays merged and gone on every agent" bash -c "! ls $T/host-*/sim/img/*.$(idof dB).qcow2 2>/dev/null"
check "... VMs write to cut A's overlay again" grep -q "$(idof dA).qcow2\$" "$T/host-b/sim/bvm1.state"
check "... cut A untouched" bash -c "ls $T/host-*/sim/img/*.$(idof dA).qcow2 | wc -l | grep -qx 15"
ls_cli snapshot create shop --name dC >/dev/null
idC=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name=="dC") | .id')
out=$(ls_cli snapshot delete "$idA" --json) && rc=0 || rc=$?
check "delete an older cut under a newer one: exit 0" [ "$rc" = 0 ]
check "... its overlays gone" bash -c "! ls $T/host-*/sim/img/*.$(idof dA).qcow2 2>/dev/null"
check "... the newer cut C now sits on A's image" bash -c "grep -q 'backing .*$(idof dC).qcow2 .*$(idof f8).qcow2\$' $T/host-a/sim/avm1.state"
check "... cut C still committed and its overlays in place" bash -c "[ \"\$('$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot show $idC --json | jq -r .state)\" = committed ] && ls $T/host-*/sim/img/*.$(idof dC).qcow2 | wc -l | grep -qx 15"
echo "fail delete bvm2" >> "$T/host-b/sim.txt"
out=$(ls_cli snapshot delete "$idC" --json) && rc=0 || rc=$?
check "delete failing on one member: exit 1" [ "$rc" = 1 ]
check "... cut marked delete-failed, reason names the VM" bash -c "[ \"\$(jq -r .state <<<'$(jq -c . <<<"$out")')\" = delete-failed ] && jq -r .reason <<<'$(jq -c . <<<"$out")' | grep -q bvm2@host-b"
check "... every chain still valid (files of its layers exist)" bash -c "for f in $T/host-*/sim/*.state; do for p in \$(awk '/^disk|^backing/ {print \$NF}' \$f); do case \$p in *-vda.qcow2) ;; *) [ -e \$p ] || exit 1;; esac; done; done"
sed -i '/fail delete bvm2/d' "$T/host-b/sim.txt"
out=$(ls_cli snapshot delete "$idC" --json) && rc=0 || rc=$?
check "... deleting again finishes it" [ "$rc/$(jq -r .state <<<"$out")" = 0/deleted ]
check "... no overlay of C left" bash -c "! ls $T/host-*/sim/img/*.$(idof dC).qcow2 2>/dev/null"
ls_cli snapshot delete "$idC" >/dev/null 2>&1 && rc=0 || rc=$?
check "deleting a deleted cut is refused: exit 2" [ "$rc" = 2 ]
# A delete with host-c down merges nothing anywhere (the others' overlays
# merged alone would leave the cut half gone): refused as a busy group is.
ls_cli snapshot create shop --name dE >/dev/null
idE=$(ls_cli snapshot list shop --json | jq -r '.[] | select(.name=="dE") | .id')
stop_agent host-c
ls_cli snapshot delete "$idE" 2>"$T/down.err" >/dev/null && rc=0 || rc=$?
check "delete with host-c down: exit 2, the error names host-c and says nothing was touched" bash -c "[ $rc = 2 ] && grep -q 'agent \"host-c\": not connected: .*nothing was sent, nothing touched' $T/down.err"
check "... the cut still committed, every overlay in place (nothing merged on host-a or host-b)" bash -c "[ \"\$('$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot show $idE --json | jq -r .state)\" = committed ] && ls $T/host-*/sim/img/*.$(idof dE).qcow2 | wc -l | grep -qx 15"
start_agent host-c
out=$(ls_cli snapshot delete "$idE" --json) && rc=0 || rc=$?
check "... with host-c back, the delete goes through" [ "$rc/$(jq -r .state <<<"$out")" = 0/deleted ]
# The cut dD is held in FREEZE on host-a's sim lock while the delete is asked.
hold_sim host-a
(exec {HOLD_FD}>&-; ls_cli snapshot create shop --name dD >/dev/null 2>&1 || true) &
bg=$!
wait_for 60 sim_blocked host-a || true
ls_cli snapshot delete "$id" 2>"$T/busy.err" >/dev/null && rc=0 || rc=$?
release_sim
check "delete refused while a cut of the group runs, with the reason" bash -c "[ $rc = 2 ] && grep -q 'already running' $T/busy.err"
wait "$bg" || true

# 10. A member without a guest agent: paused when the config says so, else the cut fails.
# host-b (bvm1) is held in FREEZE on its sim's lock, so the cut cannot pass
# FREEZE: anoga, paused by host-a, stays paused until host-b is let go.
hold_sim host-b
(exec {HOLD_FD}>&-; ls_cli snapshot create crashy --json > "$T/crashy.json" 2>&1 || true) &
bg=$!
wait_for 60 eval 'sim_blocked host-b && paused host-a anoga' || true
check "crash-consistent member paused during the cut" paused host-a anoga
release_sim
wait "$bg" || true
check "... the cut committed" [ "$(jq -r .state "$T/crashy.json")" = committed ]
check "... the report says it was paused, not frozen" bash -c "jq -r '.members[] | select(.vm==\"anoga\") | .message' $T/crashy.json | grep -q 'paused, not frozen'"
check "... and it runs again" bash -c "! grep -q '^state 1' $T/host-a/sim/anoga.state"
out=$(ls_cli snapshot create noga --json) && rc=0 || rc=$?
check "same member without crash_consistent: the cut fails (exit 1)" [ "$rc" = 1 ]
check "... with E_NO_GUEST_AGENT" [ "$(jq -r '.members[] | select(.vm=="anoga") | .code' <<<"$out")" = E_NO_GUEST_AGENT ]
check "... nothing left paused or frozen" nothing_frozen

# 11. Guest hooks, named by the group, defined per VM in agent.yaml: run before
# each freeze and after each thaw as an argv (no shell); a failed pre-freeze hook is a no.
out=$(ls_cli snapshot create hooked --json) && rc=0 || rc=$?
check "hooked group: committed" [ "$rc/$(jqr .state <<<"$out")" = 0/committed ]
check "... pre-freeze argv of agent.yaml ran in each guest" bash -c "grep -qx 'avm1 flush: /usr/bin/sync --flushed a b; c' $T/host-a/sim/hooks.log && grep -qx 'bvm1 flush: /usr/bin/sync --flushed a b; c' $T/host-b/sim/hooks.log"
check "... post-thaw argv ran in each guest" bash -c "grep -qx 'avm1 flush: /usr/bin/echo resumed' $T/host-a/sim/hooks.log && grep -qx 'bvm1 flush: /usr/bin/echo resumed' $T/host-b/sim/hooks.log"
runs=$(wc -l < "$T/host-b/sim/hooks.log")
out=$(ls_cli snapshot create hooked-bad --json) && rc=0 || rc=$?
check "a hook name bvm2's agent does not define: the cut is refused (exit 1)" [ "$rc" = 1 ]
check "... E_HOOK_FAILED on bvm2, naming vm@host and the hook" [ "$(jq -r '.members[] | select(.vm=="bvm2") | .code + " " + .message' <<<"$out")" = 'E_HOOK_FAILED bvm2@host-b: freeze: unknown hook "flush": agent.yaml defines no hook of that name for this VM (vms[].hooks[])' ]
check "... host-b froze no guest and ran no hook" bash -c "! grep -q 'txid=$(jqr .id <<<"$out") step=FREEZE vm=' $T/host-b/agent.log && [ \$(wc -l < $T/host-b/sim/hooks.log) = $runs ]"
check "... nothing left frozen" nothing_frozen
out=$(ls_cli check hooked-bad) && rc=0 || rc=$?
named=$(grep -c '^FAIL  bvm2@host-b .*E_HOOK_FAILED.*check: unknown hook "flush"' <<<"$out" || true)
check "check reports the unknown hook: exit 1, bvm2 named, bvm1 OK" [ "$rc/$named/$(grep -c '^OK    bvm1@host-b' <<<"$out")" = 1/1/1 ]
echo "fail guest_run bvm1" >> "$T/host-b/sim.txt"
out=$(ls_cli snapshot create hooked --json) && rc=0 || rc=$?
sed -i '/fail guest_run bvm1/d' "$T/host-b/sim.txt"
check "failing pre-freeze hook: the cut aborts (exit 1)" [ "$rc" = 1 ]
check "... with E_HOOK_FAILED on that member" [ "$(jq -r '.members[] | select(.vm=="bvm1") | .code' <<<"$out")" = E_HOOK_FAILED ]
check "... nothing left frozen" nothing_frozen

# 11b. Preflight: lockstep check validates without freezing anything.
out=$(ls_cli check shop) && rc=0 || rc=$?
check "check of a healthy group: exit 0, 15 OK lines" [ "$rc/$(grep -c '^OK ' <<<"$out")" = 0/15 ]
echo "nospace bvm2" >> "$T/host-b/sim.txt"
out=$(ls_cli check shop) && rc=0 || rc=$?
named=$(grep -c '^FAIL  bvm2@host-b .*E_NO_SPACE' <<<"$out" || true)
check "check with bvm2's directory full: exit 1, bvm2 named with E_NO_SPACE" [ "$rc/$named" = 1/1 ]
check "... nothing frozen by the check" nothing_frozen
sed -i '/nospace bvm2/d' "$T/host-b/sim.txt"
out=$(ls_cli check noga --json) && rc=0 || rc=$?
check "check of a member without guest agent: exit 1, E_NO_GUEST_AGENT on anoga" [ "$rc/$(jq -r '.ok, (.members[] | select(.vm == "anoga") | .code)' <<<"$out" | tr '\n' ' ')" = "1/false E_NO_GUEST_AGENT " ]
out=$(ls_cli check crashy) && rc=0 || rc=$?
check "... the same member listed crash-consistent: exit 0" [ "$rc" = 0 ]
out=$(ls_cli check shop --lease 120) && rc=0 || rc=$?
named=$(grep -c "above this agent's lease_max_s 60" <<<"$out" || true)
check "check with a lease above lease_max_s 60: exit 1, saying so on every member" [ "$rc/$named" = 1/15 ]
stop_agent host-c
out=$(ls_cli check shop --json) && rc=0 || rc=$?
check "check with host-c down: exit 1, its members UNREACHABLE" [ "$rc/$(jq '[.members[] | select(.agent == "host-c") | .code == "UNREACHABLE"] | all' <<<"$out")/$(jq '[.members[] | select(.agent != "host-c") | .ok] | all' <<<"$out")" = 1/true/true ]
# A cut with host-c down ends before any FREEZE: the others' guests are not
# held frozen while host-c's FREEZE times out.
out=$(ls_cli snapshot create shop --name cdown --json) && rc=0 || rc=$?
check "cut with host-c down: exit 1, aborted and finished (not \"aborting\"), the reason names host-c and says nothing was frozen" [ "$rc/$(jqr .state <<<"$out")/$(jq '.reason | test("agent \"host-c\": not connected: .*nothing was sent, nothing frozen")' <<<"$out")" = 1/aborted/true ]
aud=$(ls_cli audit --limit 1000 --json)
check "... not one command sent for it (the cuts before it: some)" [ "$(jq --arg t "$(jqr .id <<<"$out")" '[.[] | select(.dir == "sent" and .txid == $t)] | length' <<<"$aud")/$(jq '[.[] | select(.dir == "sent")] | length > 0' <<<"$aud")" = 0/true ]
check "... nothing frozen" nothing_frozen
ls_cli recover >/dev/null 2>&1 || true
check "agents after a health pass with host-c down: host-c unreachable, not connected (refused), the others reachable" [ "$(ls_cli agents --json | jq -c '[.[] | [.id, .reachable, (.last_error | test("not connected: .*refused"; "i"))]]')" = '[["host-a",true,false],["host-b",true,false],["host-c",false,true]]' ]
start_agent host-c
ls_cli check nosuch >/dev/null 2>&1 && rc=0 || rc=$?
check "check of an unknown group: exit 2" [ "$rc" = 2 ]

# 11c. Hook text in coordinator.yaml (before hooks moved to agent.yaml) is refused at load.
sed 's|^    hook: flush$|    hooks: {pre_freeze: "sync; echo flushed", timeout_s: 5}|' "$T/coordinator.yaml" > "$T/old-hooks.yaml"
line=$(grep -n 'hooks: {pre_freeze' "$T/old-hooks.yaml" | head -1 | cut -d: -f1)
out=$("$LOCKSTEPD_BIN" -c "$T/old-hooks.yaml" --check-config 2>&1) && rc=0 || rc=$?
old_hooks_refused() {
        [ "$rc" != 0 ] && grep -qF "$T/old-hooks.yaml:$line: groups[3].hooks: hook commands are no longer set here: define them per VM in each agent's agent.yaml (vms[].hooks[])" <<<"$out"
}
check "coordinator.yaml with hook text: refused at load on its line, pointing at agent.yaml" old_hooks_refused

# 12. Bad input: unknown group, bad mode, coordinator down.
ls_cli snapshot create nosuch >/dev/null 2>&1 && rc=0 || rc=$?
check "unknown group: exit 2" [ "$rc" = 2 ]
ls_cli snapshot create shop --mode sideways >/dev/null 2>&1 && rc=0 || rc=$?
check "bad mode: exit 2" [ "$rc" = 2 ]
kill9_lockstepd
ls_cli snapshot list >/dev/null 2>&1 && rc=0 || rc=$?
check "coordinator unreachable: exit 3" [ "$rc" = 3 ]

finish
