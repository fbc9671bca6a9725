#!/usr/bin/env bash
# local_sim: what a local user or a careless file mode must not get past, checked
# with the real daemons' --check-config: a config others may write, a trusted key
# listed twice, a key file of another user, /metrics off loopback.
. "$(dirname "$0")/lib.sh"

sim_agent host-a "domain vm1"
A=$T/host-a/agent.yaml
cp "$A" "$T/agent.yaml.good"
agent_check() { "$AGENT_BIN" -c "$A" --check-config 2>&1; }
agent_ok() { "$AGENT_BIN" -c "$A" --check-config > /dev/null 2>&1; }
check "the agent's config checks out" agent_ok

# 1. agent.yaml writable by group or other: refused, with the file and the fix.
chmod 664 "$A"
out=$(agent_check) && rc=0 || rc=$?
check "group-writable agent.yaml refused (exit 2)" [ "$rc" = 2 ]
check "... naming the file and chmod go-w" grep -qF "$A: mode 0664 lets group or other write it; fix with: chmod go-w" <<<"$out"
chmod 646 "$A"
check "other-writable agent.yaml refused" bash -c "! '$AGENT_BIN' -c '$A' --check-config >/dev/null 2>&1"
chmod 644 "$A"

# 2. The coordinator's key trusted a second time under another name (with other
# roles): refused, both entries named.
sed -i "/^    roles: \[delete\]$/a\\  - name: coordinator-again\\n    pubkey: $T/coord.pub\\n    roles: [delete]" "$A"
out=$(agent_check) && rc=0 || rc=$?
check "a key trusted twice is refused (exit 2)" [ "$rc" = 2 ]
check "... naming both entries" grep -q 'trusted keys "coordinator" and "coordinator-again" have the same key id' <<<"$out"
cp "$T/agent.yaml.good" "$A"

# 3. The agent's secret key owned by another user (mode 0600 all the same): refused.
# Giving a file away takes root.
if [ "$(id -u)" = 0 ]; then
        chown 65534 "$T/host-a.key"
        out=$(agent_check) && rc=0 || rc=$?
        check "a secret key owned by another user is refused" [ "$rc" = 2 ]
        check "... naming the key and its owner" grep -qF "secret key \"$T/host-a.key\": owned by uid 65534" <<<"$out"
        chown 0 "$T/host-a.key"
        check "the agent's config checks out again" agent_ok
else
        echo "# not root: the owner case is left to test_keys"
fi

# 4. /metrics on a non-loopback address: refused unless metrics_public.
GROUP_YAML="  - name: one
    members: [vm1@host-a]"
COORD_EXTRA="metrics: http://0.0.0.0:9464" coordinator host-a
out=$("$LOCKSTEPD_BIN" -c "$T/coordinator.yaml" --check-config 2>&1) && rc=0 || rc=$?
check "metrics on 0.0.0.0 refused" [ "$rc" != 0 ]
check "... saying why and what allows it" grep -q 'metrics: "http://0.0.0.0:9464" is not a loopback address.*metrics_public: true' <<<"$out"
COORD_EXTRA="metrics: http://0.0.0.0:9464
metrics_public: true" coordinator host-a
check "... and accepted with metrics_public: true" bash -c "'$LOCKSTEPD_BIN' -c '$T/coordinator.yaml' --check-config > /dev/null"
finish
