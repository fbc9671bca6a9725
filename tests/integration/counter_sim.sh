#!/usr/bin/env bash
# counter_sim: a stale counter heals itself. A second process signs with
# lockstepd's key and a much higher counter; the agent then refuses lockstepd's
# next command as stale, says how far the key got, and lockstepd moves its
# counter past that and sends the command once more: the cut still commits. A
# jump beyond the bound is refused with a clear error instead.
. "$(dirname "$0")/lib.sh"

now_us() { date +%s%6N; }
# other COUNTER-FILE STEP...: a second process holding lockstepd's key.
other() {
        "$SEND_BIN" -k "$T/coord.key" -p "$T/host-a.pub" -u "tcp://127.0.0.1:$(cat "$T/host-a/port")" \
                -a host-a -C "$1" -t 20000 "${@:2}"
}
warnings() { grep -c '^<4>lockstepd: agent "host-a": .* refused as stale' "$T/lockstepd.log" || true; }
# state_is RC JSON EXIT STATE: the CLI exited EXIT and reported the cut in STATE.
state_is() { [ "$1" = "$3" ] && [ "$(jqr .state <<<"$2")" = "$4" ]; }

sim_agent host-a "domain vm1" "domain vm2"
start_agent host-a
GROUP_YAML="  - name: solo
    members: [vm1@host-a, vm2@host-a]"
coordinator host-a
start_lockstepd

# 1. A cut commits: lockstepd and the agent agree on the counter.
out=$(ls_cli snapshot create solo --name first --json) && rc=0 || rc=$?
check "first cut commits" state_is "$rc" "$out" 0 committed
check "no stale-counter warning yet" [ "$(warnings)" = 0 ]

# 2. Another process with the same key, about a day ahead (a second
# coordinator, or lockstep-send by hand): the agent accepts it.
ahead=$(($(now_us) + 86400 * 1000000))
echo "$ahead" > "$T/other.counter"
chmod 600 "$T/other.counter"
check "the other process's command is accepted" other "$T/other.counter" status >/dev/null

# 3. lockstepd's next cut: refused as stale once, healed, committed.
out=$(ls_cli snapshot create solo --name second --json) && rc=0 || rc=$?
check "second cut commits after the other process went ahead" state_is "$rc" "$out" 0 committed
check "both members frozen and snapshotted" [ "$(jq '[.members[] | .code == "OK"] | all and length == 2' <<<"$out")" = true ]
check "lockstepd logged the stale counter at warning, naming the agent" [ "$(warnings)" -ge 1 ]
check "... with both counter values" grep -qE "counter [0-9]+ refused as stale, the agent has accepted [0-9]+ from this key" "$T/lockstepd.log"
check "lockstepd's counter file is past the other process's counter" [ "$(cat "$T/coord.counter")" -gt "$ahead" ]
check "the agent logged the refusal" grep -q 'refused command (stale-counter)' "$T/host-a/agent.log"
check "nothing frozen afterwards" nothing_frozen

# 4. Healed for good: the next cut needs no resend.
n=$(warnings)
out=$(ls_cli snapshot create solo --name third --json) && rc=0 || rc=$?
check "third cut commits" state_is "$rc" "$out" 0 committed
check "... without another stale-counter warning" [ "$(warnings)" = "$n" ]

# 5. The other side of it: a process whose counter file went back (restored
# from an old backup) heals through agentlink_call the same way.
echo 1 > "$T/old.counter"
chmod 600 "$T/old.counter"
other "$T/old.counter" status > "$T/old.json" 2> "$T/old.err" && rc=0 || rc=$?
check "a process with an old counter file gets its answer" [ "$rc:$(jqr .code < "$T/old.json")" = 0:OK ]
check "... after one warning naming the agent" grep -q 'agent "host-a": STATUS: counter [0-9]* refused as stale' "$T/old.err"
check "... and its counter file moved past what the agent had seen" [ "$(cat "$T/old.counter")" -gt "$ahead" ]

# 6. The bound: a jump of more than 2^40 µs (12.7 days) ahead is not followed.
# The agent then refuses lockstepd until an operator looks: the cut aborts with
# the reason (its ABORT unconfirmed, so "aborting"), and nothing is left frozen.
echo $(($(now_us) + (1 << 41))) > "$T/far.counter"
chmod 600 "$T/far.counter"
check "a process far ahead is accepted by the agent" other "$T/far.counter" status >/dev/null
before=$(cat "$T/coord.counter")
out=$(ls_cli snapshot create solo --name fourth --json) && rc=0 || rc=$?
check "a cut after a jump beyond the bound aborts" state_is "$rc" "$out" 1 aborting
too_far() { jqr .reason <<<"$out" | grep -q 'FREEZE: counter [0-9]* refused as stale.*more than'; }
check "... the reason says the counter is too far ahead" too_far
check "... lockstepd logged it as an error" grep -q '^<3>lockstepd: agent "host-a": FREEZE: counter [0-9]* refused as stale.*more than' "$T/lockstepd.log"
check "... and did not move its counter there" [ "$(cat "$T/coord.counter")" -lt $((before + (1 << 40))) ]
check "... nothing frozen" nothing_frozen
finish
