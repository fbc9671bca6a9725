#!/bin/bash
# lab test "tls": the lab's agents listen on tls+tcp:// with certificates from
# the lab CA made at up, and lockstepd verifies them: a cut over TLS commits,
# intact with 0 orphans; with another CA for host-b, the cut is refused before
# any FREEZE is sent, with an error that names host-b and its certificate.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
t_up_product

grep -qx 'tls on' "$D/lab.state" || t_fail "the lab did not turn TLS on (LOCKSTEP_LAB_TLS=${LOCKSTEP_LAB_TLS:-unset})"
[ "$(grep -c 'url: "tls+tcp://' "$D/coordinator.yaml")" = 2 ] ||
        t_fail "coordinator.yaml does not dial both agents over tls+tcp://: $(grep 'url:' "$D/coordinator.yaml")"
# openssl's own client, not ours: the listener speaks TLS with a certificate
# that the lab CA signed for host-a.
out=$(openssl s_client -connect 10.77.0.2:7400 -CAfile "$D/tls/ca.pem" -servername host-a \
        -verify_hostname host-a -verify_return_error < /dev/null 2>&1 | tr -d '\0') ||
        t_fail "openssl s_client: host-a's agent does not pass verification: $(tail -n 5 <<< "$out")"
grep -q 'Verify return code: 0 (ok)' <<< "$out" || t_fail "openssl s_client: no verified session with host-a"
t_ok "agents on tls+tcp://, host-a's certificate verifies against the lab CA for the name host-a"

vms=$(awk '$1 == "vm" { print $2 }' "$D/lab.state")
t_ring_flows $vms

rc=0
j=$("$LAB" lockstep-cut --json 2>> "$T_LOG") || rc=$?
if [ -z "$j" ] || ! jq -e . > /dev/null 2>&1 <<< "$j"; then
        tail -n 20 "$T_LOG"
        t_fail "cut over TLS: no result (exit $rc)"
fi
[ "$(jq -r '.intact' <<< "$j")" = true ] || {
        jq . <<< "$j"
        t_fail "cut over TLS: not intact"
}
o=$(jq -r '.orphans' <<< "$j")
((rc == 0 && o == 0)) || t_fail "cut over TLS: $o orphans ($(jq -c .orphan_ids <<< "$j")), exit $rc"
t_ok "cut over TLS with verification: committed, intact, 0 orphans"

# A second CA that did not sign host-b's certificate, for host-b only.
other=$(mktemp -d /tmp/lab-tls.XXXXXX)
trap 't_down; rm -f "$T_LOG"; rm -rf "$other"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=other CA" \
        -keyout "$other/ca.key" -out "$other/ca.pem" > /dev/null 2>&1 || t_fail "openssl: cannot make a second CA"
sed -i "/^    server_name: host-b\$/a\\    tls_ca: \"$other/ca.pem\"" "$D/coordinator.yaml"
grep -q "tls_ca: \"$other/ca.pem\"" "$D/coordinator.yaml" || t_fail "could not give host-b another CA"
t_lockstepd_restart
rc=0
t0=$(date +%s%N)
out=$(ls_cli snapshot create shop --json 2>> "$T_LOG") || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
((rc != 0)) || t_fail "a cut committed while host-b's certificate cannot be verified: $out"
why=$(jq -r .reason <<< "$out") || t_fail "wrong CA: no JSON result (exit $rc): $out"
grep -q 'agent "host-b"' <<< "$why" && grep -q "certificate was refused" <<< "$why" || {
        tail -n 20 "$D/logs/lockstepd.log"
        t_fail "the refusal does not say host-b's certificate was refused: $why"
}
# Refused before FREEZE: no agent was sent anything, so host-a never froze
# web1 waiting for host-b's FREEZE to time out.
grep -q "nothing was sent, nothing frozen" <<< "$why" || t_fail "wrong CA: the refusal does not say nothing was frozen: $why"
txid=$(jq -r .id <<< "$out")
aud=$(ls_cli audit --limit 500 --json)
any=$(jq '[.[] | select(.dir == "sent")] | length' <<< "$aud")
sent=$(jq --arg t "$txid" '[.[] | select(.dir == "sent" and .txid == $t)] | length' <<< "$aud")
((any > 0)) || t_fail "audit: not one command on record, not even the first cut's"
((sent == 0)) || t_fail "wrong CA: $sent command(s) sent to agents in $txid, want none"
for vm in $vms; do
        st=$("$LAB" virsh "$vm" qemu-agent-command "$vm" '{"execute":"guest-fsfreeze-status"}' | jq -r .return)
        [ "$st" = thawed ] || t_fail "wrong CA: $vm is $st afterwards"
done
t_info "lockstep snapshot create ($ms ms, $(jq -r .state <<< "$out")): $why"
t_ok "host-b under another CA: cut refused before FREEZE (no command sent), the error names host-b and its certificate; every guest thawed"
