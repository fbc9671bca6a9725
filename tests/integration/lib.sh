# lib.sh: helpers for integration tests: real lockstep-agent processes (sim
# backend) on loopback, driven with signed commands by lockstep-send.
# Needs BUILD (the build directory) in the environment.
set -euo pipefail

: "${BUILD:?BUILD must point at the build directory}"
AGENT_BIN=$BUILD/agent/lockstep-agent
SEND_BIN=$BUILD/tests/lockstep-send
LOCKSTEP_BIN=$BUILD/coordinator/lockstep
LOCKSTEPD_BIN=$BUILD/coordinator/lockstepd

T=$(mktemp -d "${TMPDIR:-/tmp}/ls-it-XXXXXX")
PIDS=()
GUARDIANS=() # the guardians (comm ls-guardian) of the agents we started
declare -A STARTED=() # agent ids that came up once (their port is in use by configs)
fails=0

# ours_guardian PID: PID is still one of our guardians (not a reused PID): a
# guardian by its name, forked from one of our agents (its command line).
ours_guardian() {
        local cmd comm
        comm=$(cat "/proc/$1/comm" 2> /dev/null) || return 1
        [ "$comm" = ls-guardian ] || return 1
        cmd=$(tr '\0' ' ' < "/proc/$1/cmdline" 2> /dev/null) || return 1
        grep -q -- "-c $T/" <<< "$cmd"
}

cleanup() {
        for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        # Guardians end on their own once their agent is gone and nothing is
        # armed; one still busy is ours to stop, and only ours.
        for p in "${GUARDIANS[@]}"; do
                if ours_guardian "$p"; then kill -9 "$p" 2>/dev/null || true; fi
        done
        if [ "$fails" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "# kept $T"; fi
}
trap cleanup EXIT

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; fails=$((fails + 1)); }
check() { # check "name" cmd...
        local name=$1; shift
        if "$@"; then ok "$name"; else not_ok "$name"; fi
}
finish() {
        # Sanitizer reports in any daemon's log fail the test.
        if grep -l 'ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer' "$T"/*/*.log "$T"/*.log 2>/dev/null; then
                not_ok "sanitizer reports in daemon logs (above)"
        fi
        if [ "$fails" -ne 0 ]; then echo "# $fails check(s) failed"; exit 1; fi
        echo "# all checks passed"
}

# free_port: a TCP port nobody listens on now. Below the kernel's ephemeral
# range (32768-60999), so no outgoing connection holds it; another test may
# still take it first, which start_agent survives.
free_port() {
        local p
        while :; do
                p=$((20000 + RANDOM % 12000))
                (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
        done
}

# need_failpoints: tests that stop a daemon at a failpoint need them compiled in.
need_failpoints() {
        [ "${LOCKSTEP_FAILPOINTS:-OFF}" = ON ] && return 0
        echo "SKIP $(basename "$0" .sh): needs a build with -DLOCKSTEP_FAILPOINTS=ON (it stops daemons at failpoints)"
        exit 77
}

keygen() { "$LOCKSTEP_BIN" keygen --out "$T/$1" >/dev/null; }

# sim_agent ID DOMAIN-LINES...: writes the agent's sim config and agent.yaml.
sim_agent() {
        local id=$1; shift
        local port; port=$(free_port)
        mkdir -p "$T/$id"
        keygen "$id"
        {
                echo "state_dir $T/$id/sim"
                for d in "$@"; do echo "$d"; done
        } > "$T/$id/sim.txt"
        cat > "$T/$id/agent.yaml" <<YAML
id: $id
listen: tcp://127.0.0.1:$port
key: $T/$id.key
authorized:
  - name: coordinator
    pubkey: $T/coord.pub
    roles: [snapshot, revert, delete, admin]
  - name: reader
    pubkey: $T/reader.pub
    roles: [delete]
backend: sim
sim_config: $T/$id/sim.txt
journal_dir: $T/$id/journal
lease_max_s: 60
guest_agent_timeout_s: 2
YAML
        echo "$port" > "$T/$id/port"
}

start_agent() { # start_agent ID
        local id=$1 pid port
        for _ in 1 2 3 4 5; do
                "$AGENT_BIN" -c "$T/$id/agent.yaml" >> "$T/$id/agent.log" 2>&1 &
                pid=$!
                echo "$pid" > "$T/$id/pid"
                PIDS+=("$pid")
                # Ready when it answers a signed status. Asked with the reader key:
                # a key's counter belongs to one process, and lockstepd owns coord's.
                for _ in $(seq 1 200); do
                        if SEND_TIMEOUT=2000 KEY=reader send "$id" status >/dev/null 2>&1; then
                                # Its guardian was forked before it listened; noted
                                # now, while it is still the agent's child.
                                GUARDIANS+=($(pgrep -P "$pid" || true))
                                STARTED[$id]=1
                                return 0
                        fi
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.05
                done
                # Another test took the port between free_port and the bind: on a
                # first start (nothing names the port yet) take another one.
                if ! kill -0 "$pid" 2>/dev/null && [ -z "${STARTED[$id]:-}" ] &&
                        tail -1 "$T/$id/agent.log" | grep -q 'Address in use'; then
                        port=$(free_port)
                        sed -i "s|^listen: tcp://127.0.0.1:.*|listen: tcp://127.0.0.1:$port|" "$T/$id/agent.yaml"
                        echo "$port" > "$T/$id/port"
                        continue
                fi
                break
        done
        echo "agent $id did not come up; log:"; cat "$T/$id/agent.log"; return 1
}

# net_half ID: pid of agent ID's network half (its child that is no guardian).
net_half() {
        local p
        for p in $(pgrep -P "$(cat "$T/$1/pid")"); do ours_guardian "$p" || { echo "$p"; return 0; }; done
        return 1
}
# After kill -9 the network half dies with the executor (PDEATHSIG), a moment
# later: its listening socket is gone only then.
kill9_agent() {
        local net; net=$(net_half "$1" || true)
        kill -9 "$(cat "$T/$1/pid")"; wait "$(cat "$T/$1/pid")" 2>/dev/null || true
        [ -z "$net" ] || wait_for 10 pid_gone "$net"
}
# pid_gone PID: exited (a zombie counts: an orphan may wait long to be reaped).
pid_gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
stop_agent() { kill -TERM "$(cat "$T/$1/pid")"; wait "$(cat "$T/$1/pid")" 2>/dev/null || true; }

# send ID STEP ARGS...: prints the reply JSON; exit 0 only for code OK.
send() {
        local id=$1; shift
        "$SEND_BIN" -k "$T/${KEY:-coord}.key" -p "$T/$id.pub" -u "tcp://127.0.0.1:$(cat "$T/$id/port")" \
                -a "$id" ${TARGET:+-T "$TARGET"} -C "$T/${KEY:-coord}.counter" -t "${SEND_TIMEOUT:-20000}" "$@"
}

# frozen ID VM: 1 if the simulated guest is frozen now.
frozen() { grep -q '^frozen 1' "$T/$1/sim/$2.state" 2>/dev/null; }
paused() { grep -q '^state 1' "$T/$1/sim/$2.state" 2>/dev/null; }
jqr() { jq -r "$1"; }

keygen coord
keygen reader
keygen stranger

# coordinator AGENT...: writes coordinator.yaml naming the given sim agents;
# the group comes from GROUP_YAML (indented under groups:).
coordinator() {
        {
                echo "control: ipc://$T/control.sock"
                echo "key: $T/coord.key"
                echo "catalog: $T/catalog.db"
                echo "counter_file: $T/coord.counter"
                echo "step_timeout_s: ${STEP_TIMEOUT:-5}"
                [ -z "${COORD_EXTRA:-}" ] || echo "$COORD_EXTRA"
                echo "agents:"
                for a in "$@"; do
                        echo "  - id: $a"
                        echo "    url: tcp://127.0.0.1:$(cat "$T/$a/port")"
                        echo "    pubkey: $T/$a.pub"
                done
                echo "groups:"
                echo "$GROUP_YAML"
        } > "$T/coordinator.yaml"
}

start_lockstepd() { # [FAILPOINT]
        LOCKSTEP_FAILPOINT=${1:-} LOCKSTEP_CLOCK_FILE=${CLOCK_FILE:-} \
                "$LOCKSTEPD_BIN" -c "$T/coordinator.yaml" >> "$T/lockstepd.log" 2>&1 &
        echo $! > "$T/lockstepd.pid"
        PIDS+=("$!")
        for _ in $(seq 1 100); do
                [ -S "$T/control.sock" ] && "$LOCKSTEP_BIN" -c "$T/coordinator.yaml" groups >/dev/null 2>&1 && return 0
                sleep 0.05
        done
        echo "lockstepd did not come up; log:"; cat "$T/lockstepd.log"; return 1
}
kill9_lockstepd() { kill -9 "$(cat "$T/lockstepd.pid")"; wait "$(cat "$T/lockstepd.pid")" 2>/dev/null || true; rm -f "$T/control.sock"; }

ls_cli() { "$LOCKSTEP_BIN" -c "$T/coordinator.yaml" "$@"; }

# nothing_frozen: no simulated guest of any agent frozen or paused, no overlay pending.
nothing_frozen() { ! grep -q '^frozen 1\|^state 1' "$T"/*/sim/*.state 2>/dev/null; }

# wait_for SECONDS CMD...: polls CMD until it succeeds; fails after SECONDS.
# For states a test waits for, never for timing: the deadline is generous.
wait_for() { local end=$((SECONDS + $1)); shift; until "$@"; do ((SECONDS < end)) || return 1; sleep 0.05; done; }

# hold_sim ID / release_sim: hv_sim makes every state change of agent ID under
# the flock of $T/ID/sim/.lock; holding it stops the agent in its next
# hypervisor call until released, so a test can catch an agent inside a step
# instead of sleeping into it. A background job started while it is held must
# close the descriptor: (exec {HOLD_FD}>&-; ...) &
hold_sim() { exec {HOLD_FD}<>"$T/$1/sim/.lock"; flock -x "$HOLD_FD"; }
release_sim() { exec {HOLD_FD}>&-; }
# sim_blocked ID: agent ID waits for the held lock (a blocked flock in /proc/locks).
sim_blocked() {
        local ino; ino=$(stat -c %i "$T/$1/sim/.lock") || return 1
        grep -q -- "-> FLOCK  *ADVISORY  *WRITE  *$(cat "$T/$1/pid") [0-9a-f]*:[0-9a-f]*:$ino " /proc/locks
}
