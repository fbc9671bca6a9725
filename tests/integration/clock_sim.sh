#!/usr/bin/env bash
# clock_sim: an agent whose clock is 10 min ahead, then one 10 min behind
# (LOCKSTEP_CLOCK_OFFSET_S, test builds only). Every cut is refused with a
# "clock" error naming that host, in the cut's result, lockstepd's log and the
# CLI's output; no member is left frozen on any agent; `lockstep check` names
# the skewed agent; the next cut, with the agent restarted on the right time,
# commits.
. "$(dirname "$0")/lib.sh"
need_failpoints

sim_agent host-a "domain avm1" "domain avm2"
sim_agent host-b "domain bvm1" "domain bvm2"
start_agent host-a
start_agent host-b
GROUP_YAML="  - name: pair
    members: [avm1@host-a, avm2@host-a, bvm1@host-b, bvm2@host-b]
    lease_s: 10"
coordinator host-a host-b
start_lockstepd

# restart_agent ID [OFFSET_S]: agent ID again, its clock off by OFFSET_S.
restart_agent() {
        stop_agent "$1"
        LOCKSTEP_CLOCK_OFFSET_S=${2:-} start_agent "$1"
}

# skewed NAME ID OFFSET WORD: a cut while agent ID's clock is OFFSET s off
# (WORD: ahead/behind), then the same agent on the right time.
skewed() {
        local name=$1 id=$2 off=$3 word=$4 out rc want a=${3#-}
        # The agent measures from when the command was sealed: on a loaded
        # machine the command may take a second or two to get there.
        want="agent \"$id\": clock is ($((a - 1))|$a|$((a + 1))|$((a + 2))) s $word lockstepd's \\(FREEZE refused: command issued"
        restart_agent "$id" "$off"
        check "$name: the agent says its clock is offset" grep -q "test clock: this process's Unix time is offset by $( ((off > 0)) && echo +)$off s" "$T/$id/agent.log"

        out=$(ls_cli snapshot create pair --name "$name" --json) && rc=0 || rc=$?
        check "$name: the cut exits 1" [ "$rc" = 1 ]
        check "$name: aborted" [ "$(jqr .state <<<"$out")" = aborted ]
        check "$name: its reason is the clock, naming $id" bash -c 'jq -r .reason <<<"$1" | grep -qE -- "$2"' _ "$out" "$want"
        check "$name: $id's members carry the clock error" \
                [ "$(jq --arg id "$id" --arg w "$want" '[.members[] | select(.agent == $id) | .message | test($w)] | all and length == 2' <<<"$out")" = true ]
        check "$name: nothing committed" [ "$(ls_cli snapshot list --json | jq --arg n "$name" '[.[] | select(.name == $n and .state == "committed")] | length')" = 0 ]
        check "$name: no member frozen or paused on any agent" nothing_frozen
        check "$name: no overlay of it on any agent" bash -c "! ls $T/host-*/sim/img/ 2>/dev/null | grep -q '$(jqr .id <<<"$out")'"
        check "$name: lockstepd's log has the clock error" grep -qE -- "$want" "$T/lockstepd.log"

        # The CLI's text says it too.
        out=$(ls_cli snapshot create pair --name "$name-text" 2>&1) && rc=0 || rc=$?
        check "$name: text output names the clock of $id" bash -c '[ "$1" = 1 ] && grep -qE -- "$2" <<<"$3"' _ "$rc" "$want" "$out"
        check "$name: still nothing frozen" nothing_frozen

        # The preflight names the skewed agent.
        out=$(ls_cli check pair --json) && rc=0 || rc=$?
        check "$name: check exits 1" [ "$rc" = 1 ]
        check "$name: check: $id's members are CLOCK with the offset" \
                [ "$(jq --arg id "$id" --arg w "clock is ($((a - 1))|$a|$((a + 1))|$((a + 2))) s $word" '[.members[] | select(.agent == $id) | .code == "CLOCK" and (.message | test($w)) and ((.clock_offset_ms / 1000 | round) - '"$off"' | fabs) <= 2] | all and length == 2' <<<"$out")" = true ]
        check "$name: check: the other agent's members are OK" \
                [ "$(jq --arg id "$id" '[.members[] | select(.agent != $id) | .ok] | all' <<<"$out")" = true ]
        out=$(ls_cli check pair 2>&1) || true
        check "$name: check text names the clock" bash -c 'grep -q "^FAIL .*@'"$id"' *CLOCK: agent \"'"$id"'\": clock is" <<<"$1"' _ "$out"

        # The clock fixed: the next cut commits, and nothing is left to recover.
        restart_agent "$id"
        out=$(ls_cli snapshot create pair --name "$name-fixed" --json) && rc=0 || rc=$?
        check "$name: with the clock fixed the next cut commits" bash -c '[ "$1" = 0 ] && [ "$(jq -r .state <<<"$2")" = committed ]' _ "$rc" "$out"
        check "$name: nothing frozen after it" nothing_frozen
}

skewed ahead host-a 600 "ahead of"
skewed behind host-b -600 behind

# A small offset passes, and check reports it past half the window.
restart_agent host-a 20
out=$(ls_cli check pair --json) && rc=0 || rc=$?
check "20 s ahead: check still passes" [ "$rc" = 0 ]
check "20 s ahead: check warns of host-a's clock" \
        [ "$(jq '[.members[] | select(.agent == "host-a") | .ok and .code == "OK" and (.message | test("clock is (19|20|21) s ahead of lockstepd")) and (.clock_offset_ms - 20000 | fabs) < 2000] | all' <<<"$out")" = true ]
check "20 s ahead: host-b has no clock warning" \
        [ "$(jq '[.members[] | select(.agent == "host-b") | (.message | contains("clock") | not) and (.clock_offset_ms | fabs) < 5000] | all' <<<"$out")" = true ]
ls_cli agents > /dev/null # a status poll now
check "20 s ahead: the status poll warns of host-a's clock in lockstepd's log" \
        grep -Eq 'agent "host-a": clock is (19|20|21) s ahead of lockstepd'"'"'s, over half the agents'"'"' default 30 s time window' "$T/lockstepd.log"
out=$(ls_cli snapshot create pair --name small --json) && rc=0 || rc=$?
check "20 s ahead: a cut commits" [ "$rc" = 0 ]
restart_agent host-a

# A bad offset is refused at start, naming the variable.
LOCKSTEP_CLOCK_OFFSET_S=10min "$AGENT_BIN" -c "$T/host-a/agent.yaml" > "$T/bad-offset.log" 2>&1 && rc=0 || rc=$?
check "a bad offset: the agent does not start" [ "$rc" = 2 ]
check "a bad offset: the error names it" grep -q 'LOCKSTEP_CLOCK_OFFSET_S="10min" is not a whole number of seconds' "$T/bad-offset.log"
finish
