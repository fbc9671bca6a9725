#!/usr/bin/env bash
# agent_sim: the agent's state machine, lease, guardian, journal and refusals,
# through a real lockstep-agent process (sim backend) and signed commands.
. "$(dirname "$0")/lib.sh"

sim_agent host-a \
        "domain web1 group=shop tier=web disks=vda,vdb" \
        "domain app1 group=shop tier=app" \
        "domain db1 group=shop tier=db" \
        "domain noga1 ga=no" \
        "domain paused1 state=paused" \
        "domain crash1 ga=no" \
        "latency freeze=20 snapshot=20 thaw=5"
start_agent host-a
SIMCFG=$T/host-a/sim.txt
inject() { echo "$*" >> "$SIMCFG"; }
uninject() { grep -vxF "$*" "$SIMCFG" > "$SIMCFG.new"; mv "$SIMCFG.new" "$SIMCFG"; }
none_frozen() { ! grep -q '^frozen 1' "$T"/host-a/sim/*.state; }

# 1. FREEZE -> SNAPSHOT -> COMMIT, every member frozen at the barrier.
r=$(send host-a freeze t1 s1 quiesce 10000 web1:0 app1:1 db1:2)
check "freeze votes yes" [ "$(jqr .code <<<"$r")" = OK ]
check "state FROZEN" [ "$(jqr .state <<<"$r")" = TXN_FROZEN ]
check "all three frozen at the barrier" bash -c "grep -q '^frozen 1' $T/host-a/sim/web1.state && grep -q '^frozen 1' $T/host-a/sim/app1.state && grep -q '^frozen 1' $T/host-a/sim/db1.state"
r2=$(send host-a freeze t1 s1 quiesce 10000 web1:0 app1:1 db1:2)
check "resent FREEZE gets the same reply" [ "$(jq -c .members <<<"$r")" = "$(jq -c .members <<<"$r2")" ]
r=$(send host-a snapshot t1)
check "snapshot ok" [ "$(jqr .code <<<"$r")" = OK ]
check "state SNAPPED" [ "$(jqr .state <<<"$r")" = TXN_SNAPPED ]
check "web1 has two disks snapshotted" [ "$(jq '.members[] | select(.vm=="web1") | .disks | length' <<<"$r")" = 2 ]
check "overlay files exist" test -f "$T/host-a/sim/img/web1-vda.t1.qcow2" -a -f "$T/host-a/sim/img/db1-vda.t1.qcow2"
check "thawed after snapshot" bash -c "! grep -q '^frozen 1' $T/host-a/sim/*.state"
check "timings reported" [ "$(jq '[.members[].timings // .members[] | .freeze_us > 0 and .snapshot_us > 0 and .thaw_us > 0 and .frozen_for_us > 0] | all' <<<"$r")" = true ]
check "back tier thawed first" [ "$(jq '(.members[] | select(.vm=="db1") | .thawed_at_us) < (.members[] | select(.vm=="web1") | .thawed_at_us)' <<<"$r")" = true ]
r2=$(send host-a snapshot t1)
check "resent SNAPSHOT gets the same reply" [ "$(jq -c .members <<<"$r")" = "$(jq -c .members <<<"$r2")" ]
r=$(send host-a commit t1)
check "commit" [ "$(jqr .state <<<"$r")" = TXN_COMMITTED ]
r=$(send host-a commit t1)
check "resent commit: same answer" [ "$(jqr .code <<<"$r")/$(jqr .state <<<"$r")" = OK/TXN_COMMITTED ]
r=$(send host-a abort t1 || true)
check "abort after commit refused" [ "$(jqr .code <<<"$r")" = E_BAD_STATE ]
check "domain now runs on the overlay" grep -q "^disk 0 .*/web1-vda.t1.qcow2$" "$T/host-a/sim/web1.state"
r=$(send host-a status)
check "nothing in doubt after commit" [ "$(jq '.in_doubt | length' <<<"$r")" = 0 ]

# 2. Illegal steps.
r=$(send host-a snapshot nosuch || true)
check "snapshot of unknown txn refused" [ "$(jqr .code <<<"$r")" = E_UNKNOWN_TXN ]
r=$(send host-a commit nosuch || true)
check "commit of unknown txn refused" [ "$(jqr .code <<<"$r")" = E_UNKNOWN_TXN ]
r=$(send host-a abort nosuch)
check "abort of unknown txn: presumed abort, ok" [ "$(jqr .code <<<"$r")" = OK ]
send host-a freeze t2 s2 quiesce 10000 web1:0 >/dev/null
r=$(send host-a commit t2 || true)
check "commit before snapshot refused" [ "$(jqr .code <<<"$r")" = E_BAD_STATE ]
check "still frozen after the refused commit" frozen host-a web1

# 3. A member in one transaction is refused by another.
r=$(send host-a freeze t3 s3 quiesce 10000 web1:0 app1:0 || true)
check "second transaction on a held member votes no" [ "$(jqr .code <<<"$r")" = E_FREEZE_FAILED ]
check "... with E_BUSY on that member" [ "$(jq -r '.members[] | select(.vm=="web1") | .code' <<<"$r")" = E_BUSY ]
check "... and the other member was not frozen" bash -c "! grep -q '^frozen 1' $T/host-a/sim/app1.state"
r=$(send host-a abort t2)
check "abort thaws" [ "$(jqr .state <<<"$r")" = TXN_ABORTED ]
check "web1 thawed by abort" bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"

# 4. Validation failures: nothing is frozen.
r=$(send host-a freeze t4 s4 quiesce 10000 web1:0 noga1:1 || true)
check "member without guest agent: vote no" [ "$(jq -r '.members[] | select(.vm=="noga1") | .code' <<<"$r")" = E_NO_GUEST_AGENT ]
check "... and nothing frozen" bash -c "! grep -q '^frozen 1' $T/host-a/sim/*.state"
r=$(send host-a freeze t5 s5 quiesce 10000 paused1:0 || true)
check "paused domain refused for quiesce" [ "$(jq -r '.members[0].code' <<<"$r")" = E_PAUSED ]
r=$(send host-a freeze t6 s6 quiesce 10000 ghost:0 || true)
check "missing domain named" [ "$(jq -r '.members[0].code' <<<"$r")" = E_NO_DOMAIN ]
check "... message names VM and host" grep -q 'ghost@host-a' <<<"$(jq -r '.members[0].message' <<<"$r")"

# 5. A partial freeze is undone before voting no.
inject "fail freeze db1"
r=$(send host-a freeze t7 s7 quiesce 10000 web1:0 db1:1 || true)
check "freeze failure on one member: vote no" [ "$(jqr .code <<<"$r")" = E_FREEZE_FAILED ]
check "... the member frozen first was thawed" bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"
uninject "fail freeze db1"

# 6. Hung guest: the freeze times out (guest agent deadline 2 s) and votes no.
inject "hang freeze app1"
t0=$(date +%s%N)
r=$(send host-a freeze t8 s8 quiesce 10000 web1:0 app1:0 || true)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "hung freeze votes no with a timeout" [ "$(jq -r '.members[] | select(.vm=="app1") | .code' <<<"$r")" = E_GUEST_AGENT_TIMEOUT ]
check "... not before the 2 s guest agent deadline (${ms} ms)" [ "$ms" -ge 2000 ]
check "... nothing left frozen" bash -c "! grep -q '^frozen 1' $T/host-a/sim/*.state"
uninject "hang freeze app1"

# 7. A thaw that fails is retried until it works.
send host-a freeze t9 s9 quiesce 10000 web1:0 >/dev/null
inject "fail thaw web1"
send host-a abort t9 >/dev/null || true
# Failed once in the abort and again in a retry, so still frozen by then.
thaw_retried() { [ "$(grep -c 'txid=t9 .*thaw failed' "$T/host-a/agent.log")" -ge 2 ]; }
wait_for 30 thaw_retried || true
check "thaw failing: web1 still frozen" frozen host-a web1
uninject "fail thaw web1"
wait_for 30 eval '! frozen host-a web1' || true
check "thaw retried until it worked" bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"

# 8. Lease expiry: thawed, and a late SNAPSHOT is refused.
send host-a freeze t10 s10 quiesce 3000 web1:0 db1:1 >/dev/null
check "frozen under a short lease" frozen host-a web1
wait_for 30 none_frozen || true
check "lease expired: thawed" bash -c "! grep -q '^frozen 1' $T/host-a/sim/*.state"
r=$(send host-a snapshot t10 || true)
check "snapshot after the lease refused" [ "$(jqr .code <<<"$r")" = E_LEASE_EXPIRED ]
check "... and no overlay made" bash -c "! ls $T/host-a/sim/img/*.t10.qcow2 2>/dev/null"
send host-a abort t10 >/dev/null

# 9. A guest that thawed on its own before its snapshot fails the cut.
inject "thaw_early web1"
send host-a freeze t11 s11 quiesce 10000 web1:0 db1:1 >/dev/null
r=$(send host-a snapshot t11 || true)
check "thawed-early member fails the snapshot" [ "$(jq -r '.members[] | select(.vm=="web1") | .code' <<<"$r")" = E_THAWED_EARLY ]
uninject "thaw_early web1"
r=$(send host-a abort t11)
check "abort after snapshot" [ "$(jqr .state <<<"$r")" = TXN_ABORTED ]
check "... overlays removed" bash -c "! ls $T/host-a/sim/img/*.t11.qcow2 2>/dev/null"
check "... domain back on its previous image" bash -c "grep -q '^disk 0 .*/web1-vda.t1.qcow2\$' $T/host-a/sim/web1.state"

# 10. Pause mode and crash-consistent members.
send host-a freeze t12 s12 pause 10000 web1:0 crash1:1:crash >/dev/null
check "pause mode: web1 frozen and paused" bash -c "grep -q '^frozen 1' $T/host-a/sim/web1.state && grep -q '^state 1' $T/host-a/sim/web1.state"
check "crash member paused, not frozen" bash -c "grep -q '^state 1' $T/host-a/sim/crash1.state && ! grep -q '^frozen 1' $T/host-a/sim/crash1.state"
send host-a snapshot t12 >/dev/null
check "resumed after snapshot" bash -c "! grep -q '^state 1' $T/host-a/sim/web1.state $T/host-a/sim/crash1.state"
send host-a commit t12 >/dev/null
r=$(send host-a freeze t13 s13 quiesce 10000 crash1:0 || true)
check "no guest agent and not crash-consistent: freeze fails" [ "$(jq -r '.members[0].code' <<<"$r")" = E_NO_GUEST_AGENT ]
check "... and nothing left paused" bash -c "! grep -q '^state 1' $T/host-a/sim/crash1.state"

# 11. kill -9 while frozen: the guardian thaws at once; a restart reports it.
send host-a freeze t14 s14 quiesce 30000 web1:0 db1:1 >/dev/null
kill9_agent host-a
wait_for 30 none_frozen || true
check "agent killed: guardian thawed both" bash -c "! grep -q '^frozen 1' $T/host-a/sim/*.state"
start_agent host-a
r=$(send host-a status)
check "restarted agent reports the transaction in doubt" [ "$(jq -r '.in_doubt[] | select(.txid=="t14") | .state' <<<"$r")" = TXN_ABORTED ]
r=$(send host-a snapshot t14 || true)
check "... and refuses its snapshot" [ "$(jqr .code <<<"$r")" = E_LEASE_EXPIRED ]
send host-a abort t14 >/dev/null
r=$(send host-a status)
check "... gone from doubt once decided" [ "$(jq '[.in_doubt[] | select(.txid=="t14")] | length' <<<"$r")" = 0 ]

# 12. kill -9 after SNAPSHOT: the overlays stay pending and commit after restart.
send host-a freeze t15 s15 quiesce 30000 web1:0 db1:1 >/dev/null
send host-a snapshot t15 >/dev/null
kill9_agent host-a
start_agent host-a
r=$(send host-a status)
check "pending snapshot reported in doubt after restart" [ "$(jq -r '.in_doubt[] | select(.txid=="t15") | .state' <<<"$r")" = TXN_SNAPPED ]
r=$(send host-a commit t15)
check "... and commits" [ "$(jqr .state <<<"$r")" = TXN_COMMITTED ]
check "... overlay kept" test -f "$T/host-a/sim/img/db1-vda.t15.qcow2"

# 13. kill -9 in the middle of SNAPSHOT: restart discards what was made.
# db1 (back tier) is snapshotted first; web1's snapshot is held by the sim
# ("hold snapshot web1") and the agent is killed there, with the cut half made.
inject "hold snapshot web1"
send host-a freeze t16 s16 quiesce 30000 web1:0 db1:1 >/dev/null
(send host-a snapshot t16 >/dev/null 2>&1 || true) &
bg=$!
wait_for 60 test -e "$T/host-a/sim/held.snapshot.web1" || true
check "held mid-snapshot: db1's overlay made, web1's not" bash -c "test -e $T/host-a/sim/img/db1-vda.t16.qcow2 && ! ls $T/host-a/sim/img/web1-*.t16.qcow2 2>/dev/null"
kill9_agent host-a
wait "$bg" || true
uninject "hold snapshot web1"
rm -f "$T/host-a/sim/held.snapshot.web1" # the killed agent could not remove it
wait_for 30 none_frozen || true
check "killed mid-snapshot: nothing frozen" bash -c "! grep -q '^frozen 1' $T/host-a/sim/*.state"
start_agent host-a
check "restart discarded the half-made cut" bash -c "! ls $T/host-a/sim/img/*.t16.qcow2 2>/dev/null"
r=$(send host-a status)
check "... reported in doubt as aborted" [ "$(jq -r '.in_doubt[] | select(.txid=="t16") | .state' <<<"$r")" = TXN_ABORTED ]
send host-a abort t16 >/dev/null

# 14. kill -9 in the middle of FREEZE: the front tier (web1) frozen, the back
# tier's freeze held by the sim ("hold freeze db1").
inject "hold freeze db1"
(send host-a freeze t17 s17 quiesce 30000 web1:0 db1:1 >/dev/null 2>&1 || true) &
bg=$!
wait_for 60 test -e "$T/host-a/sim/held.freeze.db1" || true
check "held mid-freeze: web1 frozen, db1 not" bash -c "grep -q '^frozen 1' $T/host-a/sim/web1.state && ! grep -q '^frozen 1' $T/host-a/sim/db1.state"
kill9_agent host-a
wait "$bg" || true
uninject "hold freeze db1"
rm -f "$T/host-a/sim/held.freeze.db1"
wait_for 30 none_frozen || true
check "killed mid-freeze: nothing left frozen" bash -c "! grep -q '^frozen 1' $T/host-a/sim/*.state"
start_agent host-a
send host-a abort t17 >/dev/null

# 15. SIGTERM thaws before exit.
send host-a freeze t18 s18 quiesce 30000 web1:0 >/dev/null
stop_agent host-a
check "SIGTERM: thawed before exit" bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"
start_agent host-a

# 16. Refused commands get a signed refusal saying why, once their signature
# verified; before, only an unsigned refusal code (case 18).
r=$(TARGET=host-b send host-a status || true)
check "command for another agent refused" [ "$(jqr .reject_reason <<<"$r")" = wrong-target ]
check "... the signed refusal names the step" [ "$(jqr .step <<<"$r")" = STATUS ]
r=$(KEY=reader send host-a freeze t19 s19 quiesce 1000 web1:0 || true)
check "key without the snapshot role refused" [ "$(jqr .reject_reason <<<"$r")" = role-denied ]
check "... naming its txid and step" [ "$(jqr .txid <<<"$r")/$(jqr .step <<<"$r")" = t19/FREEZE ]
check "... and nothing frozen" bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"
rc=0; e=$(KEY=stranger send host-a status 2>&1 >/dev/null) || rc=$?
check "unknown key refused, no verified reply" [ "$rc" = 3 ]
check "... the sender is told the agent does not know its key" grep -q 'refused the command before checking its signature (unknown-key, unsigned)' <<<"$e"
check "refusals logged" grep -q 'refused command (wrong-target)' "$T/host-a/agent.log"

# 17. A FREEZE held back on the path (-o seals it, counter n) until the
# coordinator gave up and sent ABORT (n + 1) of the txid the agent never saw.
# The held FREEZE then arrives inside the counter window: refused, the guest
# stays thawed; and after a restart a FREEZE of that txid is still refused.
# Counters n and n + 1, as one coordinator process numbers two sends: a
# counter file hands out the value it holds (when above the clock).
n=$(( $(date +%s%6N) + 5000000 ))
echo "$n" > "$T/n.counter"; echo "$((n + 1))" > "$T/n1.counter"; echo "$((n + 2))" > "$T/coord.counter"
send host-a -C "$T/n.counter" -o "$T/held.freeze" freeze t40 s40 quiesce 10000 web1:0 >/dev/null
r=$(send host-a -C "$T/n1.counter" abort t40)
check "ABORT of a txid never seen: ok" [ "$(jqr .code <<<"$r")" = OK ]
r=$(send host-a -i "$T/held.freeze" || true)
check "held FREEZE delivered after its ABORT: refused" [ "$(jqr .code <<<"$r")/$(jqr .txid <<<"$r")" = E_BAD_STATE/t40 ]
check "... saying the transaction was already decided" grep -q 'was already decided on this agent' <<<"$(jqr .message <<<"$r")"
check "... web1 stays thawed" none_frozen
check "... t40 not in doubt" [ "$(send host-a status | jq '[.in_doubt[] | select(.txid == "t40")] | length')" = 0 ]
check "the memory is a file under the journal dir" test -s "$T/host-a/journal/decided.list"
stop_agent host-a
start_agent host-a
r=$(send host-a freeze t40 s40 quiesce 10000 web1:0 || true)
check "after a restart, a FREEZE of the aborted txid: refused" [ "$(jqr .code <<<"$r")" = E_BAD_STATE ]
check "... web1 stays thawed" none_frozen
r=$(send host-a freeze t41 s41 quiesce 10000 web1:0)
check "another txid freezes as before" frozen host-a web1
send host-a abort t41 >/dev/null

# 18. Junk gets no signed reply: an unknown key and a bad signature are
# answered with the unsigned refusal code alone (Envelope field 5: 28 02 is
# unknown-key, 28 03 bad-signature), no key id, body or signature.
rc=0; KEY=stranger send host-a -R "$T/junk.reply" status >/dev/null 2>&1 || rc=$?
check "unknown key: reply bytes are the code alone" [ "$rc/$(od -An -tx1 "$T/junk.reply" | tr -d ' \n')" = 3/2802 ]
rc=0; send host-a -x -R "$T/junk.reply" freeze t42 s42 quiesce 10000 web1:0 >/dev/null 2>&1 || rc=$?
check "bad signature: reply bytes are the code alone" [ "$rc/$(od -An -tx1 "$T/junk.reply" | tr -d ' \n')" = 3/2803 ]
check "... and nothing frozen" none_frozen
check "junk logged as unverified" grep -q 'refused unverified (bad-signature), answered unsigned' "$T/host-a/agent.log"

# 19. The counter window stays for everything else: commands sent in order
# that arrive in the other order (n + 1 first) both pass, an opening step of
# a txid nobody decided included.
n=$(( $(date +%s%6N) + 5000000 ))
echo "$n" > "$T/n.counter"; echo "$((n + 1))" > "$T/n1.counter"; echo "$((n + 2))" > "$T/coord.counter"
send host-a -C "$T/n.counter" -o "$T/held.freeze" freeze t44 s44 quiesce 10000 web1:0 >/dev/null
r=$(send host-a -C "$T/n1.counter" status)
check "n + 1 first: accepted" [ "$(jqr .code <<<"$r")" = OK ]
r=$(send host-a -i "$T/held.freeze")
check "then n, a FREEZE of an undecided txid: accepted inside the window" [ "$(jqr .code <<<"$r")/$(jqr .state <<<"$r")" = OK/TXN_FROZEN ]
check "... web1 frozen" frozen host-a web1
send host-a abort t44 >/dev/null
check "... and thawed by its ABORT" none_frozen

finish
