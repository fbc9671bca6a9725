#!/usr/bin/env bash
# unit_score: the systemd units' hardening, measured by `systemd-analyze security
# --offline=true`, may not get worse: lockstepd at most 2.0 ("OK"), the agent at
# most the ceiling it reached. Every setting must also be understood (systemd
# ignores a misspelled key or a bad value with only a warning).
set -euo pipefail
UNITS=${1:?usage: unit_score.sh DEPLOY_SYSTEMD_DIR}

# The agent's ceiling: lower it when the unit gets better, never raise it
# without saying in the unit why a setting had to go.
# 1.8 -> 2.7 with privilege separation (issue 14, finding 7): CAP_SETUID/SETGID
# for the network half's drop, CAP_CHOWN for its replay directory,
# CAP_SYS_ADMIN and RestrictNamespaces=net for the executor's network namespace
# (each explained in the unit).
AGENT_MAX=2.7
LOCKSTEPD_MAX=2.0

command -v systemd-analyze > /dev/null ||
        { echo "SKIP unit_score: systemd-analyze is missing (package systemd: deploy/install-deps.sh)"; exit 77; }
systemd-analyze security --help 2> /dev/null | grep -q -- '--offline' ||
        { echo "SKIP unit_score: this systemd-analyze has no security --offline (systemd >= 250 needed)"; exit 77; }

W=$(mktemp -d "${TMPDIR:-/tmp}/ls-unit-XXXXXX")
trap 'rm -rf "$W"' EXIT
fails=0

# score UNIT MAX: the exposure of UNIT, checked against MAX.
score() {
        local unit=$1 max=$2 file=$UNITS/$1 got
        if ! SYSTEMD_COLORS=0 systemd-analyze security --offline=true --no-pager "$file" > "$W/out" 2> "$W/err"; then
                cat "$W/out" "$W/err"
                echo "not ok - $unit: systemd-analyze security failed"
                fails=$((fails + 1))
                return
        fi
        if grep -F "$file" "$W/err"; then
                echo "not ok - $unit: systemd ignores part of it (above)"
                fails=$((fails + 1))
        fi
        got=$(sed -n "s/.*Overall exposure level for $unit: \([0-9][0-9]*\.[0-9]\).*/\1/p" "$W/out")
        if [ -z "$got" ]; then
                tail -3 "$W/out"
                echo "not ok - $unit: no overall exposure level in the output"
                fails=$((fails + 1))
        elif awk -v g="$got" -v m="$max" 'BEGIN { exit !(g <= m) }'; then
                echo "ok - $unit: exposure $got (at most $max)"
        else
                grep '✗' "$W/out" || true
                echo "not ok - $unit: exposure $got is above $max (the settings it lacks are above)"
                fails=$((fails + 1))
        fi
}

score lockstepd.service "$LOCKSTEPD_MAX"
score lockstep-agent.service "$AGENT_MAX"
if [ "$fails" -ne 0 ]; then echo "# $fails check(s) failed"; exit 1; fi
echo "# all checks passed"
