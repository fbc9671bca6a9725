# faults_lib: what the fault tests (faults.sh, chaos.sh) share: a lab with run-
# time failpoints, lab-frozenwatch, the scenarios and the four checks after
# each. Sourced after tests/lab/lib.sh; NO_LEASE and TABLE are the caller's.

ALL=(link-freeze link-snapshot link-snapshot-reply link-decide delay-loss stop-agent stop-lockstepd kill-libvirtd
        kill-qemu disk-full clock-ahead clock-behind ga-hang catalog-full)
LEASE_ONLY=(link-freeze link-snapshot stop-agent stop-lockstepd)

LEASE=6                      # s, each cut's lease (--lease)
STEP=8                       # s, lockstepd's step_timeout_s
GA_TIMEOUT=3                 # s, the agents' guest_agent_timeout_s
BOUND_MS=$(((LEASE + 2) * 1000))
WPID="" DPID="" EXCUSE="" S=setup
FH=${FH:-host-b} # the host the link and stop-agent scenarios hit

vm_host() { awk -v v="$1" '$1 == "vm" && $2 == v { print $4 }' "$D/lab.state"; }
host_ns() { awk -v h="$1" '$1 == "host" && $2 == h { print $4 }' "$D/lab.state"; }
host_vms() { awk -v h="$1" '$1 == "vm" && $4 == h { print $2 }' "$D/lab.state"; }
lab_hosts() { awk '$1 == "host" { print $2 }' "$D/lab.state"; }
uri_of() { echo "qemu+unix:///system?socket=$D/hosts/$(vm_host "$1")/run/libvirt/libvirt-sock"; }
fsstatus() { "$LAB" virsh "$1" qemu-agent-command "$1" '{"execute":"guest-fsfreeze-status"}' 2> /dev/null | jq -r .return 2> /dev/null || echo unknown; }
now_ms() { date +%s%3N; }

# The lab: 2 hosts, 4 guests, run-time failpoints in FP (the daemons the lab
# starts read it; the agent's network half runs as nobody and writes its
# ".held" files there too), host-b's images on a file system of their own, and
# lockstepd's step deadline above the cuts' lease.
# A failed run's evidence, before lab down takes it: the cuts' results, every
# log of the lab (lockstepd, agents, libvirtd, QEMU, relay), the catalog and the
# test's own log. The newest EVIDENCE_KEEP runs are kept.
EVIDENCE_DIR=${LOCKSTEP_FAULTS_EVIDENCE:-/var/tmp/lockstep-faults-evidence}
EVIDENCE_KEEP=5
f_keep_evidence() {
        local e f
        e=$EVIDENCE_DIR/$(date -u +%Y%m%dT%H%M%S)-${T_NAME:-faults}
        mkdir -p "$e" || return 0
        cp -a "$W" "$e/work" 2> /dev/null || true
        cp "$T_LOG" "$e/test.log" 2> /dev/null || true
        if [ -n "${D:-}" ] && [ -d "$D" ]; then
                (cd "$D" && find . \( -name '*.log' -o -name 'catalog.db*' -o -name '*.yaml' -o -name lab.state \) \
                        -size -64M -print0 | cpio -0pdm --quiet "$e/lab") 2> /dev/null || true
                for f in "$D"/hosts/*/run/libvirt/qemu/*.xml; do
                        [ -e "$f" ] && cp "$f" "$e/" 2> /dev/null || true
                done
        fi
        echo "     $T_NAME: evidence kept in $e"
        ls -1d "$EVIDENCE_DIR"/*/ 2> /dev/null | sort | head -n -"$EVIDENCE_KEEP" | xargs -r rm -rf
}

f_setup() {
        t_need_failpoints
        t_need_lab
        t_need_built deploy/lab/lab-frozenwatch deploy/lab/lab-delay tests/lockstep-send
        command -v iptables > /dev/null || t_skip "iptables missing (install with: deploy/lab/lab deps)"
        FP=$(mktemp -d /var/tmp/lockstep-fp.XXXXXX)
        chmod 0777 "$FP"
        W=$(mktemp -d /tmp/faults.XXXXXX)
        export LOCKSTEP_FAILPOINT_DIR=$FP
        export LOCKSTEP_LAB_SMALL_IMAGES=host-b:192
        t_up_product --vms 4
        trap 'f_rc=$?; for p in $WPID $DPID; do kill "$p" 2> /dev/null || true; done
              [ "$f_rc" = 0 ] || f_keep_evidence; t_down; rm -rf "$T_LOG" "$FP" "$W"' EXIT
        # A hung guest agent must be given up on (the member votes no, named)
        # before lockstepd's step deadline gives up on its whole host.
        for h in $(lab_hosts); do
                sed -i "s/^guest_agent_timeout_s: .*/guest_agent_timeout_s: $GA_TIMEOUT/" "$D/hosts/$h/agent.yaml"
                grep -qx "guest_agent_timeout_s: $GA_TIMEOUT" "$D/hosts/$h/agent.yaml" || t_fail "$h: no guest_agent_timeout_s to change"
                S=setup agent_restart "$h"
        done
        sed -i "s/^step_timeout_s: .*/step_timeout_s: $STEP/" "$D/coordinator.yaml"
        grep -qx "step_timeout_s: $STEP" "$D/coordinator.yaml" || t_fail "coordinator.yaml has no step_timeout_s line to change"
        t_lockstepd_restart
        VMS=$(awk '$1 == "vm" { print $2 }' "$D/lab.state" | tr '\n' ' ')
        t_ring_flows
        if ((NO_LEASE)); then
                for h in $(lab_hosts); do arm "$h" no-lease; done
        fi
}

# ---- failpoints ------------------------------------------------------------
arm() { echo "${3:-hold}" > "$FP/$1.$2"; }       # scope name [hold|stop|kill]
release() { rm -f "$FP/$1.$2"; }
held_wait() { # scope name: the daemon stands at the failpoint
        for _ in $(seq 1 600); do
                [ -e "$FP/$1.$2.held" ] && return 0
                sleep 0.1
        done
        t_fail "$S: $1 never reached failpoint $2"
}

# ---- the frozen-time watcher -----------------------------------------------
watch_start() {
        local args=() vm
        for vm in $VMS; do
                [ "$vm" = "${WATCH_SKIP:-}" ] || args+=("$vm=$(uri_of "$vm")")
        done
        : > "$W/watch.out"
        "$LOCKSTEP_BUILD_DIR/deploy/lab/lab-frozenwatch" --interval-ms 100 --out "$W/watch-$S.json" "${args[@]}" \
                > "$W/watch.out" 2>> "$T_LOG" &
        WPID=$!
        for _ in $(seq 1 300); do
                grep -qx ready "$W/watch.out" && return 0
                kill -0 "$WPID" 2> /dev/null || t_fail "$S: lab-frozenwatch exited at start"
                sleep 0.1
        done
        t_fail "$S: lab-frozenwatch not ready after 30 s"
}
watch_stop() {
        kill -TERM "$WPID" 2> /dev/null || true
        wait "$WPID" || true
        WPID=""
        [ -s "$W/watch-$S.json" ] || t_fail "$S: lab-frozenwatch wrote nothing"
}

# ---- the cut under test -------------------------------------------------------
cut_bg() {
        # Not through the ERR trap: its FAIL line would land in the JSON.
        (
                trap - ERR
                exec "$LOCKSTEP_BUILD_DIR/coordinator/lockstep" -c "$D/coordinator.yaml" snapshot create shop \
                        --lease "$LEASE" --json > "$W/cut-$S.json" 2> "$W/cut-$S.err"
        ) &
        CPID=$!
}
cut_wait() { # -> CUT_ID, CUT_STATE (aborting/committing: an agent not told yet), CUT_REASON
        local rc=0
        wait "$CPID" || rc=$?
        jq -e .id "$W/cut-$S.json" > /dev/null 2>&1 ||
                { cat "$W/cut-$S.json" "$W/cut-$S.err"; t_fail "$S: lockstep snapshot create gave no result (exit $rc)"; }
        CUT_ID=$(jq -r .id "$W/cut-$S.json")
        CUT_STATE=$(jq -r .state "$W/cut-$S.json")
        CUT_REASON=$(jq -r '.reason // ""' "$W/cut-$S.json")
        t_info "$S: cut $CUT_ID ended $CUT_STATE (exit $rc)${CUT_REASON:+: $CUT_REASON}"
}
aborted() { [[ $CUT_STATE == aborted || $CUT_STATE == aborting ]]; }

# The agent's own processes (the executor and its network half), not the
# guardian, which must stay to thaw.
agent_pids() {
        local p c
        p=$(cat "$D/hosts/$1/agent.pid")
        echo "$p"
        for c in $(pgrep -P "$p"); do
                [ "$(cat "/proc/$c/comm" 2> /dev/null)" = ls-guardian ] || echo "$c"
        done
}
link() { ip -n "$(host_ns "$1")" link set eth0 "$2"; }

# Waits until VMs (default: all) report thawed to their own guest agent.
wait_thawed() { # seconds vm...
        local secs=$1 vm ok
        shift
        for _ in $(seq 1 $((secs * 5))); do
                ok=1
                for vm in "$@"; do [ "$(fsstatus "$vm")" = thawed ] || ok=0; done
                ((ok)) && return 0
                sleep 0.2
        done
        return 1
}

# ---- the four checks ------------------------------------------------------------
disks() {
        local vm
        for vm in $VMS; do
                "$LAB" virsh "$vm" domblklist "$vm" | awk -v v="$vm" '$1 ~ /^vd/ { print v, $1, $2 }'
        done
}
chain_files() {
        local vm disk path
        while read -r vm disk path; do
                qemu-img info -U --backing-chain --output=json "$path" | jq -r '.[].filename'
        done < <(disks) | sort -u
}
image_files() { find "$D"/hosts/*/images -maxdepth 1 -type f | sort; }

# Recovery: every file in the image directories is in a VM's chain (the cuts
# live there), and none is missing; pending overlays and memory files are
# gone. Recovery is lockstepd's and the agents' own work: wait for it.
settled() {
        chain_files > "$W/want"
        image_files > "$W/have"
        diff "$W/want" "$W/have" > "$W/diff"
}
final_state() { ls_cli snapshot show "$CUT_ID" --json | jq -r .state; }
check_settled() {
        local st
        for _ in $(seq 1 120); do
                st=$(final_state)
                [[ $st == committed || $st == aborted ]] && settled && return 0
                sleep 1
        done
        cat "$W/diff"
        t_fail "$S: 120 s after the fault cut $CUT_ID is $st, and the image directories differ from the VMs' chains by the lines above (< missing, > leaked)"
}

# The cut, if it committed: every member in it, its images intact, 0 orphans.
check_committed() {
        local n j
        n=$(jq -r '.members | length' "$W/cut-$S.json")
        [ "$n" = 4 ] || t_fail "$S: the cut committed with $n members, not 4"
        [ "$(jq -r '[.members[] | .disks | length > 0] | all' "$W/cut-$S.json")" = true ] ||
                t_fail "$S: the committed cut has a member without an image"
        j=$("$LAB" lockstep-cut --json --from "$W/cut-$S.json" 2>> "$T_LOG") ||
                { jq . <<< "$j" || true; t_fail "$S: the committed cut's images fail the checks"; }
        [ "$(jq -r '.orphans' <<< "$j")/$(jq -r '[.members[].disks[].fsck] | all(. == "clean")' <<< "$j")" = 0/true ] ||
                t_fail "$S: the committed cut: $(jq -c '{orphans, orphan_ids}' <<< "$j"), e2fsck clean: $(jq -c '[.members[].disks[].fsck]' <<< "$j")"
}

check_next_cut() {
        local j rc=0
        j=$("$LAB" lockstep-cut --json 2>> "$T_LOG") || rc=$?
        [ -n "$j" ] && jq -e . > /dev/null 2>&1 <<< "$j" || { tail -n 20 "$T_LOG"; t_fail "$S: the next cut gave no result (exit $rc)"; }
        echo "$j" > "$W/next-$S.json"
        ((rc == 0)) && [ "$(jq -r .orphans <<< "$j")" = 0 ] && [ "$(jq -r '.intact and .in_time' <<< "$j")" = true ] ||
                t_fail "$S: the next cut: exit $rc, $(jq -c '{orphans, orphan_ids, intact, in_time}' <<< "$j") (whole result: $W/next-$S.json)"
        NEXT_WINDOW=$(jq -r '.timings_ms.window_ms' <<< "$j")
}

# Ends a scenario: the frozen-time bound (or, with --no-lease, its breach), the
# committed cut, recovery, the next cut; one row for the table.
finish() { # expected outcome words for the table
        local held worst excuse=${EXCUSE:-}
        watch_stop
        # A guest still held when the watch ends counts with its time so far.
        jq --arg x "$excuse" '[.vms[] | select(.vm as $v | $x | split(" ") | index($v) | not)
                | {vm, ms: ([.max_held_ms, .held_now_ms] | max | floor)}] | max_by(.ms)' \
                "$W/watch-$S.json" > "$W/worst"
        held=$(jq -r .ms "$W/worst")
        worst=$(jq -r .vm "$W/worst")
        if ((NO_LEASE)); then
                ((held > BOUND_MS)) || t_fail "$S without lease: longest frozen $held ms ($worst), within lease + 2 s: the check would not see a guest left frozen"
                t_ok "$S without lease or guardian: $worst frozen $held ms > $BOUND_MS ms: the check sees it"
                # Give the lease back to thaw what is left, for the next scenario.
                rm -f "$FP"/*.no-lease
                # shellcheck disable=SC2086
                wait_thawed 30 $VMS || t_fail "$S: guests still frozen 30 s after the lease came back"
                check_settled # the next scenario starts from a settled lab
                for h in $(lab_hosts); do arm "$h" no-lease; done
                RESULT="$S | no lease | $held ms ($worst) | - | -"
        else
                ((held <= BOUND_MS)) || t_fail "$S: $worst frozen or paused $held ms, more than lease + 2 s = $BOUND_MS ms"
                [[ $CUT_STATE != commit* ]] || check_committed
                check_settled
                check_next_cut
                t_ok "$S: cut $CUT_STATE, longest frozen $held ms ($worst) <= $BOUND_MS ms, nothing leaked, next cut committed (window $NEXT_WINDOW ms)"
                local fin
                fin=$(final_state)
                RESULT="$S | $CUT_STATE$([ "$fin" = "$CUT_STATE" ] || echo " -> $fin") | $held ms | 0 | committed"
        fi
        t_info "row: | $RESULT |"
        [ -z "$TABLE" ] || echo "| $RESULT |" >> "$TABLE"
        EXCUSE=""
}

# ---- the scenarios ------------------------------------------------------------
# A host's link goes down while its agent answers STEP, and comes back once the
# cut is over and the host's guests are thawed (by the lease: nobody can reach
# the agent) or the bound has passed.
link_during() { # step [nolinkup]
        local h=$FH
        arm "$h" "agent-reply-$1"
        cut_bg
        held_wait "$h" "agent-reply-$1"
        link "$h" down
        release "$h" "agent-reply-$1"
        cut_wait
        aborted || t_fail "$S: with $h cut off during $1 the cut ended $CUT_STATE"
        grep -q "$h" <<< "$CUT_REASON" || t_fail "$S: the abort reason does not name $h: $CUT_REASON"
        # shellcheck disable=SC2046
        wait_thawed $((LEASE + 6)) $(host_vms "$h") || true
        [ "${2:-}" = nolinkup ] || link "$h" up
}

s_link-freeze() { link_during FREEZE; }

# $FH's overlays are pending (in doubt) and it cannot be told the abort.
# lockstepd stops (SIGTERM) meanwhile: it must not wait out its retries, and
# the abort must still reach the host from the restarted lockstepd.
s_link-snapshot-reply() {
        local p t0
        link_during SNAPSHOT nolinkup
        p=$(cat "$D/pids/lockstepd.pid")
        t0=$(now_ms)
        kill -TERM "$p"
        for _ in $(seq 1 50); do [ -d "/proc/$p" ] || break; sleep 0.1; done
        [ ! -d "/proc/$p" ] || t_fail "$S: lockstepd still runs 5 s after SIGTERM with $FH unreachable"
        t_info "$S: lockstepd stopped $(($(now_ms) - t0)) ms after SIGTERM with $FH unreachable"
        t_lockstepd_restart
        link "$FH" up
}

# The host (FH) voted yes and is frozen; its link goes down before SNAPSHOT reaches
# it, so only its lease can thaw it.
s_link-snapshot() {
        arm lockstepd after-freeze
        cut_bg
        held_wait lockstepd after-freeze
        link "$FH" down
        release lockstepd after-freeze
        cut_wait
        aborted || t_fail "$S: with $FH cut off before SNAPSHOT the cut ended $CUT_STATE"
        grep -q "$FH" <<< "$CUT_REASON" || t_fail "$S: the abort reason does not name $FH: $CUT_REASON"
        # shellcheck disable=SC2046
        wait_thawed $((LEASE + 6)) $(host_vms "$FH") || true
        link "$FH" up
}

# The decision is logged, then the host (FH) drops off before it hears it: the cut is
# committed, and its members commit once the link is back.
s_link-decide() {
        arm lockstepd after-decide
        cut_bg
        held_wait lockstepd after-decide
        link "$FH" down
        release lockstepd after-decide
        sleep 3 # $FH unreachable for a while: the commit must wait for it
        link "$FH" up
        cut_wait
        [[ $CUT_STATE == commit* ]] || t_fail "$S: a logged commit ended $CUT_STATE"
}

# The agent stops (SIGSTOP) between FREEZE and SNAPSHOT; SIGCONT after lease + 5 s.
s_stop-agent() {
        local p
        arm lockstepd after-freeze
        cut_bg
        held_wait lockstepd after-freeze
        mapfile -t p < <(agent_pids "$FH")
        kill -STOP "${p[@]}"
        release lockstepd after-freeze
        sleep $((LEASE + 5))
        kill -CONT "${p[@]}"
        cut_wait
        aborted || t_fail "$S: with $FH's agent stopped the cut ended $CUT_STATE"
}

# lockstepd stops mid-cut (every guest frozen); SIGCONT after lease + 5 s.
s_stop-lockstepd() {
        local p
        p=$(cat "$D/pids/lockstepd.pid")
        arm lockstepd after-freeze
        cut_bg
        held_wait lockstepd after-freeze
        kill -STOP "$p"
        release lockstepd after-freeze
        sleep $((LEASE + 5))
        kill -CONT "$p"
        cut_wait
        aborted || t_fail "$S: a cut whose leases ran out while lockstepd stood ended $CUT_STATE"
}

# host-a's libvirtd dies (kill -9) with its guests frozen, and is started again.
s_kill-libvirtd() {
        arm host-a agent-reply-FREEZE
        cut_bg
        held_wait host-a agent-reply-FREEZE
        local lvd
        lvd=$(cat "$D/hosts/host-a/libvirtd.pid")
        kill -9 "$lvd"
        release host-a agent-reply-FREEZE
        # Gone before it is started again: a loaded machine takes a while to
        # reap it, and libvirtd-restart refuses while the old one still runs.
        for _ in $(seq 300); do
                [ -e "/proc/$lvd" ] && ! grep -q '^State:.*Z' "/proc/$lvd/status" 2> /dev/null || break
                sleep 0.1
        done
        "$LAB" libvirtd-restart host-a > /dev/null 2>> "$T_LOG" || {
                tail -n 3 "$T_LOG"
                t_fail "$S: libvirtd did not start again"
        }
        cut_wait
}

# One guest's QEMU is killed while it is frozen, before its snapshot: web1,
# frozen by the group's first tier, when host-a answers that tier's FREEZE
# (db1, in the last tier, is not frozen yet then: its tier has a FREEZE of its own).
s_kill-qemu() {
        local pid
        pid=$(qpid web1)
        arm host-a agent-reply-FREEZE
        cut_bg
        held_wait host-a agent-reply-FREEZE
        kill -9 "$pid"
        release host-a agent-reply-FREEZE
        cut_wait
        aborted || t_fail "$S: a cut whose member died ended $CUT_STATE"
        grep -q web1 <<< "$CUT_REASON$(jq -r '[.members[] | select(.vm == "web1") | .message] | join(" ")' "$W/cut-$S.json")" ||
                t_fail "$S: web1 is not named in the cut's result"
        EXCUSE=web1 # shut off, not frozen: the watcher says gone
        "$LAB" restart web1 > /dev/null 2>> "$T_LOG" || t_fail "$S: web1 did not start again"
        t_ring_flows web1
}

# host-b's image directory fills up after FREEZE validated it, before SNAPSHOT.
s_disk-full() {
        local vm dir=$D/hosts/host-b/images
        arm host-b agent-reply-FREEZE
        cut_bg
        held_wait host-b agent-reply-FREEZE
        dd if=/dev/zero of="$dir/.filler" bs=1M 2> /dev/null || true # until ENOSPC
        release host-b agent-reply-FREEZE
        cut_wait
        aborted || t_fail "$S: a cut on a full disk ended $CUT_STATE"
        grep -q host-b <<< "$CUT_REASON$(jq -r '[.members[].message] | join(" ")' "$W/cut-$S.json")" ||
                t_fail "$S: host-b is not named in the cut's result"
        rm -f "$dir/.filler"
        # A guest that wrote while the disk was full was paused by QEMU (I/O
        # error), not by lockstep: check says so, then it is resumed as an
        # operator would, and excused.
        for vm in $(host_vms host-b); do
                if "$LAB" virsh "$vm" domstate "$vm" --reason | grep -q 'paused (I/O error)'; then
                        # The agent may still be busy undoing the cut on the full disk.
                        for _ in $(seq 1 15); do
                                ls_cli check shop --json > "$W/check.json" 2>> "$T_LOG" || true
                                jq -e --arg v "$vm" '.members[] | select(.vm == $v) | .code != "UNREACHABLE"' \
                                        "$W/check.json" > /dev/null && break
                                sleep 2
                        done
                        jq -e --arg v "$vm" '.members[] | select(.vm == $v) | .message | test("paused by an I/O error")' \
                                "$W/check.json" > /dev/null || t_fail "$S: check does not say $vm was paused by an I/O error: $(jq -c --arg v "$vm" '.members[] | select(.vm == $v)' "$W/check.json")"
                        "$LAB" virsh "$vm" resume "$vm" > /dev/null || t_fail "$S: $vm does not resume"
                        EXCUSE+=" $vm"
                        t_info "$S: $vm was paused by QEMU for the full disk (I/O error): resumed"
                fi
        done
}

# Restarts a lab agent, optionally with settings in its environment (the
# failpoint directory stays), and waits until it answers.
agent_restart() { # host [VAR=value...]
        local h=$1 p
        shift
        p=$(cat "$D/hosts/$h/agent.pid")
        kill -TERM "$p" 2> /dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
        [ ! -d "/proc/$p" ] || t_fail "$S: $h's agent still runs 10 s after SIGTERM"
        ip netns exec "$(host_ns "$h")" env "$@" setsid "$LOCKSTEP_BUILD_DIR/agent/lockstep-agent" \
                -c "$D/hosts/$h/agent.yaml" >> "$D/hosts/$h/agent.log" 2>&1 < /dev/null &
        echo $! > "$D/hosts/$h/agent.pid"
        for _ in $(seq 1 100); do
                (
                        (($# == 0)) || export "$@"
                        t_send "$h" status
                ) > /dev/null 2>&1 && return 0
                sleep 0.1
        done
        t_fail "$S: $h's agent does not answer after its restart"
}

# host-b's agent runs 10 min ahead (or behind): every command to it is refused
# with a clock error naming it, and none of its guests is frozen.
clock_off() { # seconds, word
        agent_restart host-b LOCKSTEP_CLOCK_OFFSET_S="$1"
        cut_bg
        cut_wait
        aborted || t_fail "$S: a cut with host-b's clock off ended $CUT_STATE"
        # 600 s, give or take what a loaded machine adds to one round trip.
        grep -Eq "agent \"host-b\": clock is (59[89]|60[012]) s $2 lockstepd's" <<< "$CUT_REASON" ||
                t_fail "$S: the reason does not say host-b's clock is 600 s $2: $CUT_REASON"
        agent_restart host-b
        watch_stop
        # shellcheck disable=SC2046
        [ "$(jq --argjson b "$(host_vms host-b | jq -R . | jq -s .)" '[.vms[] | select(.vm as $v | $b | index($v)) | .held_intervals] | add' \
                "$W/watch-$S.json")" = 0 ] || t_fail "$S: a guest of host-b was frozen though its agent refused FREEZE"
        watch_start
}
s_clock-ahead() { clock_off 600 "ahead of"; }
s_clock-behind() { clock_off -600 behind; }

# 300 +- 100 ms each way (lab-delay between lockstepd and host-b's agent) and
# 10 % of host-b's agent packets dropped: three cuts commit, and the cut's
# replies show host-b's delay.
s_delay-loss() {
        local port ns i ms
        ns=$(host_ns host-b)
        "$LOCKSTEP_BUILD_DIR/deploy/lab/lab-delay" --listen 10.77.0.1:0 --to 10.77.0.3:7400 --delay-ms 300 \
                --jitter-ms 100 --seed 15 --port-file "$W/delay.port" >> "$T_LOG" 2>&1 &
        DPID=$!
        for _ in $(seq 1 50); do [ -s "$W/delay.port" ] && break; sleep 0.1; done
        port=$(cat "$W/delay.port")
        cp "$D/coordinator.yaml" "$W/coordinator.yaml.orig"
        sed -i "s|url: \"tls+tcp://10.77.0.3:7400\"|url: \"tls+tcp://10.77.0.1:$port\"|" "$D/coordinator.yaml"
        grep -q "10.77.0.1:$port" "$D/coordinator.yaml" || t_fail "$S: host-b's url not found in coordinator.yaml"
        t_lockstepd_restart
        ip netns exec "$ns" iptables -A INPUT -p tcp --dport 7400 -m statistic --mode random --probability 0.1 -j DROP
        ip netns exec "$ns" iptables -A OUTPUT -p tcp --sport 7400 -m statistic --mode random --probability 0.1 -j DROP
        for i in 1 2 3; do
                cut_bg
                cut_wait
                [ "$CUT_STATE" = committed ] || t_fail "$S: cut $i over the slow, lossy link ended $CUT_STATE"
                check_committed
                ms=$(jq -r '[.replies[] | select(.agent == "host-b" and .step == "FREEZE") | .ms] | max' "$W/cut-$S.json")
                awk -v m="$ms" 'BEGIN { exit !(m >= 400) }' ||
                        t_fail "$S: host-b's FREEZE answer took $ms ms, not the >= 400 ms the link adds"
                t_info "$S: cut $i committed; FREEZE answers: host-a $(jq -r '[.replies[] | select(.agent == "host-a" and .step == "FREEZE") | .ms] | max' "$W/cut-$S.json") ms, host-b $ms ms"
        done
        ip netns exec "$ns" iptables -F
        cp "$W/coordinator.yaml.orig" "$D/coordinator.yaml"
        t_lockstepd_restart
        kill "$DPID"
        wait "$DPID" || true
        DPID=""
}

# db1's guest agent hangs (SIGSTOP inside the guest) before it answers the
# freeze: db1 votes no at the guest-agent deadline, every other guest is
# thawed within lease + 2 s, and db1 is named in the result.
s_ga-hang() {
        # libvirt runs one guest-agent call per domain at a time: the watch's
        # status calls to the hung agent would queue before lockstep's own.
        watch_stop
        WATCH_SKIP=db1 watch_start
        "$LAB" virsh db1 qemu-agent-command db1 \
                '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","sleep 0.2; kill -STOP $(pidof qemu-ga)"]}}' \
                > /dev/null || t_fail "$S: guest-exec in db1 failed"
        for _ in $(seq 1 20); do
                "$LAB" virsh db1 qemu-agent-command db1 --timeout 1 '{"execute":"guest-ping"}' > /dev/null 2>&1 || break
                sleep 0.2
        done
        ! "$LAB" virsh db1 qemu-agent-command db1 --timeout 1 '{"execute":"guest-ping"}' > /dev/null 2>&1 ||
                t_fail "$S: db1's qemu-ga still answers: it was not stopped"
        cut_bg
        cut_wait
        aborted || t_fail "$S: a cut with db1's guest agent hung ended $CUT_STATE"
        grep -q db1 <<< "$CUT_REASON$(jq -r '[.members[] | select(.vm == "db1") | .message] | join(" ")' "$W/cut-$S.json")" ||
                t_fail "$S: db1 is not named in the cut's result"
        t_info "$S: db1: $(jq -r '.members[] | select(.vm == "db1") | "\(.code) \(.message)"' "$W/cut-$S.json")"
        EXCUSE=db1 # its own agent hangs: nobody but that agent can thaw it
        "$LAB" restart db1 > /dev/null 2>> "$T_LOG" || t_fail "$S: db1 did not start again"
        t_ring_flows db1
}

# lockstepd's catalog fills up between SNAPSHOT and the decision: nothing is
# committed, and once there is room again everything settles.
s_catalog-full() {
        local fs=$D/catfs p
        mkdir -p "$fs"
        truncate -s 48M "$D/tmp/catfs.ext4"
        mkfs.ext4 -q -F -m 0 "$D/tmp/catfs.ext4"
        mount -o loop "$D/tmp/catfs.ext4" "$fs"
        p=$(cat "$D/pids/lockstepd.pid")
        kill -TERM "$p"
        for _ in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
        cp -a "$D"/catalog.db* "$fs/"
        sed -i "s|^catalog: .*|catalog: \"$fs/catalog.db\"|" "$D/coordinator.yaml"
        t_lockstepd_restart
        arm lockstepd after-snapshot
        cut_bg
        held_wait lockstepd after-snapshot
        # The WAL emptied to nothing first: the decision must take new blocks
        # (a write into space the WAL already had would need none).
        sqlite3 -cmd '.timeout 5000' "$fs/catalog.db" 'PRAGMA wal_checkpoint(TRUNCATE);' > /dev/null ||
                t_fail "$S: could not empty the catalog's WAL"
        dd if=/dev/zero of="$fs/.filler" bs=4k 2> /dev/null || true # until ENOSPC
        release lockstepd after-snapshot
        cut_wait
        [[ $CUT_STATE != commit* ]] || t_fail "$S: a cut whose decision could not be written ended $CUT_STATE"
        rm -f "$fs/.filler"
}


# One scenario from start to its checks; a row in TABLE.
f_run() { # scenario
        S=$1
        t_info "$S: start"
        watch_start
        "s_$S"
        finish
}

f_table_head() {
        [ -z "$TABLE" ] || [ -s "$TABLE" ] || {
                echo "| scenario | cut | longest frozen | leaks | next cut |"
                echo "|---|---|---|---|---|"
        } >> "$TABLE"
}
