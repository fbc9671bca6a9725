# lab common: paths, messages, the lab's state file and how to reach each lab host.
# Sourced by deploy/lab/lab and by the tests; needs bash with set -euo pipefail.

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_REPO=$(cd "$LAB_SRC/../.." && pwd)
LAB_DIR=${LOCKSTEP_LAB_DIR:-/var/tmp/lockstep-lab}
LAB_CACHE=${LOCKSTEP_LAB_CACHE:-/var/cache/lockstep-lab}
LAB_BUILD=${LOCKSTEP_BUILD_DIR:-$LAB_REPO/build}

LAB_NET_PREFIX=10.77.0
LAB_BRIDGE=lsbr0
LAB_NETNS_PREFIX=lslab-
LAB_TIERS=(web app db)
LAB_GROUP=shop
LAB_AGENT_PORT=7400
# Guests: TCG, so keep them small; 160 MiB is what the Debian kernel + qemu-ga need.
LAB_VM_MEM_MIB=${LOCKSTEP_LAB_VM_MEM_MIB:-160}
LAB_DISK_SIZE=${LOCKSTEP_LAB_DISK_SIZE:-128M}
LAB_BOOT_TIMEOUT=${LOCKSTEP_LAB_BOOT_TIMEOUT:-120}
# A guest's boot under TCG: no BIOS disk probe, no CPU-bug mitigations (the
# guest runs only the lab's own code), the TSC trusted instead of watched, no
# self-tests of the crypto the guest never uses.
LAB_GUEST_BOOT_ARGS="edd=off mitigations=off tsc=reliable no_timer_check cryptomgr.notests"

say() { printf 'lab: %s\n' "$*" >&2; }
warn() { printf 'lab: warning: %s\n' "$*" >&2; }
die() {
        printf 'lab: error: %s\n' "$*" >&2
        exit 1
}

need_root() {
        [ "$(id -u)" = 0 ] || die "$1 needs root (network namespaces, libvirtd, QEMU)"
}

# Milliseconds since the epoch, for the timings the lab prints.
now_ms() { date +%s%3N; }

# Lab hosts are named host-a, host-b, ...; index 0 is host-a at .2 (.1 is the bridge).
host_name() {
        local i=$1 letters=abcdefghijklmnopqrstuvwxyz
        printf 'host-%s' "${letters:i:1}"
}
host_ip() { printf '%s.%d' "$LAB_NET_PREFIX" $(($1 + 2)); }
host_netns() { printf '%s%s' "$LAB_NETNS_PREFIX" "$1"; }
host_dir() { printf '%s/hosts/%s' "$LAB_DIR" "$1"; }
host_sock() { printf '%s/run/libvirt/libvirt-sock' "$(host_dir "$1")"; }
host_uri() { printf 'qemu+unix:///system?socket=%s' "$(host_sock "$1")"; }

# virsh against one lab host's own libvirtd.
hvirsh() {
        local h=$1
        shift
        virsh -q -c "$(host_uri "$h")" "$@"
}

# The state file, written by "lab up", one object a line:
#   host NAME IP NETNS
#   vm NAME TIER HOST DISKS(vda,vdb)
LAB_STATE=$LAB_DIR/lab.state

state_exists() { [ -f "$LAB_STATE" ]; }
state_hosts() { awk '$1 == "host" { print $2 }' "$LAB_STATE" 2>/dev/null || true; }
state_host_ip() { awk -v h="$1" '$1 == "host" && $2 == h { print $3 }' "$LAB_STATE"; }
state_vms() { awk '$1 == "vm" { print $2 }' "$LAB_STATE" 2>/dev/null || true; }
vm_field() { # vm, field number (2 name, 3 tier, 4 host, 5 disks)
        awk -v v="$1" -v f="$2" '$1 == "vm" && $2 == v { print $f }' "$LAB_STATE"
}
vm_host() { vm_field "$1" 4; }
vm_tier() { vm_field "$1" 3; }
vm_disks() { vm_field "$1" 5 | tr , ' '; }
vm_console() { printf '%s/console/%s.log' "$(host_dir "$(vm_host "$1")")" "$1"; }

# Reads a pid file and prints the pid only if that process still runs the
# expected program, so a recycled pid is never signalled.
pid_alive() { # pidfile, substring of /proc/PID/cmdline
        local f=$1 want=$2 pid
        [ -s "$f" ] || return 1
        pid=$(tr -dc 0-9 < "$f")
        [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
        tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$want" || return 1
        printf '%s' "$pid"
}

# Stops one process we started: TERM, wait up to the deadline, then KILL.
stop_pidfile() { # pidfile, cmdline substring, label, [seconds]
        local f=$1 want=$2 label=$3 secs=${4:-10} pid i
        pid=$(pid_alive "$f" "$want") || {
                rm -f "$f"
                return 0
        }
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 10; i++)); do
                [ -d "/proc/$pid" ] || break
                # A zombie of ours is gone for every purpose here.
                grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
                sleep 0.1
        done
        if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
                warn "$label (pid $pid) ignored SIGTERM for ${secs}s, killing it"
                kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
}
