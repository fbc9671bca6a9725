#!/usr/bin/env bash
# timeline_sim: `lockstep snapshot show ID --timeline` on real cuts: one row per
# member with its bars on one axis, the group window line, the width from
# --width, the terminal or 100 columns, plain ASCII off a terminal, and a
# member with no timings saying why.
. "$(dirname "$0")/lib.sh"

sim_agent host-a "domain vm1" "domain vm2"
sim_agent host-b "domain vm3" "domain nog ga=no"
start_agent host-a
start_agent host-b
GROUP_YAML="  - name: trio
    members: [vm1@host-a, vm2@host-a, vm3@host-b]
  - name: broken
    members: [vm1@host-a, nog@host-b]"
coordinator host-a host-b
start_lockstepd

# 1. A committed cut of three members on two agents.
check "cut of trio commits" bash -c "'$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot create trio --name t1 > /dev/null"
id=$(ls_cli snapshot list trio --json | jq -r '.[0].id')
out=$(ls_cli snapshot show "$id" --timeline --width 100) && rc=0 || rc=$?
echo "$out" | sed 's/^/# /'
check "--timeline exits 0" [ "$rc" = 0 ]
check "... names the cut first" grep -q "^cut $id  group trio  name t1 .* committed$" <<<"$out"
# A row: the member, then its bars: freeze, held, snapshot, thaw, in that order.
bars='^%s +F+=*S+T+$'
for m in vm1@host-a vm2@host-a vm3@host-b; do
        # shellcheck disable=SC2059
        check "... a row with bars for $m" grep -Eq "$(printf "$bars" "$m")" <<<"$out"
done
check "... one row per member (3)" [ "$(grep -Ec '^vm[0-9]@host-[ab] ' <<<"$out")" = 3 ]
win=$(ls_cli snapshot show "$id" --json | jq -r '.group_window_ms')
check "... the group window line with the report's window ($win ms)" \
        grep -Eq "^group window +\|-+ $(printf '%.1f' "$win") ms -+\|$" <<<"$out"
check "... a time axis in ms" grep -Eq '^ms +0 +[0-9.]+ ' <<<"$out"
check "... a legend" grep -q '^legend: F freeze, = frozen (held for the group), S snapshot, T thaw' <<<"$out"
check "... no line over 100 columns, plain ASCII" bash -c "! LC_ALL=C grep -q '[^ -~]' <<<\"\$1\" && [ \$(awk '{ if (length > m) m = length } END { print m }' <<<\"\$1\") -le 100 ]" _ "$out"

# 2. Off a terminal: 100 columns unless told; on one: its width, in colour.
out=$(ls_cli snapshot show "$id" --timeline)
check "not a terminal: 100 columns" [ "$(grep '^group window' <<<"$out" | awk '{ print length }')" = 100 ]
check "... no colour" bash -c "! grep -q $'\033' <<<\"\$1\"" _ "$out"
tty_out=$(script -qec "stty cols 64 rows 40; '$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot show '$id' --timeline" /dev/null | tr -d '\r')
check "a terminal of 64 columns: the chart fits it" \
        [ "$(sed 's/\x1b\[[0-9;]*m//g' <<<"$tty_out" | awk '{ if (length > m) m = length } END { print m }')" = 64 ]
check "... with colour on the bars" grep -q $'\033\\[33mF' <<<"$tty_out"
tty_out=$(NO_COLOR=1 script -qec "stty cols 20 rows 40; '$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot show '$id' --timeline" /dev/null | tr -d '\r')
check "a terminal of 20 columns: the narrowest chart (40), NO_COLOR heeded" \
        bash -c "grep -q '^group window' <<<\"\$1\" && ! grep -q $'\033' <<<\"\$1\" && [ \$(awk '{ if (length > m) m = length } END { print m }' <<<\"\$1\") = 40 ]" _ "$tty_out"

# 3. Refusals: exit 2, saying what is wrong.
err=$(ls_cli snapshot show "$id" --timeline --width 39 2>&1) && rc=0 || rc=$?
check "--width 39 refused (exit 2)" [ "$rc" = 2 ]
check "... with the range" grep -q 'width 39 is out of range: 40 to 1000 columns' <<<"$err"
err=$(ls_cli snapshot show "$id" --timeline --width abc 2>&1) && rc=0 || rc=$?
check "--width abc refused (exit 2)" [ "$rc" = 2 ]
err=$(ls_cli snapshot show "$id" --width 80 2>&1) && rc=0 || rc=$?
check "--width without --timeline refused" bash -c "[ $rc = 2 ] && grep -q -- '--width goes with --timeline' <<<\"\$1\"" _ "$err"
err=$(ls_cli snapshot show "$id" --timeline --json 2>&1) && rc=0 || rc=$?
check "--timeline with --json refused" bash -c "[ $rc = 2 ] && grep -q -- '--json gives the timings' <<<\"\$1\"" _ "$err"
err=$(ls_cli snapshot list --timeline 2>&1) && rc=0 || rc=$?
check "--timeline with snapshot list refused" [ "$rc" = 2 ]
err=$(ls_cli snapshot show ls-no-such-cut --timeline 2>&1) && rc=0 || rc=$?
check "an unknown cut: exit 2, no such transaction" bash -c "[ $rc = 2 ] && grep -q 'no such transaction' <<<\"\$1\"" _ "$err"

# 4. An aborted cut: the member that could not freeze says why instead of bars.
ls_cli snapshot create broken --name b1 > /dev/null 2>&1 || true
bid=$(ls_cli snapshot list broken --json | jq -r '.[0].id')
check "the cut of broken aborted" [ "$(ls_cli snapshot show "$bid" --json | jq -r .state)" = aborted ]
out=$(ls_cli snapshot show "$bid" --timeline --width 120)
echo "$out" | sed 's/^/# /'
check "... nog@host-b: no timings and why" grep -Eq '^nog@host-b +no timings: E_[A-Z_]+' <<<"$out"
check "... still a row for vm1@host-a" grep -Eq '^vm1@host-a +(F|no timings)' <<<"$out"
if grep -Eq '^vm1@host-a +F+$' <<<"$out"; then
        check "... frozen, its thaw not reported: said so" grep -q '^vm1@host-a: no thaw time recorded' <<<"$out"
fi
check "... and the window line" grep -q '^group window ' <<<"$out"
check "nothing left frozen" nothing_frozen
finish
