#!/usr/bin/env bash
# bench/scale.sh: one lockstepd against N agents on the sim backend (real
# lockstep-agent processes, one per host: real keys, journals and nng over TCP
# on loopback), one group of N x M members, a few cuts. Per cut: end to end
# (CLI start to result), lockstepd's own CPU time and RSS, the agents' RSS,
# catalog growth, the group window and each member's frozen time, and when
# each phase's last answer came.
#
#   bench/scale.sh --agents N --vms M [--cuts C] [--latency freeze=45,snapshot=17,thaw=6]
#                  [--groups G [--minutes W] [--max-cuts K]] [--retain R] [--history-members H]
#                  [--idle S] [--time-window S] [--json] [--out FILE] [--keep]
#                  [--build DIR]
#   bench/scale.sh --plot FILE.jsonl...   (round time against N, SVG beside the first file)
#
# --json prints one object per cut (agents, vms, state, e2e_ms, lockstepd_ms,
# lockstepd_rss_mb, ...); --out appends them to FILE. lockstepd_ms is the CPU
# time lockstepd used during the cut (utime + stime, 10 ms ticks; all its
# threads), lockstepd_op_ms the cut's own thread (signing, reply checks,
# catalog, report; lockstepd logs it as thread_cpu_ms), lockstepd_op_minflt the
# page faults of that thread (fresh pages; costly where page tables are
# virtualised): on this
# 2-core machine the agents' own work shares the cores, so wall time says
# little about lockstepd's part; on a fleet each agent has its own host.
# --groups G: instead of one big group, G groups (group i: agent i's M VMs),
# all scheduled every minute, for W whole minutes (default 2) under lockstepd's
# max_cuts K (default 8): one object with the committed cuts per minute, the
# schedule lag of every run (started against due) and the skipped runs.
# --retain R: the big group keeps its last R cuts (retention keep_last, default
# 8; 0 keeps every one) and each cut past R is followed by `lockstep prune`,
# timed apart (prune_ms, prune_lockstepd_ms): a long run's chains stay short, as
# a fleet's do (the sim's chain holds 32 links, as a real one would grow).
# --history-members H: lockstepd's history_keep_members (default 1,000,000);
# each cut's object says how many member rows the catalog holds
# (catalog_member_rows), read after the cut and its prune.
# --time-window S: the agents' time_window_s (default 30): on this 2-core rig,
# 1,000 agents' FREEZEs can reach the last of them more than 30 s after issue,
# which it then refuses as too old; a fleet's agents each have their own cores.
# --idle S: before any cut, the agents' memory (RSS, PSS and USS, executor + network
# half + guardian) and their CPU over S idle seconds.
# Everything (keys, journals, the sim's state, the catalog) lives under
# ${TMPDIR:-/var/tmp}: TMPDIR=/dev/shm takes the rig's disk out of the agents'
# rounds (on an ext4 without a journal, each atomic write's new inode is a
# search; bench/README.md, "A faster machine of the same kind").
# Root is not needed; 1,000 agents need about 3 processes and 30 threads each
# (kernel.pid_max is raised to 4194304 when root and lower).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
BUILD=${LOCKSTEP_BUILD_DIR:-$REPO/build}
AGENTS=10 VMS=10 CUTS=3 LATENCY= TIME_WINDOW=30 JSON=0 OUT= KEEP=0 PLOT=0 NGROUPS=0 MINUTES=2 MAX_CUTS= IDLE=0 RETAIN=8 HIST_MEMBERS=
say() { printf 'scale: %s\n' "$*" >&2; }
die() { printf 'scale: error: %s\n' "$*" >&2; exit 1; }

# Mean over the agents of executor + network half + guardian: RSS (VmRSS, which
# counts each shared library page in every process that maps it: libvirt's
# library tree is ~13 MiB of those in the executor and in the guardian), PSS
# (Pss, each shared page split among the processes that map it) or USS
# (Private_Clean + Private_Dirty: what the host gets back when the agent ends).
AGENT_PIDS=() # every agent's executor, network half and guardian (agent_pids)
agent_pids() {
        local list
        list=$(cat "$T"/a*/pid | tr '\n' ' ')
        mapfile -t AGENT_PIDS < <(ps -e -o pid=,ppid= | awk -v list="$list" '
                BEGIN { n = split(list, a, " "); for (i = 1; i <= n; i++) e[a[i]] = 1 }
                ($1 in e) || ($2 in e) { print $1 }')
}
agents_mem_mb() { # the keys, as a regex: VmRSS (from status), or smaps_rollup's
        local file=status
        [ "$1" = '^VmRSS:$' ] || file=smaps_rollup
        printf "/proc/%s/$file\n" "${AGENT_PIDS[@]}" | xargs cat 2> /dev/null |
                awk -v k="$1" -v n="$AGENTS" '$1 ~ k { t += $2 } END { printf "%.1f", t / n / 1024 }'
}
agents_rss_mb() { agents_mem_mb '^VmRSS:$'; }
agents_pss_mb() { agents_mem_mb '^Pss:$'; }
agents_uss_mb() { agents_mem_mb '^Private_(Clean|Dirty):$'; }

while (($#)); do
        case $1 in
        --agents) AGENTS=$2; shift 2 ;;
        --vms) VMS=$2; shift 2 ;;
        --cuts) CUTS=$2; shift 2 ;;
        --latency) LATENCY=$2; shift 2 ;;
        --time-window) TIME_WINDOW=$2; shift 2 ;;
        --json) JSON=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --build) BUILD=$2; shift 2 ;;
        --groups) NGROUPS=$2; shift 2 ;;
        --minutes) MINUTES=$2; shift 2 ;;
        --max-cuts) MAX_CUTS=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --retain) RETAIN=$2; shift 2 ;;
        --history-members) HIST_MEMBERS=$2; shift 2 ;;
        --plot) PLOT=1; shift; break ;;
        -h | --help) awk 'NR > 1 && /^set -e/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "scale: unknown option $1 (--help)" >&2; exit 2 ;;
        esac
done

# ---- the plot -------------------------------------------------------------------
if [ "$PLOT" = 1 ]; then
        (($#)) || die "--plot needs the JSONL files of runs"
        command -v gnuplot > /dev/null || die "gnuplot missing (apt-get install gnuplot-nox)"
        svg=${1%.jsonl}.svg dat=$(mktemp)
        # One line per (latency, agents): medians of e2e and lockstepd's CPU time.
        cat "$@" | jq -rs 'map(select(.state == "committed")) | group_by([.latency, .agents])[] |
                (map(.e2e_ms) | sort | .[length / 2 | floor]) as $e |
                (map(.lockstepd_ms) | sort | .[length / 2 | floor]) as $l |
                "\(.[0].latency) \(.[0].agents) \(.[0].members) \($e) \($l)"' | sort -k1,1 -k2n > "$dat"
        gnuplot << EOF
set terminal svg size 900,520 dynamic
set output '$svg'
set title 'lockstep: one cut of N agents x 10 VMs (sim backend, 2 cores shared by all)'
set xlabel 'agents (N)'
set ylabel 'ms'
set logscale xy
set key top left
set grid
plot '< grep "^zero " $dat' using 2:4 with linespoints title 'end to end, zero sim latency', \
     '< grep "^zero " $dat' using 2:5 with linespoints title 'lockstepd CPU, zero sim latency', \
     '< grep "^lab " $dat' using 2:4 with linespoints title 'end to end, lab latencies', \
     '< grep "^lab " $dat' using 2:5 with linespoints title 'lockstepd CPU, lab latencies'
EOF
        rm -f "$dat"
        say "plot: $svg"
        exit 0
fi

for v in AGENTS VMS CUTS MINUTES; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v,,} needs a positive integer"
done
[[ $NGROUPS =~ ^[0-9]+$ ]] && [ "$NGROUPS" -le "$AGENTS" ] || die "--groups needs 0..--agents (group i is agent i's VMs)"
[[ $RETAIN =~ ^[0-9]+$ ]] || die "--retain needs 0 or a positive integer"
[ -z "$MAX_CUTS" ] || [[ $MAX_CUTS =~ ^[1-9][0-9]*$ ]] || die "--max-cuts needs a positive integer"
members=$((AGENTS * VMS))
[ "$members" -le 10000 ] || die "$AGENTS x $VMS = $members members: a group holds at most 10000"
for b in coordinator/lockstepd coordinator/lockstep agent/lockstep-agent; do
        [ -x "$BUILD/$b" ] || die "$BUILD/$b missing: build first (deploy/build.sh $BUILD) or set --build"
done
command -v jq > /dev/null || die "jq missing"
lat_name=zero sim_lat="latency freeze=0 snapshot=0 thaw=0 check=0 ga_ping=0 discard=0"
if [ -n "$LATENCY" ]; then
        [[ $LATENCY =~ ^([a-z_]+=[0-9]+,?)+$ ]] || die "--latency: like freeze=45,snapshot=17,thaw=6"
        lat_name=lab sim_lat="latency check=0 ga_ping=0 discard=0 ${LATENCY//,/ }"
fi
need_pids=$((AGENTS * 40 + 2000))
if [ "$(cat /proc/sys/kernel/pid_max)" -lt "$need_pids" ]; then
        [ "$(id -u)" = 0 ] || die "kernel.pid_max $(cat /proc/sys/kernel/pid_max) < $need_pids for $AGENTS agents (run as root to raise it)"
        say "raising kernel.pid_max to 4194304 ($AGENTS agents need about $need_pids)"
        echo 4194304 > /proc/sys/kernel/pid_max
fi
ulimit -n 65536 2> /dev/null || true

T=$(mktemp -d "${TMPDIR:-/var/tmp}/lockstep-scale.XXXXXX")
PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
        for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
        if [ "$KEEP" = 1 ]; then say "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
# bash skips the EXIT trap on a signal it does not trap: a run stopped with
# kill or ^C left its agents' dirs behind.
trap 'exit 143' TERM
trap 'exit 130' INT

LS=$BUILD/coordinator/lockstep
"$LS" keygen --out "$T/coord" > /dev/null
"$LS" keygen --out "$T/reader" > /dev/null

# Ports in a row from a base nobody listens on, below the ephemeral range.
port_base=$((20000 + RANDOM % 2000))
t0=$EPOCHREALTIME
say "$AGENTS agents x $VMS VMs ($lat_name latency): writing keys and configs"
for a in $(seq 1 "$AGENTS"); do
        id=a$a d=$T/$id
        mkdir -p "$d"
        "$LS" keygen --out "$T/$id" > /dev/null
        {
                echo "state_dir $d/sim"
                for v in $(seq 1 "$VMS"); do echo "domain ${id}v$v disks=vda"; done
                echo "$sim_lat"
        } > "$d/sim.txt"
        cat > "$d/agent.yaml" << YAML
id: $id
listen: tcp://127.0.0.1:$((port_base + a))
key: $T/$id.key
authorized:
  - name: coordinator
    pubkey: $T/coord.pub
    roles: [snapshot, revert, delete, admin]
backend: sim
sim_config: $d/sim.txt
journal_dir: $d/journal
lease_max_s: 300
guest_agent_timeout_s: 5
time_window_s: $TIME_WINDOW
YAML
done
say "starting $AGENTS agents"
for a in $(seq 1 "$AGENTS"); do
        "$BUILD/agent/lockstep-agent" -c "$T/a$a/agent.yaml" >> "$T/a$a/agent.log" 2>&1 &
        PIDS+=("$!")
        echo $! > "$T/a$a/pid"
done
for a in $(seq 1 "$AGENTS"); do
        for _ in $(seq 1 1200); do
                grep -q 'listening on' "$T/a$a/agent.log" 2> /dev/null && break
                kill -0 "$(cat "$T/a$a/pid")" 2> /dev/null || die "agent a$a died: $(tail -n 2 "$T/a$a/agent.log")"
                sleep 0.05
        done
        grep -q 'listening on' "$T/a$a/agent.log" || die "agent a$a did not come up in 60 s"
done
say "agents up in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s"
agent_pids
agents_ticks() {
        printf "/proc/%s/stat\n" "${AGENT_PIDS[@]}" | xargs cat 2> /dev/null | awk '{ t += $14 + $15 } END { print t + 0 }'
}
if [ "$IDLE" -gt 0 ]; then
        k0=$(agents_ticks)
        sleep "$IDLE"
        k1=$(agents_ticks)
        say "idle agents over ${IDLE} s: $(agents_rss_mb) MB RSS, $(agents_pss_mb) MB PSS, $(agents_uss_mb) MB USS each (executor + network half + guardian), CPU $(awk -v d="$((k1 - k0))" -v s="$IDLE" -v n="$AGENTS" 'BEGIN {printf "%.2f", d / s / n}') % each"
fi

{
        echo "control: ipc://$T/control.sock"
        echo "key: $T/coord.key"
        echo "catalog: $T/catalog.db"
        echo "counter_file: $T/coord.counter"
        echo "step_timeout_s: 60"
        [ -z "$MAX_CUTS" ] || echo "max_cuts: $MAX_CUTS"
        [ -z "$HIST_MEMBERS" ] || echo "history_keep_members: $HIST_MEMBERS"
        echo "agents:"
        for a in $(seq 1 "$AGENTS"); do
                printf '  - {id: a%s, url: "tcp://127.0.0.1:%s", pubkey: %s}\n' "$a" $((port_base + a)) "$T/a$a.pub"
        done
        echo "groups:"
        if [ "$NGROUPS" = 0 ]; then
                echo "  - name: big"
                echo "    lease_s: 300"
                [ "$RETAIN" = 0 ] || echo "    retention: {keep_last: $RETAIN}"
                echo "    members:"
                for a in $(seq 1 "$AGENTS"); do
                        for v in $(seq 1 "$VMS"); do echo "      - a${a}v$v@a$a"; done
                done
        fi
        for g in $(seq 1 "$NGROUPS"); do
                echo "  - name: g$g"
                echo "    schedule: \"* * * * *\""
                echo "    members: [$(for v in $(seq 1 "$VMS"); do printf '%sa%sv%s@a%s' "$([ "$v" = 1 ] || echo ', ')" "$g" "$v" "$g"; done)]"
        done
} > "$T/coordinator.yaml"
"$BUILD/coordinator/lockstepd" -c "$T/coordinator.yaml" >> "$T/lockstepd.log" 2>&1 &
lsd=$!
PIDS+=("$lsd")
for _ in $(seq 1 600); do
        [ -S "$T/control.sock" ] && "$LS" -c "$T/coordinator.yaml" groups > /dev/null 2>&1 && break
        sleep 0.1
done
"$LS" -c "$T/coordinator.yaml" groups > /dev/null || die "lockstepd did not come up: $(tail -n 3 "$T/lockstepd.log")"

cpu_ms() { awk '{print ($14 + $15) * 10}' "/proc/$1/stat"; } # 100 ticks a second
# Every agent process's CPU (executor, network half, guardian), in ms.
agents_cpu_ms() { printf '/proc/%s/stat\n' "${AGENT_PIDS[@]}" | xargs cat 2> /dev/null | awk '{t += $14 + $15} END {print t * 10}'; }
rss_mb() { awk -v k="$2" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
fsize() { stat -c %s "$1" 2> /dev/null || echo 0; }
cat_bytes() { echo $(($(fsize "$T/catalog.db") + $(fsize "$T/catalog.db-wal"))); }
# Read beside lockstepd (WAL: a reader does not block it); null when busy.
member_rows() { sqlite3 -readonly "file:$T/catalog.db?mode=ro" 'SELECT count(*) FROM members' 2> /dev/null || echo null; }

if [ "$NGROUPS" -gt 0 ]; then
        # Whole minutes from the next one on, then what every schedule did.
        now=$(date +%s)
        start=$(((now / 60 + 1) * 60))
        say "$NGROUPS groups of $VMS VMs scheduled every minute; measuring $MINUTES minute(s) from $(date -u -d "@$start" +%H:%M)"
        cpu0=$(cpu_ms "$lsd")
        sleep $((start + MINUTES * 60 - now))
        # Runs still going finish first; none may start after the window.
        for _ in $(seq 1 600); do
                "$LS" -c "$T/coordinator.yaml" schedules --json > "$T/sched.json" 2> /dev/null &&
                        [ "$(jq '[.[] | select(.running)] | length' "$T/sched.json")" = 0 ] && break
                sleep 1
        done
        cpu1=$(cpu_ms "$lsd")
        "$LS" -c "$T/coordinator.yaml" snapshot list --json > "$T/cuts.json"
        row=$(jq -c --slurpfile sched "$T/sched.json" --arg lat "$lat_name" --argjson agents "$AGENTS" \
                --argjson vms "$VMS" --argjson groups "$NGROUPS" --argjson minutes "$MINUTES" --argjson start "$start" \
                --argjson lsd_ms "$((cpu1 - cpu0))" --argjson max_cuts "${MAX_CUTS:-8}" --argjson rss "$(rss_mb "$lsd" VmRSS)" '
                def pct(p): if length == 0 then null else sort | .[((length - 1) * p) | floor] end;
                # Scheduled cuts are named sched-YYYYMMDDTHHMM after their due minute.
                [.[] | select(.name | startswith("sched-")) |
                 {state, due: (.name[6:] + "00Z" | strptime("%Y%m%dT%H%M%SZ") | mktime),
                  started: (.started_at | capture("^(?<s>[^.]*)(\\.(?<f>[0-9]+))?Z$") |
                            (.s + "Z" | fromdateiso8601) + ("0." + (.f // "0") | tonumber))}
                 | select(.due >= $start and .due < $start + 60 * $minutes)] as $runs |
                {agents: $agents, vms: $vms, groups: $groups, latency: $lat, minutes: $minutes, max_cuts: $max_cuts,
                 due_runs: ($groups * $minutes), committed: ([$runs[] | select(.state == "committed")] | length),
                 committed_per_minute: (([$runs[] | select(.state == "committed")] | length) / $minutes),
                 lag_s_p50: ([$runs[] | .started - .due] | pct(0.5)), lag_s_max: ([$runs[] | .started - .due] | max),
                 skipped_total: ([$sched[0][] | .skipped] | add), lockstepd_ms: $lsd_ms, lockstepd_rss_mb: $rss}' \
                "$T/cuts.json")
        if [ "$JSON" = 1 ]; then echo "$row"; else
                jq -r '"\(.groups) groups x \(.vms) VMs, \(.minutes) min, max_cuts \(.max_cuts): \(.committed) of \(.due_runs) due runs committed (\(.committed_per_minute)/min), lag p50 \(.lag_s_p50) s max \(.lag_s_max) s, \(.skipped_total) skipped, lockstepd \(.lockstepd_ms) ms CPU"' <<< "$row"
        fi
        [ -z "$OUT" ] || echo "$row" >> "$OUT"
        CUTS=0
fi

[ "$CUTS" = 0 ] || say "lockstepd up; $CUTS cut(s) of $members members"
rc_all=0
for c in $(seq 1 "$CUTS"); do
        [ "$CUTS" -gt 0 ] || break
        cpu0=$(cpu_ms "$lsd") cat0=$(cat_bytes) acpu0=$(agents_cpu_ms) t1=$EPOCHREALTIME
        out=$("$LS" -c "$T/coordinator.yaml" snapshot create big --json 2> "$T/create.err") && rc=0 || rc=$?
        t2=$EPOCHREALTIME
        cpu1=$(cpu_ms "$lsd") cat1=$(cat_bytes) acpu1=$(agents_cpu_ms)
        state=$(jq -r '.state // "none"' <<< "$out" 2> /dev/null || echo none)
        [ "$state" = committed ] || { rc_all=1; say "cut $c: $state (exit $rc): $(head -c 300 "$T/create.err")"; }
        # The cut's own thread, as lockstepd logs it when the operation ends.
        id=$(jq -r '.id // empty' <<< "$out" 2> /dev/null || true)
        op_ms=$(sed -n "s/.* txid=${id:-none} thread_cpu_ms=\([0-9.]*\) .*/\1/p" "$T/lockstepd.log" | tail -n 1)
        op_flt=$(sed -n "s/.* txid=${id:-none} thread_cpu_ms=.* minflt=\([0-9]*\).*/\1/p" "$T/lockstepd.log" | tail -n 1)
        prune_ms=null prune_cpu=null pruned=null
        if [ "$RETAIN" -gt 0 ] && [ "$c" -gt "$RETAIN" ]; then
                p0=$EPOCHREALTIME pc0=$(cpu_ms "$lsd")
                pout=$("$LS" -c "$T/coordinator.yaml" prune big --json 2>> "$T/create.err") ||
                        { rc_all=1; say "cut $c: prune failed: $(tail -c 300 "$T/create.err")"; }
                prune_ms=$(awk -v a="$p0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (b - a) * 1000}')
                prune_cpu=$(($(cpu_ms "$lsd") - pc0))
                pruned=$(jq '[.. | objects | select(.action? == "removed")] | length' <<< "${pout:-{\}}" 2> /dev/null ||
                        echo null)
                ! jq -e '[.. | objects | select(.action? == "failed")] | length > 0' <<< "${pout:-{\}}" > /dev/null 2>&1 ||
                        { rc_all=1; say "cut $c: prune left cuts: $(jq -c '[.. | objects | select(.action? == "failed") | .error]' <<< "$pout")"; }
        fi
        row=$(jq -c --arg lat "$lat_name" --arg latency "$LATENCY" \
                --argjson agents "$AGENTS" --argjson vms "$VMS" --argjson cut "$c" \
                --argjson e2e "$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.1f", (b - a) * 1000}')" \
                --argjson lsd_ms "$((cpu1 - cpu0))" --argjson acpu "$((acpu1 - acpu0))" --argjson tw "$TIME_WINDOW" --argjson op_ms "${op_ms:-null}" --argjson op_flt "${op_flt:-null}" --argjson rss "$(rss_mb "$lsd" VmRSS)" \
                --argjson hwm "$(rss_mb "$lsd" VmHWM)" --argjson anon "$(rss_mb "$lsd" RssAnon)" --argjson agt "$(agents_rss_mb)" --argjson agp "$(agents_pss_mb)" \
                --argjson growth "$((cat1 - cat0))" --argjson prune_ms "$prune_ms" --argjson prune_cpu "$prune_cpu" \
                --argjson pruned "$pruned" --argjson mrows "$(member_rows)" '
                def pct(p): if length == 0 then null else sort | .[((length - 1) * p) | floor] end;
                def last(s): [.replies[]? | select(.step == s) | .ms] | max;
                # The own time of an agent: its freeze round (first freeze begun
                # to last frozen) plus its snapshot round (first snapshot begun
                # to last thaw done), on the clocks of its members; that of the
                # slowest agent is what a cut cannot beat.
                def own: (map(.frozen_at_us + .freeze_ms * 1000) | max) - (map(.frozen_at_us) | min)
                        + (map(.thawed_at_us) | max)
                        - (map(.thawed_at_us - (.snapshot_ms + .thaw_ms) * 1000) | min);
                ([.members[]? | select(.frozen_at_us > 0 and .thawed_at_us > 0)] | group_by(.agent)
                        | map(own) | max | if . == null then null else . / 1000 | floor end) as $slowest |
                {agents: $agents, vms: $vms, members: ($agents * $vms), latency: $lat, sim_latency: $latency,
                 cut: $cut, state: (.state // "none"), reason: (.reason // null), e2e_ms: $e2e, lockstepd_ms: $lsd_ms, lockstepd_op_ms: $op_ms, lockstepd_op_minflt: $op_flt,
                 agents_cpu_ms: $acpu, agent_cpu_ms: ($acpu / $agents | round), agent_time_window_s: $tw,
                 lockstepd_rss_mb: $rss, lockstepd_anon_mb: $anon, lockstepd_peak_rss_mb: $hwm, agent_rss_mb: $agt, agent_pss_mb: $agp,
                 catalog_growth_bytes: $growth, group_window_ms: .group_window_ms,
                 max_frozen_ms: .max_frozen_ms, frozen_ms_p50: ([.members[]?.frozen_ms] | pct(0.5)),
                 last_reply_ms: {freeze: last("FREEZE"), snapshot: last("SNAPSHOT"), decide: last("DECIDE")},
                 slowest_agent_ms: $slowest,
                 e2e_over_slowest_agent: (if ($slowest // 0) > 0 then ($e2e / $slowest * 1000 | round) / 1000 else null end),
                 prune_ms: $prune_ms, prune_lockstepd_ms: $prune_cpu, pruned: $pruned, catalog_member_rows: $mrows}' \
                <<< "${out:-{\}}")
        if [ "$JSON" = 1 ]; then echo "$row"; else
                jq -r '"cut \(.cut): \(.state) e2e \(.e2e_ms) ms, lockstepd \(.lockstepd_ms) ms CPU (\(.lockstepd_op_ms) ms on the cut'"'"'s thread), rss \(.lockstepd_rss_mb) MB (peak \(.lockstepd_peak_rss_mb)), window \(.group_window_ms) ms, max frozen \(.max_frozen_ms) ms, catalog +\(.catalog_growth_bytes) B, agents \(.agent_rss_mb) MB RSS / \(.agent_pss_mb) MB PSS each"' <<< "$row"
        fi
        [ -z "$OUT" ] || echo "$row" >> "$OUT"
done
# How long lockstepd takes to stop with a fleet connected (the health thread
# may be polling every agent).
t1=$EPOCHREALTIME
kill -TERM "$lsd"
wait "$lsd" 2> /dev/null || true
stop_ms=$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", (b - a) * 1000}')
say "lockstepd stopped ${stop_ms} ms after SIGTERM"
[ -z "$OUT" ] || printf '{"agents":%s,"vms":%s,"latency":"%s","lockstepd_stop_ms":%s}\n' "$AGENTS" "$VMS" "$lat_name" "$stop_ms" >> "$OUT"
exit "$rc_all"
