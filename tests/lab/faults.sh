#!/bin/bash
# lab test "faults": cuts of real guests on 2 lab hosts (4 VMs) while the
# network, the processes and the disks fail under them. After every scenario
# the same four checks: no guest frozen or paused longer than lease + 2 s
# (lab-frozenwatch polls each guest every 100 ms); no cut committed with a
# member missing or a damaged image (e2fsck, orphans 0); once recovered, no
# pending overlay or stray file in the image directories; and the next cut
# commits.
#
#   faults.sh [--no-lease] [--table FILE] [SCENARIO...]
#
# Scenarios (default: all; faults_lib.sh has each one's story): link-freeze
# (host-b's link goes down while its agent answers FREEZE), link-snapshot
# (down after FREEZE, before SNAPSHOT reaches it), link-snapshot-reply (down
# while it answers SNAPSHOT: its overlays are pending, in doubt; lockstepd is
# restarted meanwhile), link-decide (down after the decision was logged),
# delay-loss (300 +- 100 ms and 10 % loss on host-b's link), stop-agent,
# stop-lockstepd, kill-libvirtd, kill-qemu, disk-full, clock-ahead and
# clock-behind (host-b's agent 10 min off), ga-hang (db1's qemu-ga stopped
# before it answers the freeze), catalog-full (lockstepd's catalog disk full
# at DECIDE).
# --no-lease turns the agents' lease and guardian off (a test-only switch) and
# runs the scenarios where only the lease thaws a guest: there each one must
# FAIL its frozen-time check, which shows that the check sees a guest left
# frozen. --table appends one Markdown row per scenario to FILE.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

NO_LEASE=0 TABLE="" want=()
while (($#)); do
        case "$1" in
        --no-lease) NO_LEASE=1 ;;
        --table) TABLE=${2:?--table needs a file}; shift ;;
        -*) echo "usage: faults.sh [--no-lease] [--table FILE] [SCENARIO...]" >&2; exit 2 ;;
        *) want+=("$1") ;;
        esac
        shift
done
. "$(dirname "$0")/faults_lib.sh"
if ((${#want[@]} == 0)); then
        if ((NO_LEASE)); then want=("${LEASE_ONLY[@]}"); else want=("${ALL[@]}"); fi
fi
for s in "${want[@]}"; do
        [[ " ${ALL[*]} " == *" $s "* ]] || { echo "faults.sh: unknown scenario $s (known: ${ALL[*]})" >&2; exit 2; }
done

f_setup
f_table_head
for s in "${want[@]}"; do f_run "$s"; done
t_ok "${#want[@]} scenario(s): ${want[*]}"
