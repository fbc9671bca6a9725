#!/bin/bash
# lab test "ha": three lockstepd on a 3-member etcd cluster (lab up
# --coordinators 3), real guests on 2 hosts. A follower forwards a cut to the
# leader over TLS; an agent older than the epoch fence fails a cut, named. The leader is killed -9 before
# FREEZE, after FREEZE, after the decision is logged and after COMMIT was sent:
# each time another one leads within the lease TTL + 5 s, settles the cut as the
# log says (abort, abort, commit, commit), every guest is thawed and its next cut
# commits with 0 orphans. The leader cut off from etcd only (iptables in its
# namespace) in the middle of a cut stops leading within its lease; the command
# it still sends afterwards (failpoint send-when-deposed) is refused by the
# agents (stale epoch). A per-minute schedule runs across two failovers: no slot
# runs twice, none is lost.
#
#   ha.sh [--no-schedule]     (--no-schedule: skip the 4-minute schedule part)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SCHEDULE=1
[ "${1:-}" = --no-schedule ] && SCHEDULE=0
. "$(dirname "$0")/faults_lib.sh"

TTL=5 # the lab's ha.lease_ttl_s
ETCD=${LOCKSTEP_LAB_ETCD:-/usr/bin/etcd}
t_need_failpoints
t_need_lab
if [ ! -x "$ETCD" ]; then
        # tests/run-all.sh installed it: there a missing etcd is a failure.
        [ -z "${LOCKSTEP_REQUIRE_ETCD:-}" ] || t_fail "$ETCD is not installed (LOCKSTEP_REQUIRE_ETCD)"
        t_skip "$ETCD is not installed (Debian: apt-get install etcd-server)"
fi
t_need_built deploy/lab/lab-check
command -v iptables > /dev/null || t_skip "iptables missing (install with: deploy/lab/lab deps)"
FP=$(mktemp -d /var/tmp/lockstep-fp.XXXXXX)
chmod 0777 "$FP"
W=$(mktemp -d /tmp/ha.XXXXXX)
export LOCKSTEP_FAILPOINT_DIR=$FP
t_up_product --coordinators 3
trap 'h_rc=$?; for c in c1 c2 c3; do ip netns exec "lslab-$c" iptables -F OUTPUT 2> /dev/null || true; done
      [ "$h_rc" = 0 ] || f_keep_evidence; t_down; rm -rf "$T_LOG" "$FP" "$W"' EXIT
VMS=$(awk '$1 == "vm" { print $2 }' "$D/lab.state" | tr '\n' ' ')
NVMS=$(wc -w <<< "$VMS")
t_ring_flows

# ---- the cluster ----------------------------------------------------------------
ccli() { # coordinator args...: the CLI against that coordinator's lockstepd
        local c=$1
        shift
        "$LOCKSTEP_BUILD_DIR/coordinator/lockstep" -c "$D/coords/$c/coordinator.yaml" "$@"
}
cpid() { cat "$D/pids/lockstepd-$1.pid"; }
calive() { kill -0 "$(cpid "$1")" 2> /dev/null && ! grep -q '^State:.*Z' "/proc/$(cpid "$1")/status" 2> /dev/null; }
# Its role by its own account; "down" when it does not answer. (cluster status
# exits 1 when etcd cannot be reached, and still says the role.)
role() {
        local j
        j=$(ccli "$1" cluster status --json 2> /dev/null) || true
        jq -r '.role // "down"' <<< "${j:-{\}}" 2> /dev/null || echo down
}
# The one that leads by its own account (fenced on its epoch), among the living.
leader() {
        local c
        for c in c1 c2 c3; do
                calive "$c" && [ "$(role "$c")" = leader ] && { echo "$c"; return 0; }
        done
        return 1
}
# Waits until a lockstepd other than $1 leads; prints it. Fails after $2 s.
wait_leader_not() { # old seconds
        local c t0
        t0=$(now_ms)
        while (($(now_ms) - t0 < $2 * 1000)); do
                for c in c1 c2 c3; do
                        [ "$c" != "$1" ] && calive "$c" && [ "$(role "$c")" = leader ] && { echo "$c"; return 0; }
                done
                sleep 0.1
        done
        t_fail "$S: no lockstepd but $1 leads $2 s later"
}
wait_dead() { # coordinator seconds
        for _ in $(seq 1 $(($2 * 10))); do
                calive "$1" || return 0
                sleep 0.1
        done
        t_fail "$S: lockstepd $1 still runs $2 s later"
}
epoch_of() { ccli "$1" cluster status --json | jq -r .epoch; }
cut_by_name() { # coordinator name -> id
        ccli "$1" snapshot list --json | jq -r --arg n "$2" '[.[] | select(.name == $n)][0].id // ""'
}
cut_state() { ccli "$1" snapshot show "$2" --json 2> /dev/null | jq -r .state 2> /dev/null || echo unknown; }
# Until cut ID is STATE on coordinator C, at most S seconds; the time it took.
wait_cut_state() { # coordinator id state seconds
        local t0 st
        t0=$(now_ms)
        while (($(now_ms) - t0 < $4 * 1000)); do
                st=$(cut_state "$1" "$2")
                [ "$st" = "$3" ] && { echo $(($(now_ms) - t0)); return 0; }
                sleep 0.2
        done
        t_fail "$S: cut $2 is $st on $1, not $3, $4 s on"
}
# A cut through coordinator C, checked: committed, every member, 0 orphans.
next_cut() { # coordinator
        local j rc=0
        ccli "$1" snapshot create shop --json > "$W/next-$S.json" 2> "$W/next-$S.err" || rc=$?
        [ "$rc/$(jq -r .state "$W/next-$S.json" 2> /dev/null)" = 0/committed ] ||
                { cat "$W/next-$S.err"; t_fail "$S: the next cut through $1 did not commit (exit $rc)"; }
        j=$("$LAB" lockstep-cut --json --from "$W/next-$S.json" 2>> "$T_LOG") || true
        [ "$(jq -r .orphans <<< "$j")/$(jq -r '.members | length' <<< "$j")" = "0/$NVMS" ] ||
                t_fail "$S: the next cut through $1: $(jq -c '{orphans, orphan_ids}' <<< "$j" 2> /dev/null)"
}
all_thawed() {
        # shellcheck disable=SC2086
        wait_thawed 15 $VMS || t_fail "$S: a guest is still frozen 15 s after the takeover: $(for v in $VMS; do printf '%s=%s ' "$v" "$(fsstatus "$v")"; done)"
}

for _ in $(seq 1 300); do L=$(leader) && break; sleep 0.1; done
[ -n "${L:-}" ] || t_fail "setup: no lockstepd leads 30 s after lab up"
t_ok "setup: 3 etcd members, 3 lockstepd, $L leads (epoch $(epoch_of "$L"))"

# ---- a follower forwards: a cut asked of it is made by the leader -----------------
S=forward
F=$(for c in c1 c2 c3; do [ "$c" = "$L" ] || { echo "$c"; break; }; done)
next_cut "$F"
grep -q "forward from $F: \"snapshot.create\"" "$D/coords/$L/lockstepd.log" ||
        t_fail "$S: $L's log has no forward from $F"
! grep -q 'BEGIN ' "$D/coords/$F/lockstepd.log" || t_fail "$S: the follower $F began a cut itself"
t_ok "$S: a cut asked of the follower $F was forwarded over TLS to $L, which made it (committed, 0 orphans)"

# ---- an agent older than the fence is refused, not trusted ------------------------
S=old-agent
touch "$FP/host-b.agent-predates-epoch" # its replies stop echoing the epoch
rc=0
ccli "$L" snapshot create shop --json > "$W/cut-$S.json" 2> "$W/cut-$S.err" || rc=$?
[ "$rc" != 0 ] && [ "$(jq -r .state "$W/cut-$S.json" 2> /dev/null)" != committed ] ||
        t_fail "$S: a cut with host-b's agent predating the fence: exit $rc, $(jq -r .state "$W/cut-$S.json" 2> /dev/null)"
grep -q 'host-b.*does not keep the leader epoch fence' "$W/cut-$S.json" "$W/cut-$S.err" ||
        t_fail "$S: the failed cut does not name host-b's agent as predating the fence: $(head -c 400 "$W/cut-$S.json")"
all_thawed
rm -f "$FP/host-b.agent-predates-epoch"
id=$(jq -r .id "$W/cut-$S.json")
wait_cut_state "$L" "$id" aborted 30 > /dev/null
next_cut "$L"
t_ok "$S: an agent whose replies carry no epoch (older than the fence) fails the cut, named; guests thawed; once it keeps the fence the next cut commits"

# ---- kill -9 the leader at each step of a cut ------------------------------------
# before-freeze: the cut is logged as begun, no FREEZE sent; after-freeze: every
# member frozen, no SNAPSHOT sent; after-decide: commit logged, not sent;
# after-tell: COMMIT sent and answered, the cut's end not logged.
kill_at() { # failpoint expected-state
        local fp=$1 want=$2 old new e0 t_dead took settle
        S=kill-$fp
        old=$(leader) || t_fail "$S: no leader to start with"
        e0=$(epoch_of "$old")
        arm "$old" "$fp" kill
        (
                trap - ERR
                exec "$LOCKSTEP_BUILD_DIR/coordinator/lockstep" -c "$D/coords/$old/coordinator.yaml" snapshot create \
                        shop --name "ha-$fp" --json > "$W/cut-$S.json" 2> "$W/cut-$S.err"
        ) &
        local cpid_cli=$!
        wait_dead "$old" 60
        t_dead=$(now_ms)
        release "$old" "$fp"
        new=$(wait_leader_not "$old" $((TTL + 5)))
        took=$(($(now_ms) - t_dead))
        (($(epoch_of "$new") > e0)) || t_fail "$S: $new leads with epoch $(epoch_of "$new"), not above $old's $e0"
        local id
        id=$(cut_by_name "$new" "ha-$fp")
        [ -n "$id" ] || t_fail "$S: $new's catalog has no cut named ha-$fp"
        settle=$(wait_cut_state "$new" "$id" "$want" 20)
        (( took + settle <= (TTL + 5) * 1000 )) ||
                t_fail "$S: the cut was $want $((took + settle)) ms after $old died, more than the lease TTL + 5 s"
        all_thawed
        if [ "$want" = committed ]; then
                ccli "$new" snapshot show "$id" --json > "$W/settled-$S.json"
                local j
                j=$("$LAB" lockstep-cut --json --from "$W/settled-$S.json" 2>> "$T_LOG") || true
                [ "$(jq -r .orphans <<< "$j")/$(jq -r '.members | length' <<< "$j")" = "0/$NVMS" ] ||
                        t_fail "$S: the cut $new committed for the dead leader: $(jq -c '{orphans, orphan_ids}' <<< "$j" 2> /dev/null)"
        fi
        # The CLI that asked the dead leader would retry it for a minute: ours, done with.
        kill "$cpid_cli" 2> /dev/null || true
        wait "$cpid_cli" 2> /dev/null || true
        next_cut "$new"
        "$LAB" coord-start "$old" 2>> "$T_LOG" || t_fail "$S: $old does not start again"
        [ "$(role "$old")" = follower ] || t_fail "$S: $old came back as $(role "$old"), not follower"
        t_ok "$S: $old killed; $new leads $took ms later (epoch $e0 -> $(epoch_of "$new")), cut $id $want $settle ms after, guests thawed, next cut committed with 0 orphans, $old back as follower"
}
kill_at before-freeze aborted
kill_at after-freeze aborted
kill_at after-decide committed
kill_at after-tell committed

# ---- the leader cut off from etcd only ---------------------------------------------
S=etcd-partition
old=$(leader) || t_fail "$S: no leader to start with"
e0=$(epoch_of "$old")
arm "$old" after-freeze hold
(
        trap - ERR
        exec "$LOCKSTEP_BUILD_DIR/coordinator/lockstep" -c "$D/coords/$old/coordinator.yaml" snapshot create shop \
                --name ha-partition --json > "$W/cut-$S.json" 2> "$W/cut-$S.err"
) &
cli=$!
held_wait "$old" after-freeze
# Its lease can no longer be renewed; agents and the other coordinators still
# reach it, it reaches the agents.
ip netns exec "lslab-$old" iptables -I OUTPUT -p tcp --dport 2379 -j DROP
t0=$(now_ms)
# A status call takes seconds while etcd is unreachable (1.5 s per endpoint);
# the role it reports is the one at its start, so that is the time kept.
while (($(now_ms) - t0 < (TTL + 2) * 1000)); do
        ts=$(now_ms)
        [ "$(role "$old")" != leader ] && break
        sleep 0.1
done
stopped=$((ts - t0))
r=$(role "$old")
[ "$r" = follower ] || t_fail "$S: $old is '$r' $((TTL + 2)) s after losing etcd, not follower (down: cluster status did not answer)"
new=$(wait_leader_not "$old" $((TTL + 5)))
id=$(cut_by_name "$new" ha-partition)
wait_cut_state "$new" "$id" aborted 15 > /dev/null
all_thawed
# The deposed leader goes on from its failpoint and sends SNAPSHOT anyway, with
# the epoch it held: every agent has seen the new leader's by now and refuses.
refusals0=$(cat "$D"/hosts/*/agent.log | grep -c 'refused command (stale-epoch)' || true)
touch "$FP/$old.send-when-deposed"
release "$old" after-freeze
wait "$cli" || true
refusals=$(($(cat "$D"/hosts/*/agent.log | grep -c 'refused command (stale-epoch)' || true) - refusals0))
((refusals >= 1)) || t_fail "$S: no agent refused the deposed leader's command (agent logs: no stale-epoch refusal)"
grep -q 'failpoint send-when-deposed' "$D/coords/$old/lockstepd.log" ||
        t_fail "$S: $old never sent with its stale epoch (the failpoint did not fire): the refusal check proves nothing"
[ -z "$(find "$D"/hosts/*/images -name "*$id*" -print -quit)" ] || t_fail "$S: an overlay of the aborted cut $id is left"
[ "$(cut_state "$new" "$id")" = aborted ] || t_fail "$S: the deposed leader changed cut $id: now $(cut_state "$new" "$id")"
rm -f "$FP/$old.send-when-deposed"
ip netns exec "lslab-$old" iptables -D OUTPUT -p tcp --dport 2379 -j DROP
all_thawed
next_cut "$new"
for _ in $(seq 1 100); do
        [ "$(ccli "$new" cluster status --json | jq '.members | length')" = 3 ] && break
        sleep 0.2
done
[ "$(role "$old")" = follower ] || t_fail "$S: $old is $(role "$old") once etcd is back, not follower"
t_ok "$S: $old lost etcd in the middle of a cut, stopped leading within $stopped ms (the first status call that said so began then; test_election times it exactly); $new leads (epoch $e0 -> $(epoch_of "$new")), aborted the cut; the $refusals command(s) $old sent afterwards refused by the agents (stale epoch); nothing frozen or left; next cut committed; $old back as follower"

# ---- a per-minute schedule across two failovers -----------------------------------
if ((SCHEDULE)); then
        S=schedule
        for c in c1 c2 c3; do
                sed -i "s/^  - name: shop\$/  - name: shop\n    schedule: \"* * * * *\"\n    catch_up: true/" \
                        "$D/coords/$c/coordinator.yaml"
                grep -q 'schedule: "\* \* \* \* \*"' "$D/coords/$c/coordinator.yaml" || t_fail "$S: no schedule in $c's config"
                ccli "$c" reload > /dev/null || t_fail "$S: $c does not reload"
        done
        t_start=$(date +%s)
        # Two failovers, each one by killing the leader in the middle of a
        # scheduled cut (after its FREEZE), so that a slot is begun by one
        # leader and settled by the next.
        for round in 1 2; do
                old=$(leader) || t_fail "$S: no leader"
                arm "$old" after-freeze kill
                wait_dead "$old" 90
                release "$old" after-freeze
                new=$(wait_leader_not "$old" $((TTL + 5)))
                all_thawed
                "$LAB" coord-start "$old" 2>> "$T_LOG" || t_fail "$S: $old does not start again"
                t_info "$S: failover $round: $old killed inside a scheduled cut, $new leads"
        done
        # One more minute under the last leader.
        new=$(leader)
        want_end=$((($(date +%s) / 60 + 1) * 60 + 30))
        while (($(date +%s) < want_end)); do sleep 1; done
        ccli "$new" snapshot list --json > "$W/sched-cuts.json"
        # Cuts of the schedule, by slot: sched-YYYYMMDDTHHMM, one per minute.
        jq -r '[.[] | select(.name | startswith("sched-")) | .name] | group_by(.) | map({n: .[0], c: length})
                | .[] | select(.c > 1) | .n' "$W/sched-cuts.json" > "$W/dups"
        [ ! -s "$W/dups" ] || t_fail "$S: slot(s) run twice: $(tr '\n' ' ' < "$W/dups")"
        first=$(( (t_start / 60 + 1) * 60 ))
        last=$(( want_end / 60 * 60 )) # its cut began 30 s before want_end
        missing=()
        for ((m = first; m <= last; m += 60)); do
                n=sched-$(date -u -d "@$m" +%Y%m%dT%H%M)
                jq -e --arg n "$n" 'any(.[]; .name == $n)' "$W/sched-cuts.json" > /dev/null || missing+=("$n")
        done
        ((${#missing[@]} == 0)) || t_fail "$S: slot(s) never run: ${missing[*]} (cuts: $(jq -r '[.[] | .name + "=" + .state] | join(" ")' "$W/sched-cuts.json"))"
        aborted_n=$(jq '[.[] | select((.name | startswith("sched-")) and .state == "aborted")] | length' "$W/sched-cuts.json")
        committed_n=$(jq '[.[] | select((.name | startswith("sched-")) and .state == "committed")] | length' "$W/sched-cuts.json")
        ((aborted_n <= 2)) || t_fail "$S: $aborted_n scheduled cuts aborted, more than the 2 the failovers killed"
        t_ok "$S: every minute from $(date -u -d "@$first" +%H:%M) to $(date -u -d "@$last" +%H:%M) ran once across two failovers ($committed_n committed, $aborted_n aborted by a failover), no slot twice"
fi
