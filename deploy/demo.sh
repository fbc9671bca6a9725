#!/usr/bin/env bash
# The demo on a fresh Debian 12 machine (root): install, build, bring up the lab
# (real guests on 2 lab hosts, agents, lockstepd), compare today's VM-after-VM
# snapshots with lockstep's cut, then take one lockstep cut in full and check it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/install-deps.sh"
"$top/deploy/build.sh" "$top/build"
export LOCKSTEP_BUILD_DIR=$top/build
export LOCKSTEP_LAB_DIR=${LOCKSTEP_LAB_DIR:-/var/tmp/lockstep-lab}
lab=$top/deploy/lab/lab
lockstep() { "$top/build/coordinator/lockstep" -c "$LOCKSTEP_LAB_DIR/coordinator.yaml" "$@"; }

"$lab" status > /dev/null 2>&1 || "$lab" up --vms 4
"$lab" demo

echo
echo "== one lockstep cut of group shop, in full =="
lockstep snapshot create shop --name "demo-$(date +%H%M%S)" || true
id=$(lockstep snapshot list shop --json | jq -r '.[0].id')
echo
echo "== checking that cut's images (e2fsck -fn, workload logs, orphan messages) =="
mapfile -t imgs < <(lockstep snapshot show "$id" --json | jq -r '.members[] | .vm as $v | .disks[] | "\($v)=\(.image)"')
"$lab" check "${imgs[@]}"

cat << EOF

The lab stays up. Try next (as root):
  $top/build/coordinator/lockstep -c $LOCKSTEP_LAB_DIR/coordinator.yaml snapshot list
  $top/build/coordinator/lockstep -c $LOCKSTEP_LAB_DIR/coordinator.yaml snapshot show $id --json
  $top/build/coordinator/lockstep -c $LOCKSTEP_LAB_DIR/coordinator.yaml agents
  $lab sequential-cut        # today's way again: look for orphans
  $lab restart app1 --noga   # a guest without its agent: the next cut aborts, nothing stays frozen
  $lab down                  # remove everything the lab made
EOF
