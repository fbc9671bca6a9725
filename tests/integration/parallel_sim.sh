#!/usr/bin/env bash
# parallel_sim: one agent with 8 simulated VMs works on them through its pool
# (parallel_per_host): the cut's window and the longest frozen time stay far
# below the serial sum with 8 workers, come to the snapshots' serial sum with 1
# (freezes are never bounded by the pool), and a member that fails under a
# parallel pool leaves no other member frozen.
. "$(dirname "$0")/lib.sh"

# Per member: freeze 100 ms, snapshot 200 ms, thaw 50 ms (sim sleeps, so never
# shorter). Freezes are guest-agent waits and all 8 run at once whatever the
# pool; snapshots and thaws are the pool's. With a pool of 1 the window is
# 100 + 8 x 250 = 2100 ms, and the last member is frozen from the start to its
# thaw: 2000 ms at least. All one by one (the agent before freezes went wide)
# would be 8 x 350 = 2800 ms. With 8 workers: 100 + 250 = 350 ms of each, plus
# the agents' and lockstepd's own time. The bounds keep a factor of two from
# either figure, as CI is loaded:
#   pool of 8: window and longest frozen time under 1400 ms (half the serial sum);
#   pool of 1: window at least 1890 ms and longest frozen at least 1800 ms (90 %
#   of what the sleeps alone take), and under the all-serial 2800 ms window.
SERIAL_WINDOW_MS=2800
POOL1_WINDOW_MS=2100
POOL1_FROZEN_MS=2000

doms=()
members=()
for v in 1 2 3 4 5 6 7 8; do
        doms+=("domain vm$v")
        members+=("vm$v@host-a")
done
sim_agent host-a "${doms[@]}" "latency freeze=100 snapshot=200 thaw=50"
echo "parallel_per_host: 8" >> "$T/host-a/agent.yaml"
start_agent host-a
GROUP_YAML="  - name: eight
    members: [$(IFS=,; echo "${members[*]}" | sed 's/,/, /g')]
    lease_s: 60"
STEP_TIMEOUT=30 coordinator host-a
start_lockstepd

# pool N: restarts the agent with parallel_per_host N.
pool() {
        stop_agent host-a
        sed -i "s/^parallel_per_host: .*/parallel_per_host: $1/" "$T/host-a/agent.yaml"
        start_agent host-a
}
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# 1. Eight workers: every member at once.
out=$(ls_cli snapshot create eight --name par8 --json) && rc=0 || rc=$?
check "pool of 8: committed" [ "$rc/$(jqr .state <<<"$out")" = 0/committed ]
check "pool of 8: 8 members ok" [ "$(jq '[.members[] | select(.code == "OK")] | length' <<<"$out")" = 8 ]
win=$(jqr .group_window_ms <<<"$out")
maxf=$(jqr .max_frozen_ms <<<"$out")
echo "# pool of 8: window ${win} ms, longest frozen ${maxf} ms (serial sum ${SERIAL_WINDOW_MS} ms)"
check "pool of 8: window under half the serial sum" lt "$win" $((SERIAL_WINDOW_MS / 2))
check "pool of 8: longest frozen under half the serial sum" lt "$maxf" $((SERIAL_WINDOW_MS / 2))
check "pool of 8: each member frozen at least its own freeze+snapshot+thaw" \
        [ "$(jq '[.members[] | .frozen_ms >= 350] | all' <<<"$out")" = true ]
check "pool of 8: nothing frozen afterwards" nothing_frozen
# Each member's own timings, not one shared figure: every snapshot took its
# 200 ms and every member has its own overlay.
check "pool of 8: per-member snapshot timings and overlays" \
        [ "$(jq '[.members[] | .snapshot_ms >= 200 and (.disks | length) == 1] | all' <<<"$out")" = true ]

# 2. One worker: snapshots and thaws one member after another; freezes at once.
pool 1
out=$(ls_cli snapshot create eight --name par1 --json) && rc=0 || rc=$?
check "pool of 1: committed" [ "$rc/$(jqr .state <<<"$out")" = 0/committed ]
win=$(jqr .group_window_ms <<<"$out")
maxf=$(jqr .max_frozen_ms <<<"$out")
echo "# pool of 1: window ${win} ms, longest frozen ${maxf} ms (snapshots serial: ${POOL1_WINDOW_MS} ms, ${POOL1_FROZEN_MS} ms)"
check "pool of 1: window about the snapshots' serial sum" ge "$win" $((POOL1_WINDOW_MS * 9 / 10))
check "pool of 1: longest frozen about the snapshots' serial figure" ge "$maxf" $((POOL1_FROZEN_MS * 9 / 10))
# The freezes did not wait for the pool: every member was frozen before the
# first thaw (one at a time, the last freeze would end 700 ms after the first).
check "pool of 1: all 8 froze at once" \
        [ "$(jq '([.members[].frozen_at_us] | max) - ([.members[].frozen_at_us] | min) < 350000' <<<"$out")" = true ]
# One by one, in the members' order: so the thaws land.
check "pool of 1: thawed in member order" \
        [ "$(jq -r '[.members | sort_by(.thawed_at_us)[] | .vm] | join(",")' <<<"$out")" = "vm1,vm2,vm3,vm4,vm5,vm6,vm7,vm8" ]
check "pool of 1: nothing frozen afterwards" nothing_frozen

# 3. A member whose snapshot fails while the others are snapshotted beside it:
# the cut aborts, every other member is thawed and its overlay discarded.
pool 8
echo "fail snapshot vm5" >> "$T/host-a/sim.txt"
out=$(ls_cli snapshot create eight --name failsnap --json) && rc=0 || rc=$?
check "failed snapshot under a pool of 8: the cut aborts" [ "$rc/$(jqr .state <<<"$out")" = 1/aborted ]
check "... vm5 says why" \
        [ "$(jq -r '.members[] | select(.vm == "vm5") | .code' <<<"$out")" = E_SNAPSHOT_FAILED ]
check "... nothing frozen or paused on the host" nothing_frozen
id=$(jqr .id <<<"$out")
check "... no overlay of the cut left" bash -c "! ls $T/host-a/sim/img/ 2>/dev/null | grep -q '$id'"
sed -i '/^fail snapshot vm5$/d' "$T/host-a/sim.txt"

# 4. A member whose freeze fails while the others freeze beside it: a no vote,
# and the others, frozen by then, are all thawed.
echo "fail freeze vm3" >> "$T/host-a/sim.txt"
out=$(ls_cli snapshot create eight --name failfreeze --json) && rc=0 || rc=$?
check "failed freeze under a pool of 8: the cut aborts" [ "$rc/$(jqr .state <<<"$out")" = 1/aborted ]
check "... vm3 says why" \
        [ "$(jq -r '.members[] | select(.vm == "vm3") | .code' <<<"$out")" = E_FREEZE_FAILED ]
check "... nothing frozen or paused on the host" nothing_frozen
check "... the guardian holds nothing armed: no thaw of its own in the log" \
        bash -c "! grep -q 'guardian: txid=.*lease ended or agent gone' $T/host-a/agent.log"
sed -i '/^fail freeze vm3$/d' "$T/host-a/sim.txt"

# 5. And the host cuts again afterwards.
out=$(ls_cli snapshot create eight --name again --json) && rc=0 || rc=$?
check "after the failures: the next cut commits" [ "$rc/$(jqr .state <<<"$out")" = 0/committed ]
finish
