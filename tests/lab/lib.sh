# lab test helpers: skip rules, a private lab dir, setup/teardown and assertions.
# Sourced by the tests/lab/*.sh scripts; each test prints one line per check and
# exits 0 (pass), 1 (fail) or 77 (skip: ctest's SKIP_RETURN_CODE).

set -eEuo pipefail

T_NAME=$(basename "$0" .sh)
# Whatever stops a test unplanned still says FAIL, with the line and command.
trap 'echo "FAIL $T_NAME: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)"' ERR
T_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=$T_REPO/deploy/lab/lab
# A lab dir of its own, so a developer's lab in the default dir is never touched;
# short, since unix socket paths live under it.
export LOCKSTEP_LAB_DIR=${LOCKSTEP_LAB_TEST_DIR:-/var/tmp/lockstep-lab-test}
export LOCKSTEP_BUILD_DIR=${LOCKSTEP_BUILD_DIR:-$T_REPO/build}

t_skip() {
        echo "SKIP $T_NAME: $*"
        exit 77
}
t_need_failpoints() {
        [ "${LOCKSTEP_FAILPOINTS:-OFF}" = ON ] ||
                t_skip "needs a build with -DLOCKSTEP_FAILPOINTS=ON (it stops daemons at failpoints)"
}
t_fail() {
        echo "FAIL $T_NAME: $*"
        exit 1
}
t_ok() { echo "ok   $T_NAME: $*"; }
t_info() { echo "     $T_NAME: $*"; }

# Skips (one line) where the lab cannot run at all; on a machine set up with
# "deploy/lab/lab deps" as root, nothing here skips.
t_need_lab() {
        local c missing=()
        [ "$(id -u)" = 0 ] || t_skip "needs root (network namespaces, libvirtd, QEMU)"
        for c in virsh libvirtd virtlogd qemu-system-x86_64 qemu-img mkfs.ext4 e2fsck debugfs \
                ip unshare gcc cpio depmod jq openssl; do
                command -v "$c" > /dev/null || missing+=("$c")
        done
        ((${#missing[@]} == 0)) || t_skip "missing ${missing[*]} (install with: deploy/lab/lab deps)"
        if ! ip netns add lstest-probe-$$ 2> /dev/null; then
                t_skip "cannot create network namespaces here"
        fi
        ip netns del lstest-probe-$$
}

t_down() { "$LAB" down > /dev/null 2>> "$T_LOG" || true; }

# Brings a lab up (tearing down what a killed earlier run left), and arranges
# for it to go down whatever happens.
t_up() {
        T_LOG=$(mktemp /tmp/lab-test.XXXXXX)
        t_down
        trap 't_down; rm -f "$T_LOG"' EXIT
        local t0
        t0=$(date +%s%3N)
        if ! "$LAB" up "$@" > /dev/null 2>> "$T_LOG"; then
                cat "$T_LOG"
                t_fail "lab up $* failed"
        fi
        t_info "lab up${*:+ $*} in $(($(date +%s%3N) - t0)) ms"
}

# Records in a running VM's log, read from outside (crash-consistent copy).
t_records() { # vm
        "$LAB" peek --json "$1" | jq -r '.members[0].log.records'
}

# Waits (up to 20 s) until every given VM (default: all of the lab's) has
# received more than 5 ring messages; fails the test when one has not.
t_ring_flows() {
        local vms=("$@") vm r ok=0
        ((${#vms[@]})) || mapfile -t vms < <(awk '$1 == "vm" { print $2 }' "$D/lab.state")
        for _ in $(seq 1 40); do
                ok=1
                for vm in "${vms[@]}"; do
                        # A live read can catch the guest's log midway: not yet.
                        r=$("$LAB" peek --json "$vm" | jq -r '.members[0].log.recv') || r=0
                        ((r > 5)) || ok=0
                done
                ((ok)) && return 0
                sleep 0.5
        done
        t_fail "the ring does not flow: some VM received 5 messages or fewer"
}

# Waits until every given VM's guest agent answers (a booted guest: one still
# booting cannot be shut down through it); fails the test after SECONDS.
t_ga_ready() { # seconds vm...
        local end=$((SECONDS + $1)) vm
        shift
        for vm in "$@"; do
                until "$LAB" virsh "$vm" qemu-agent-command "$vm" '{"execute":"guest-ping"}' > /dev/null 2>&1; do
                        ((SECONDS < end)) || t_fail "$vm's guest agent does not answer"
                        sleep 0.25
                done
        done
}

# Skips (one line) when one of the given build outputs is not built.
t_need_built() {
        local b
        for b in "$@"; do
                [ -x "$LOCKSTEP_BUILD_DIR/$b" ] || t_skip "$LOCKSTEP_BUILD_DIR/$b is not built"
        done
}

# The lab dir, for tests that read its files.
D=$LOCKSTEP_LAB_DIR

# A lab with the product on it: lockstepd and one agent per host, built first.
t_up_product() { # [lab up args]
        t_need_lab
        t_need_built coordinator/lockstep coordinator/lockstepd agent/lockstep-agent
        t_up "$@"
}

# The QEMU process of a guest (its pid tells a restart from a running guest).
# Read from this lab's libvirtd: another lab may run a guest of the same name.
# A guest runs on one host: at most one pid file; none prints nothing.
qpid() { cat "$D"/hosts/*/run/libvirt/qemu/"$1".pid 2> /dev/null || true; }

# Drives one lab agent with signed commands (lockstep-send), with lockstepd's
# own key and a counter file of the test's: when both sign, lockstepd moves its
# counter past the test's (stale-counter heals itself).
# With the lab's TLS on, the agent is verified as lockstepd does it.
t_send() { # host step args...
        local h=$1 ip tls=()
        shift
        ip=$(awk -v h="$h" '$1 == "host" && $2 == h { print $3 }' "$D/lab.state")
        if grep -qx 'tls on' "$D/lab.state"; then
                tls=(-u "tls+tcp://$ip:7400" -A "$D/tls/ca.pem" -N "$h")
        else
                tls=(-u "tcp://$ip:7400")
        fi
        "$LOCKSTEP_BUILD_DIR/tests/lockstep-send" -k "$D/keys/coordinator.key" -p "$D/keys/$h.pub" \
                "${tls[@]}" -a "$h" -C "$D/keys/test.counter" -t 60000 "$@"
}

# The lockstep CLI against the test lab's lockstepd.
ls_cli() { "$LOCKSTEP_BUILD_DIR/coordinator/lockstep" -c "$LOCKSTEP_LAB_DIR/coordinator.yaml" "$@"; }

# Restarts the lab's lockstepd (its config re-read), optionally with environment
# settings (LOCKSTEP_FAILPOINT=...), and waits until it answers. A lockstepd
# started with a failpoint may never answer: "--nowait" returns at once.
t_lockstepd_restart() { # [--nowait] [VAR=value...]
        local d=$LOCKSTEP_LAB_DIR wait=1
        [ "${1:-}" = --nowait ] && { wait=0; shift; }
        kill "$(cat "$d/pids/lockstepd.pid")" 2> /dev/null || true
        for _ in $(seq 1 50); do [ -e "$d/control.sock" ] || break; sleep 0.1; done
        env "$@" setsid "$LOCKSTEP_BUILD_DIR/coordinator/lockstepd" -c "$d/coordinator.yaml" \
                >> "$d/logs/lockstepd.log" 2>&1 < /dev/null &
        echo $! > "$d/pids/lockstepd.pid"
        ((wait)) || return 0
        for _ in $(seq 1 50); do
                "$LOCKSTEP_BUILD_DIR/coordinator/lockstep" -c "$d/coordinator.yaml" groups > /dev/null 2>&1 && return 0
                sleep 0.1
        done
        t_fail "lockstepd does not answer after its restart (log: $d/logs/lockstepd.log)"
}
