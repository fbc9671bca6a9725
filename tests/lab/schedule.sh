#!/bin/bash
# lab test "schedule": the lab's group scheduled every minute (real clock) with
# retention keep_last 2, set by `lockstep reload`: 3 consecutive scheduled cuts
# commit on real guests, retention leaves exactly 2 of them (the oldest merged
# away while the guests run), and the guests are unharmed: same QEMU processes,
# thawed, still writing, and both kept cuts pass the lab's checks.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_up_product
VMS="web1 app1 db1"
declare -A pid0
for vm in $VMS; do
        pid0[$vm]=$(qpid "$vm")
        for _ in $(seq 1 60); do [ "$(t_records "$vm")" -gt 5 ] 2> /dev/null && break; sleep 0.5; done
done

printf '    schedule: "* * * * *"\n    retention: {keep_last: 2}\n' >> "$D/coordinator.yaml"
out=$(ls_cli reload) || t_fail "lockstep reload: $out"
sched() { ls_cli schedules --json | jq -r '.[] | select(.group == "shop") | '"$1"; }
[ "$(sched .schedule)" = "* * * * *" ] || t_fail "the reload did not schedule shop: $(ls_cli schedules)"
t_ok "lockstep reload: shop scheduled every minute, next at $(sched .next_due_at)"

# Three runs take a little over 2 minutes; allow 5.
deadline=$((SECONDS + 300))
until [ "$(sched .runs)" -ge 3 ]; do
        ((SECONDS < deadline)) || t_fail "only $(sched .runs) scheduled runs in 5 minutes: $(ls_cli schedules)"
        sleep 2
done
ls_cli events --limit 100 > "$T_LOG.events"
[ "$(sched .skipped)" = 0 ] || t_fail "a scheduled run was skipped: $(sched .last_reason)"
mapfile -t runs < <(ls_cli snapshot list shop --json | jq -r '.[] | select(.name | startswith("sched-")) | "\(.id) \(.state)"')
((${#runs[@]} == 3)) || t_fail "${#runs[@]} scheduled cuts, not 3: ${runs[*]}"
# Each committed (the oldest may be deleted by retention already).
for r in "${runs[@]}"; do
        ls_cli snapshot show "${r% *}" --json | jq -e '.state == "committed" or .state == "deleted"' > /dev/null ||
                t_fail "scheduled cut ${r% *} is ${r#* }: $(ls_cli snapshot show "${r% *}" --json | jq -c '{state, reason}')"
done
grep -q "scheduled cut committed" "$T_LOG.events" || t_fail "no 'scheduled cut committed' event"
[ "$(grep -c 'scheduled cut committed' "$T_LOG.events")" -ge 3 ] || t_fail "fewer than 3 'scheduled cut committed' events"
t_ok "3 consecutive scheduled cuts committed on real guests ($(ls_cli snapshot list shop --json | jq -r '[.[] | select(.name | startswith("sched-")) | .name] | reverse | join(", ")'))"

# Retention runs right after the third cut commits.
for _ in $(seq 1 60); do
        kept=$(ls_cli snapshot list shop --json | jq '[.[] | select(.state == "committed" and .kind != "pre-revert")] | length')
        [ "$kept" = 2 ] && break
        sleep 1
done
[ "$kept" = 2 ] || t_fail "retention keep_last 2 left $kept cuts: $(ls_cli snapshot list shop)"
gone=${runs[2]% *}
[ "$(ls_cli snapshot show "$gone" --json | jq -r .state)" = deleted ] ||
        t_fail "the oldest scheduled cut $gone is $(ls_cli snapshot show "$gone" --json | jq -r .state), not deleted"
grep -q "prune .*$gone removed" "$T_LOG.events" || ls_cli events --limit 100 | grep -q "$gone removed" ||
        t_fail "no prune event names $gone"
t_ok "retention keep_last 2: exactly 2 cuts left, the oldest ($gone) merged away"

for vm in $VMS; do
        [ "$(qpid "$vm")" = "${pid0[$vm]}" ] || t_fail "$vm's QEMU process changed: the guest was restarted"
        st=$("$LAB" virsh "$vm" qemu-agent-command "$vm" '{"execute":"guest-fsfreeze-status"}' | jq -r .return)
        [ "$st" = thawed ] || t_fail "$vm is $st"
done
n0=$(t_records web1)
sleep 3
(($(t_records web1) > n0)) || t_fail "web1 stopped writing"
for r in "${runs[0]% *}" "${runs[1]% *}"; do
        mapfile -t imgs < <(ls_cli snapshot show "$r" --json | jq -r '.members[] | .vm as $v | .disks[] | "\($v)=\(.image)"')
        out=$("$LAB" check --json "${imgs[@]}") || t_fail "kept cut $r fails the lab's checks: $(jq -c '[.members[] | {vm, errors}]' <<< "$out")"
        [ "$(jq -r .orphans <<< "$out")" = 0 ] || t_fail "kept cut $r has orphans"
done
t_ok "guests unharmed: same QEMU processes, thawed, writing; both kept cuts intact with 0 orphans"
