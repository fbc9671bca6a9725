#!/bin/bash
# bench/run.sh: lockstep's cut against its floor on the lab's real guests. Rounds
# are interleaved (floor, lockstep[, lockstep-flat], floor, ...) so that drift in
# the machine hits every method alike; prints medians and p90s, the ratios
# lockstep/floor and where lockstep's end-to-end time goes, and writes the raw
# rounds to bench/results/. Root; see bench/README.md.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
LABCTL=$REPO/deploy/lab/lab
export LOCKSTEP_LAB_DIR=${LOCKSTEP_LAB_DIR:-/var/tmp/lockstep-lab-bench}
LAB=$LOCKSTEP_LAB_DIR
BUILD=${LOCKSTEP_BUILD_DIR:-$REPO/build}
# Lab dirs others use (lab default, lab tests): only one lab can be up at a time.
OTHER_LABS=(/var/tmp/lockstep-lab /var/tmp/lockstep-lab-test)
BRIDGE=lsbr0
GROUP=shop
FLAT_GROUP=shop-flat

ROUNDS=10 WARMUP=1 HOSTS=2 VMS=3 SETTLE=20 GAP=2 WAIT=0
FLAT=auto KEEP_CUTS=0 KEEP_LAB=0 OUT='' REFERENCE=0 FLOOR_ORDER=--per-host

say() { printf 'bench: %s\n' "$*" >&2; }
die() { # message [exit code]
        printf 'bench: error: %s\n' "$1" >&2
        exit "${2:-1}"
}

usage() {
        cat << EOF
usage: bench/run.sh [options]        (as root)

  --rounds N      measured rounds of each method (default $ROUNDS)
  --warmup N      rounds of each before those, kept in the raw file only (default $WARMUP)
  --hosts N       lab hosts when this script brings the lab up (default $HOSTS; 1 = all
                  guests on one host, as in the project brief's figures)
  --vms N         guests when this script brings the lab up (default $VMS)
  --settle S      seconds to let the guests' workload run before the first round (default $SETTLE)
  --gap S         seconds between two rounds (default $GAP)
  --flat          also time lockstep on a one-tier group "$FLAT_GROUP" (restarts the lab's
  --no-flat       lockstepd with it); default: on when this script brought the lab up
  --serial-floor  the floor snapshots + thaws every VM in turn, whatever its host (default:
                  hosts in parallel, each host's VMs in turn, as lockstep's agents do; the
                  same thing on one host)
  --keep-cuts     leave lockstep's overlays in the chains (default: discard each cut)
  --keep-lab      leave a lab this script brought up running
  --wait S        if another lab is up, poll up to S seconds for it to go (default $WAIT)
  --out FILE      raw results (default bench/results/<UTC time>.json)
  --reference     also copy them to bench/results/reference.json

Environment: LOCKSTEP_LAB_DIR (default /var/tmp/lockstep-lab-bench), LOCKSTEP_BUILD_DIR
(default <repo>/build: lockstep, lockstepd and lockstep-agent are taken from there, and
the floor is built into it), LOCKSTEP_BENCH_SOURCE_REV (recorded as the source revision
when the build dir's sources are not a git checkout).
Exit: 0 done, 1 a round or a step failed, 2 usage, or another lab is up.
EOF
}

while (($#)); do
        case "$1" in
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --hosts) HOSTS=${2:?}; shift 2 ;;
        --vms) VMS=${2:?}; shift 2 ;;
        --settle) SETTLE=${2:?}; shift 2 ;;
        --gap) GAP=${2:?}; shift 2 ;;
        --wait) WAIT=${2:?}; shift 2 ;;
        --flat) FLAT=1; shift ;;
        --no-flat) FLAT=0; shift ;;
        --serial-floor) FLOOR_ORDER=''; shift ;;
        --keep-cuts) KEEP_CUTS=1; shift ;;
        --keep-lab) KEEP_LAB=1; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        --reference) REFERENCE=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" 2 ;;
        esac
done
for v in ROUNDS WARMUP HOSTS VMS SETTLE GAP WAIT; do
        [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v,,} must be a whole number" 2
done
((ROUNDS >= 1)) || die "--rounds must be at least 1" 2
[ "$(id -u)" = 0 ] || die "needs root (the lab: network namespaces, libvirtd, QEMU)" 2
for c in jq cmake virsh; do
        command -v "$c" > /dev/null || die "$c is missing (deploy/lab/lab deps; apt-get install cmake)" 2
done
HAVE_SQLITE=1
command -v sqlite3 > /dev/null || {
        HAVE_SQLITE=0
        say "sqlite3 is missing: lockstep's time breakdown (from its catalog) is left out"
}

now_us() { printf '%s' "${EPOCHREALTIME/[.,]/}"; }

# ---- binaries ------------------------------------------------------------------

LOCKSTEP=$BUILD/coordinator/lockstep
LOCKSTEPD=$BUILD/coordinator/lockstepd
if [ ! -x "$LOCKSTEP" ] || [ ! -x "$LOCKSTEPD" ] || [ ! -x "$BUILD/agent/lockstep-agent" ]; then
        say "lockstep is not built in $BUILD: building it (deploy/build.sh)"
        "$REPO/deploy/build.sh" "$BUILD" > /dev/null || die "deploy/build.sh $BUILD failed"
fi
# The top level builds bench/ once it has add_subdirectory(bench); until then the
# floor is built alone, into its own directory under the build dir.
if grep -qE '^[^#]*add_subdirectory\(bench\)' "$REPO/CMakeLists.txt" && [ -f "$BUILD/CMakeCache.txt" ] &&
        [ "$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")" = "$REPO" ]; then
        cmake --build "$BUILD" --target lockstep-bench-floor > /dev/null || die "building the floor failed"
        FLOOR=$BUILD/bench/lockstep-bench-floor
else
        if ! cmake -S "$BENCH" -B "$BUILD/bench-floor" > /dev/null || ! cmake --build "$BUILD/bench-floor" > /dev/null; then
                die "building the floor (bench/CMakeLists.txt) failed"
        fi
        FLOOR=$BUILD/bench-floor/lockstep-bench-floor
fi

# The revision of the tree the build dir was configured from (its binaries are
# assumed built from it), or LOCKSTEP_BENCH_SOURCE_REV.
git_rev() {
        local src
        src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2> /dev/null || true)
        if [ -n "$src" ] && git -C "$src" rev-parse HEAD > /dev/null 2>&1; then
                printf '%s%s' "$(git -C "$src" rev-parse --short HEAD)" \
                        "$(git -C "$src" diff --quiet HEAD -- . ':!bench' 2> /dev/null || echo '+uncommitted changes')"
        else
                printf '%s' "${LOCKSTEP_BENCH_SOURCE_REV:-unknown}"
        fi
}
# Taken now, not at the end: the tree may change while the rounds run.
SOURCE_REV=$(git_rev)

# ---- the lab -------------------------------------------------------------------

lab() { "$LABCTL" "$@"; }

# Prints the dir of a lab other than ours that is up or coming up: the owner of
# the bridge, or a known lab dir holding a lab (its marker comes before the bridge).
other_lab() {
        local owner d
        owner=$(sed -n 's/^lockstep-lab //p' "/sys/class/net/$BRIDGE/ifalias" 2> /dev/null || true)
        if [ -n "$owner" ] && [ "$owner" != "$LAB" ]; then
                printf '%s' "$owner"
                return 0
        fi
        for d in "${OTHER_LABS[@]}"; do
                if [ "$d" != "$LAB" ] && [ -e "$d/.lockstep-lab" ]; then
                        printf '%s' "$d"
                        return 0
                fi
        done
        return 1
}

BROUGHT_UP=0
cleanup() {
        local rc=$?
        if ((BROUGHT_UP && !KEEP_LAB)); then
                say "tearing down the lab this run brought up ($LAB)"
                lab down > /dev/null 2>&1 || say "lab down failed: run LOCKSTEP_LAB_DIR=$LAB $LABCTL down"
        elif ((BROUGHT_UP)); then
                say "lab left up (--keep-lab): LOCKSTEP_LAB_DIR=$LAB $LABCTL down"
        fi
        [ -n "${WORK:-}" ] && rm -rf "$WORK"
        exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -e "$LAB/.lockstep-lab" ]; then
        lab status > /dev/null 2>&1 || die "the lab in $LAB is not healthy (lab status); bring it down first: LOCKSTEP_LAB_DIR=$LAB $LABCTL down"
        have=$(awk '$1 == "host"' "$LAB/lab.state" | wc -l)
        if ((have != HOSTS)); then
                say "using the lab already up in $LAB ($have host(s)); --hosts $HOSTS does not apply to it"
                HOSTS=$have
        fi
        say "using the lab already up in $LAB (it stays up)"
else
        waited=0
        while busy=$(other_lab); do
                if ((waited >= WAIT)); then
                        die "another lab is up in $busy: only one lab can run on this machine (bridge $BRIDGE). Wait for it, or take it down: LOCKSTEP_LAB_DIR=$busy $LABCTL down (or pass --wait SECONDS)" 2
                fi
                ((waited == 0)) && say "another lab is up in $busy; waiting up to ${WAIT}s"
                sleep 10
                waited=$((waited + 10))
        done
        say "bringing up a lab in $LAB: $HOSTS host(s), $VMS guests"
        BROUGHT_UP=1
        if ! LOCKSTEP_BUILD_DIR=$BUILD lab up --hosts "$HOSTS" --vms "$VMS" > /dev/null; then
                if busy=$(other_lab); then
                        BROUGHT_UP=0
                        die "another lab came up in $busy meanwhile" 2
                fi
                die "lab up failed (see above)"
        fi
fi
pid=$(tr -dc 0-9 < "$LAB/pids/lockstepd.pid" 2> /dev/null || true)
if [ -z "$pid" ] || ! grep -q lockstepd "/proc/$pid/cmdline" 2> /dev/null; then
        die "lockstepd does not run in the lab $LAB (was lockstep built before lab up?)"
fi

WORK=$(mktemp -d /tmp/lockstep-bench.XXXXXX)
CONFIG=$LAB/coordinator.yaml
CATALOG=$(sed -n 's/^catalog: *"\(.*\)"$/\1/p' "$CONFIG")

# Every VM as VM=URI for the floor, from the lab's state file.
MEMBERS=()
while read -r _ vm _ host _; do
        MEMBERS+=("$vm=qemu+unix:///system?socket=$LAB/hosts/$host/run/libvirt/libvirt-sock")
done < <(awk '$1 == "vm"' "$LAB/lab.state")
((${#MEMBERS[@]})) || die "no VMs in $LAB/lab.state"

# The same VMs with their tier in $GROUP (--tier T VM=URI), for a floor that
# freezes tier by tier as lockstep does a group of several tiers.
TIER_MEMBERS=()
groups_json=$("$LOCKSTEP" -c "$CONFIG" groups --json) || die "lockstep groups --json failed"
if [ "$(jq --arg g "$GROUP" '[.[] | select(.name == $g)][0].tiers | length' <<< "$groups_json")" -gt 1 ]; then
        while read -r t vm host; do
                TIER_MEMBERS+=(--tier "$t" "$vm=qemu+unix:///system?socket=$LAB/hosts/$host/run/libvirt/libvirt-sock")
        done < <(jq -r --arg g "$GROUP" '[.[] | select(.name == $g)][0].tiers | to_entries[]
                | .key as $t | .value.members[] | "\($t) \(split("@")[0]) \(split("@")[1])"' <<< "$groups_json")
fi

# The flat group: every member in one tier, so the agents freeze them all at once
# as the floor does. It needs lockstepd restarted on a config that has it, which
# is done only to a lab this script brought up.
[ "$FLAT" = auto ] && FLAT=$BROUGHT_UP
if ((FLAT)) && ((!BROUGHT_UP)); then
        say "--flat skipped: it restarts lockstepd, and this lab is not this run's"
        FLAT=0
fi
if ((FLAT)); then
        mkdir -p "$LAB/bench"
        flat=$LAB/bench/coordinator.yaml
        # groups: is the lab config's last key, so a group can be appended to it.
        [ "$(grep -E '^[a-z_]+:' "$CONFIG" | tail -n 1)" = "groups:" ] ||
                die "$CONFIG does not end with its groups: list; cannot add $FLAT_GROUP"
        {
                cat "$CONFIG"
                echo "  - name: $FLAT_GROUP"
                echo "    tiers:"
                echo "      - name: all"
                printf '        members: [%s]\n' "$(awk '$1 == "vm" { printf "%s%s@%s", n++ ? ", " : "", $2, $4 }' "$LAB/lab.state")"
                echo "    mode: quiesce"
                echo "    lease_s: 30"
        } > "$flat"
        "$LOCKSTEPD" -c "$flat" --check-config > /dev/null 2>&1 || die "lockstepd --check-config $flat failed"
        kill -TERM "$pid"
        for _ in $(seq 100); do
                [ -d "/proc/$pid" ] || break
                sleep 0.1
        done
        [ ! -d "/proc/$pid" ] || die "lockstepd (pid $pid) did not stop"
        setsid "$LOCKSTEPD" -c "$flat" >> "$LAB/logs/lockstepd.log" 2>&1 < /dev/null &
        echo $! > "$LAB/pids/lockstepd.pid" # so that lab down stops this one
        for _ in $(seq 50); do
                "$LOCKSTEP" -c "$flat" groups > /dev/null 2>&1 && break
                sleep 0.1
        done
        "$LOCKSTEP" -c "$flat" groups > /dev/null 2>&1 || die "lockstepd did not come back with $flat"
        CONFIG=$flat
        say "lockstepd restarted with group $FLAT_GROUP (one tier) next to $GROUP"
fi

if ((SETTLE)); then
        say "letting the workload settle for ${SETTLE}s"
        sleep "$SETTLE"
fi

# ---- rounds --------------------------------------------------------------------

RAW=$WORK/rounds.jsonl
: > "$RAW"

# One floor round (the floor discards its own overlays after the timed part).
floor_round() { # method pair warmup member-arg...
        local out t0 t1 m=$1 pair=$2 warm=$3
        shift 3
        t0=$(now_us)
        out=$("$FLOOR" --rounds 1 --prefix bench-floor ${FLOOR_ORDER:+"$FLOOR_ORDER"} "$@") || {
                printf '%s\n' "$out" >&2
                return 1
        }
        t1=$(now_us)
        jq -c --arg m "$m" --argjson pair "$pair" --argjson warm "$warm" --argjson t0 "$t0" --argjson t1 "$t1" \
                '. + {method: $m, pair: $pair, warmup: $warm, process_wall_ms: (($t1 - $t0) / 1000),
                      phases: {before_first_freeze: (.e2e_ms - .group_window_ms), freeze_all: .all_frozen_ms,
                               frozen_to_first_snapshot: 0,
                               snapshots_and_thaws: (.group_window_ms - .all_frozen_ms), after_last_thaw: 0}
                              | map_values(. * 1000 | round / 1000)}' \
                <<< "$out" >> "$RAW"
}

# lockstep's phases for one cut, from its catalog (lockstepd's, agents' and the
# CLI's clocks are the same machine's CLOCK_REALTIME).
breakdown() { # txid cli_start_us cli_end_us
        local row
        ((HAVE_SQLITE)) || {
                echo null
                return 0
        }
        row=$(sqlite3 -readonly -json "$CATALOG" "
                select t.started_us s, t.decided_us d, t.finished_us f,
                  (select min(at_us) from audit where txid = t.txid and step = 'FREEZE' and dir = 'sent') fs,
                  (select max(at_us) from audit where txid = t.txid and step = 'FREEZE' and dir = 'received') fr,
                  (select min(at_us) from audit where txid = t.txid and step = 'SNAPSHOT' and dir = 'sent') ss,
                  (select max(at_us) from audit where txid = t.txid and step = 'SNAPSHOT' and dir = 'received') sr,
                  (select min(at_us) from audit where txid = t.txid and step = 'DECIDE' and dir = 'sent') ds,
                  (select max(at_us) from audit where txid = t.txid and step = 'DECIDE' and dir = 'received') dr,
                  (select min(frozen_at_us) from members where txid = t.txid) f0,
                  (select max(frozen_at_us) from members where txid = t.txid) f1,
                  (select max(frozen_at_us + freeze_us) from members where txid = t.txid) fe,
                  (select max(thawed_at_us) from members where txid = t.txid) te
                from txns t where t.txid = '$1'") || {
                echo null
                return 0
        }
        jq -c --argjson c0 "$2" --argjson c1 "$3" '.[0] | def ms(a; b): ((b - a) / 1000);
                {cli_to_begin: ms($c0; .s), begin_to_freeze_sent: ms(.s; .fs),
                 freeze_sent_to_first_freeze: ms(.fs; .f0), freeze_skew: ms(.f0; .f1),
                 first_freeze_to_all_frozen: ms(.f0; .fe), all_frozen_to_freeze_reply: ms(.fe; .fr),
                 freeze_reply_to_snapshot_sent: ms(.fr; .ss), snapshot_sent_to_last_thaw: ms(.ss; .te),
                 last_thaw_to_snapshot_reply: ms(.te; .sr), snapshot_reply_to_decided: ms(.sr; .d),
                 decided_to_decide_reply: ms(.d; .dr), decide_reply_to_finished: ms(.dr; .f),
                 finished_to_cli_result: ms(.f; $c1), cli_total: ms($c0; $c1)}
                | map_values(. * 1000 | round / 1000)' <<< "$row"
}

# One lockstep cut through the CLI, timed from its start to its result; then its
# overlays are discarded with the floor's discard unless --keep-cuts.
lockstep_round() { # method group pair warmup
        local out t0 t1 id state bd disc=null
        t0=$(now_us)
        out=$("$LOCKSTEP" -c "$CONFIG" snapshot create "$2" --json) || true
        t1=$(now_us)
        id=$(jq -r '.id // empty' <<< "$out" 2> /dev/null || true)
        state=$(jq -r '.state // empty' <<< "$out" 2> /dev/null || true)
        if [ "$state" != committed ] || ! [[ $id =~ ^[A-Za-z0-9._-]+$ ]]; then
                printf '%s\n' "$out" >&2
                say "$1 round $3: lockstep snapshot create $2: state '${state:-none}'"
                return 1
        fi
        bd=$(breakdown "$id" "$t0" "$t1")
        if ((!KEEP_CUTS)); then
                disc=$("$FLOOR" --discard "$id" "${MEMBERS[@]}") || {
                        printf '%s\n' "$disc" >&2
                        say "$1 round $3: discarding cut $id failed"
                        return 1
                }
        fi
        jq -c --arg m "$1" --argjson pair "$3" --argjson warm "$4" --argjson t0 "$t0" --argjson t1 "$t1" \
                --argjson bd "$bd" --argjson disc "$disc" \
                '{method: $m, pair: $pair, warmup: $warm, ok: (.state == "committed"), snapshot: .id,
                  e2e_ms: (($t1 - $t0) / 1000), group_window_ms, freeze_skew_ms, max_frozen_ms,
                  all_frozen_ms: ($bd.first_freeze_to_all_frozen // null),
                  members: [.members[] | {vm, agent, tier, freeze_ms, snapshot_ms, thaw_ms, frozen_ms}],
                  breakdown: $bd,
                  phases: (if $bd == null then null else
                    {before_first_freeze: ($bd.cli_to_begin + $bd.begin_to_freeze_sent + $bd.freeze_sent_to_first_freeze),
                     freeze_all: $bd.first_freeze_to_all_frozen,
                     frozen_to_first_snapshot: ($bd.all_frozen_to_freeze_reply + $bd.freeze_reply_to_snapshot_sent),
                     snapshots_and_thaws: $bd.snapshot_sent_to_last_thaw,
                     after_last_thaw: ($bd.last_thaw_to_snapshot_reply + $bd.snapshot_reply_to_decided +
                                       $bd.decided_to_decide_reply + $bd.decide_reply_to_finished +
                                       $bd.finished_to_cli_result)} | map_values(. * 1000 | round / 1000) end),
                  discard: $disc, cut: .}' <<< "$out" >> "$RAW"
}

METHODS=(floor)
((${#TIER_MEMBERS[@]})) && METHODS+=(floor-tiers)
METHODS+=(lockstep)
((FLAT)) && METHODS+=(lockstep-flat)
total=$((WARMUP + ROUNDS))
say "$total rounds of ${METHODS[*]} (the first $WARMUP a warm-up), interleaved, ${GAP}s apart"
failed=0
for ((i = 1; i <= total; i++)); do
        warm=false
        ((i <= WARMUP)) && warm=true
        for m in "${METHODS[@]}"; do
                case $m in
                floor) floor_round floor "$i" "$warm" "${MEMBERS[@]}" || failed=1 ;;
                floor-tiers) floor_round floor-tiers "$i" "$warm" "${TIER_MEMBERS[@]}" || failed=1 ;;
                lockstep) lockstep_round lockstep "$GROUP" "$i" "$warm" || failed=1 ;;
                lockstep-flat) lockstep_round lockstep-flat "$FLAT_GROUP" "$i" "$warm" || failed=1 ;;
                esac
                ((failed)) && break 2
                tail -n 1 "$RAW" | jq -r '"\(.method) \(.pair)\(if .warmup then " (warm-up)" else "" end): window \(.group_window_ms|floor) ms, skew \(.freeze_skew_ms|floor) ms, end-to-end \(.e2e_ms|floor) ms"' >&2
                sleep "$GAP"
        done
done
((failed)) && say "stopped after a failed round; the raw file keeps what was measured"

# ---- results -------------------------------------------------------------------

machine=$(jq -n --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
        --argjson cpus "$(nproc)" --argjson mem "$(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo)" \
        --arg kernel "$(uname -r)" --arg os "$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)" \
        --arg libvirt "$(libvirtd --version 2> /dev/null | awk '{ print $NF }')" \
        --arg qemu "$(qemu-system-x86_64 --version | head -n 1 | awk '{ print $4 }')" \
        --arg kvm "$([ -e /dev/kvm ] && echo yes || echo no)" \
        '{cpu: $cpu, cpus: $cpus, memory_mib: $mem, kernel: $kernel, os: $os, libvirt: $libvirt,
          qemu: $qemu, dev_kvm: $kvm, guests: "TCG (the lab defines its domains with type qemu)"}')
params=$(jq -n --argjson rounds "$ROUNDS" --argjson warmup "$WARMUP" --argjson gap "$GAP" \
        --argjson settle "$SETTLE" --argjson hosts "$HOSTS" \
        --argjson vms "$(awk '$1 == "vm"' "$LAB/lab.state" | wc -l)" \
        --argjson keep "$KEEP_CUTS" --arg rev "$SOURCE_REV" --arg build "$BUILD" \
        --arg placement "$(awk '$1 == "vm" { printf "%s%s@%s", n++ ? " " : "", $2, $4 }' "$LAB/lab.state")" \
        --arg methods "${METHODS[*]}" --argjson complete "$((1 - failed))" \
        --arg order "$([ -n "$FLOOR_ORDER" ] && echo per-host || echo serial)" \
        '{rounds: $rounds, warmup: $warmup, gap_s: $gap, settle_s: $settle, hosts: $hosts, vms: $vms,
          placement: $placement, methods: ($methods | split(" ")), floor_order: $order,
          lockstep_cuts_discarded: ($keep == 0),
          source_rev: $rev, build_dir: $build, complete: ($complete == 1)}')

# shellcheck disable=SC2016 # jq's own $variables
SUMMARY_JQ='
def median: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2]
            else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def p90: sort | if length == 0 then null else .[((length * 0.9) | ceil) - 1] end;
def r2: if . == null then null else (. * 100 | round) / 100 end;
def r3: if . == null then null else (. * 1000 | round) / 1000 end;
def stats: map(select(. != null)) | {median: (median | r3), p90: (p90 | r3), min: min, max: max, n: length};
[.[] | select(.warmup | not)] as $r
| reduce ($r | map(.method) | unique)[] as $m ({};
    ([$r[] | select(.method == $m)]) as $x
    | .[$m] = {
        rounds: ($x | length),
        group_window_ms: ([$x[].group_window_ms] | stats),
        freeze_skew_ms: ([$x[].freeze_skew_ms] | stats),
        all_frozen_ms: ([$x[].all_frozen_ms] | stats),
        max_frozen_ms: ([$x[].max_frozen_ms] | stats),
        e2e_ms: ([$x[].e2e_ms] | stats),
        freeze_ms: ([$x[].members[].freeze_ms] | stats),
        snapshot_ms: ([$x[].members[].snapshot_ms] | stats),
        thaw_ms: ([$x[].members[].thaw_ms] | stats),
        frozen_ms: ([$x[].members[].frozen_ms] | stats),
        phases_ms: (if ($x[0].phases // null) == null then null else
          reduce ($x[0].phases | keys_unsorted[]) as $k ({}; .[$k] = ([$x[].phases[$k]] | stats)) end),
        breakdown_ms: (if ($x[0].breakdown // null) == null then null else
          reduce ($x[0].breakdown | keys_unsorted[]) as $k ({}; .[$k] = ([$x[].breakdown[$k]] | stats)) end)
      })
| . as $s
# Each lockstep method against the floor that freezes as it does: the tiered
# group against floor-tiers when there is one, the flat group against floor.
| .ratios = (reduce (keys[] | select(startswith("lockstep"))) as $m ({};
    (if $m == "lockstep" and ($s | has("floor-tiers")) then "floor-tiers" else "floor" end) as $b
    | .[$m + "/" + $b] = (reduce ("group_window_ms", "freeze_skew_ms", "all_frozen_ms", "max_frozen_ms",
                                "e2e_ms", "freeze_ms", "snapshot_ms", "thaw_ms", "frozen_ms") as $k ({};
      .[$k] = (if ($s[$b][$k].median // 0) > 0 and $s[$m][$k].median != null
               then ($s[$m][$k].median / $s[$b][$k].median | r2) else null end)))))'

summary=$(jq -s "$SUMMARY_JQ" "$RAW")
[ -n "$OUT" ] || OUT=$BENCH/results/$(date -u +%Y-%m-%dT%H%M%SZ).json
mkdir -p "$(dirname "$OUT")"
jq -s --argjson machine "$machine" --argjson params "$params" --argjson summary "$summary" \
        --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        '{measured_at: $at, machine: $machine, params: $params, summary: $summary, rounds: .}' "$RAW" > "$OUT"
((REFERENCE)) && cp "$OUT" "$BENCH/results/reference.json"

# The tables: median (p90) per method; each lockstep method's ratio to its
# floor's median (floor-tiers for the tiered group, when measured) and what it
# adds to it.
jq -r --argjson p "$params" -n '"\($p.rounds) rounds, \($p.vms) guests on \($p.hosts) host(s) [\($p.placement)]; ms, median (p90)"'
jq -r --argjson s "$summary" -n '
def f: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
def cell($m; $k): "\($s[$m][$k].median | f) (\($s[$m][$k].p90 | f))";
def base($m): if $m == "lockstep" and ($s | has("floor-tiers")) then "floor-tiers" else "floor" end;
def ratio($m; $k): if ($s[base($m)][$k].median // 0) < 1 then "-" else "x\($s.ratios[$m + "/" + base($m)][$k])" end;
def plus($m; $k): ($s[$m][$k].median - $s[base($m)][$k].median) | if . >= 0 then "+\(f)" else f end;
($s | keys | map(select(startswith("lockstep")))) as $ms
| ($s | keys | map(select(startswith("floor")))) as $fs
| (["metric"] + $fs + ($ms | map(., "ratio vs " + base(.), "added")) | @tsv),
  (["group window", "group_window_ms"], ["freeze skew", "freeze_skew_ms"], ["all frozen after", "all_frozen_ms"],
   ["max frozen (a VM)", "max_frozen_ms"], ["freeze (per VM)", "freeze_ms"], ["snapshot (per VM)", "snapshot_ms"],
   ["thaw (per VM)", "thaw_ms"], ["frozen (per VM)", "frozen_ms"], ["end-to-end", "e2e_ms"]) as [$name, $k]
  | [$name] + [$fs[] | cell(.; $k)] + [$ms[] | cell(.; $k), ratio(.; $k), plus(.; $k)] | @tsv' | column -t -s $'\t'
if [ "$(jq -r '.lockstep.phases_ms != null' <<< "$summary")" = true ]; then
        echo
        echo "end-to-end by phase, ms, median (the floor has no votes and no result to wait for):"
        jq -r --argjson s "$summary" -n '
        def f: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
        ($s | keys | map(select(. != "ratios"))) as $ms
        | (["phase"] + $ms | @tsv),
          (($s.lockstep.phases_ms | keys_unsorted[]) as $k
           | [$k] + [$ms[] | $s[.].phases_ms[$k].median | f] | @tsv)' | column -t -s $'\t'
        echo
        echo "lockstep step by step (lockstepd's catalog audit times, agents' member times), ms, median:"
        jq -r --argjson s "$summary" -n '
        def f: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
        ($s | keys | map(select(startswith("lockstep")))) as $ms
        | (["step"] + $ms | @tsv),
          (($s.lockstep.breakdown_ms | keys_unsorted[]) as $k
           | [$k] + [$ms[] | $s[.].breakdown_ms[$k].median | f] | @tsv)' | column -t -s $'\t'
fi
echo
echo "raw results: $OUT"
((failed == 0))
