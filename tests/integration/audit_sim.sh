#!/usr/bin/env bash
# audit_sim: every control request that changes something is in the audit with the
# uid and pid of the process that sent it (the control socket's peer credentials),
# shown by `lockstep audit` and its --json.
. "$(dirname "$0")/lib.sh"

sim_agent host-a "domain vm1" "domain vm2"
start_agent host-a
GROUP_YAML="  - name: pair
    members: [vm1@host-a, vm2@host-a]"
coordinator host-a
start_lockstepd

# Another user may reach the socket here, as an operator in lockstepd's group
# would; as root the cut is asked for as that user, so the uid recorded cannot be
# lockstepd's own.
NOBODY=$(id -u)
as_user=()
if [ "$NOBODY" = 0 ]; then
        NOBODY=65534
        as_user=(setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups)
        chmod 755 "$T"
        chmod 644 "$T/coordinator.yaml"
        chmod 666 "$T/control.sock"
fi

# 1. A cut asked for by another user: its control row names that uid and the
# client's pid.
"${as_user[@]}" "$LOCKSTEP_BIN" -c "$T/coordinator.yaml" snapshot create pair --name by-nobody > "$T/create.out" 2>&1 &
cli=$!
wait "$cli" && rc=0 || rc=$?
check "snapshot create as uid $NOBODY exits 0" [ "$rc" = 0 ]
out=$(ls_cli audit --json)
row=$(jq -c '[.[] | select(.dir == "control" and .step == "snapshot.create")] | last' <<<"$out")
check "the create is audited as a control request" [ "$row" != null ]
check "... with the caller's uid ($NOBODY)" [ "$(jq .peer_uid <<<"$row")" = "$NOBODY" ]
check "... and the caller's pid ($cli)" [ "$(jq .peer_pid <<<"$row")" = "$cli" ]
check "... what was asked and the op it started" bash -c "jq -r .detail <<<'$row' | grep -q '^pair --name=by-nobody: started op '"

# 2. A reload by this user: its uid and this client's pid; a failed request is recorded too.
"$LOCKSTEP_BIN" -c "$T/coordinator.yaml" reload > /dev/null &
cli=$!
wait "$cli"
"$LOCKSTEP_BIN" -c "$T/coordinator.yaml" prune no-such-group > /dev/null 2>&1 &
bad=$!
wait "$bad" || true
out=$(ls_cli audit --json)
check "reload audited with this uid and its pid" \
        [ "$(jq -c '[.[] | select(.step == "reload")] | last | [.peer_uid, .peer_pid]' <<<"$out")" = "[$(id -u),$cli]" ]
check "a refused prune audited with its pid, its code and why" \
        [ "$(jq -c '[.[] | select(.step == "prune")] | last | [.peer_pid, .code, (.detail | test("^no-such-group: group .* is not in the configuration"))]' <<<"$out")" = "[$bad,2,true]" ]
# Reads are not recorded.
check "listings are not audited" [ "$(jq '[.[] | select(.step == "snapshot.list" or .step == "audit" or .step == "op.poll")] | length' <<<"$out")" = 0 ]
# The commands the cut sent to the agent are there too, without a peer.
check "commands sent to the agent carry no peer" \
        [ "$(jq '[.[] | select(.dir == "sent")] | length > 0 and all(.peer_uid == null)' <<<"$out")" = true ]

# 3. The text listing shows who.
check "lockstep audit names uid and pid" bash -c "'$LOCKSTEP_BIN' -c '$T/coordinator.yaml' audit | grep 'snapshot.create' | grep -q 'uid $NOBODY pid '"
id=$(ls_cli snapshot list --json | jq -r '.[0].id')
check "audit TXID lists that cut's commands" \
        [ "$(ls_cli audit "$id" --json | jq --arg id "$id" 'length > 0 and all(.txid == $id)')" = true ]

# 4. Another client follows that op by the id in the audit: lockstepd rendered
# its result only as text (what its CLI asked for); --json is made from the
# catalog when asked, and both agree with the cut.
op=$(jq -r .detail <<<"$row" | sed -n 's/.*started op //p')
check "the audit names the op ($op)" [ -n "$op" ]
ls_cli op wait "$op" > "$T/wait.out"
check "op wait shows the text its CLI printed" cmp -s "$T/wait.out" "$T/create.out"
check "op wait --json shows the same cut as JSON" \
        [ "$(ls_cli op wait "$op" --json | jq -r '[.id, .state, (.members | length)] | join(" ")')" = "$id committed 2" ]
"$LOCKSTEP_BIN" -c "$T/coordinator.yaml" op wait op-no-such > "$T/nosuch.out" 2>&1 && rc=0 || rc=$?
check "op wait of an unknown op: exit 2, says so" bash -c "[ $rc = 2 ] && grep -q 'no such operation' '$T/nosuch.out'"
finish
