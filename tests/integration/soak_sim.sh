#!/usr/bin/env bash
# soak_sim: many cuts of one group on real agents (sim backend), each followed
# by `lockstep prune` (the group's retention: keep_last K), and checks that
# everything that grows with time is bounded by retention, not by the group's
# age: backing chain depth, files in the image directories, catalog rows and
# file size, event rows, agent journals and state files, replay state, logs,
# /metrics series, RSS. Per-cut wall time is reported, not asserted.
#
#   soak_sim.sh [--cuts N] [--agents A] [--vms M] [--disks D] [--keep K]
#               [--every S] [--memory-every E] [--abort-every F] [--out FILE]
#               [--restart-at R] [--resume DIR]
#
# Every E-th cut (default 10) is a memory cut (a .mem file per VM beside the
# overlays); after every F-th cut (default 100) one extra cut is made to abort
# (an injected snapshot failure on one VM), so pending overlays get
# discarded. Either is off with 0. N counts the committed cuts only.
# After cut R (default N/4, 0: never) lockstepd and every agent are stopped
# and started again on their catalog and journals.
# CI runs the default (1000 cuts); `--cuts 100000` is the run by hand.
# Samples (every S cuts, at 25/50/75/100 % and after the first cut) go to
# $T/soak.jsonl, one JSON object per line, and to FILE with --out.
# --resume DIR goes on with the group of an earlier run kept in DIR (KEEP=1),
# e.g. one killed half-way: its daemons are started again on their catalog,
# journals and sim images, and cuts are counted on from its last sample (the
# same --agents/--vms/--disks/--keep as that run). Bounds are checked over the
# resumed part; the earlier run's samples stay in DIR/soak.jsonl.
window=5 cuts=1000 agents=3 vms=3 disks=1 keep=3 every=50 mem_every=10 abort_every=100 out_file= resume= restart_at=
while [ $# -gt 0 ]; do
        case $1 in
        --cuts) cuts=$2; shift 2 ;;
        --agents) agents=$2; shift 2 ;;
        --vms) vms=$2; shift 2 ;;
        --disks) disks=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        --every) every=$2; shift 2 ;;
        --memory-every) mem_every=$2; shift 2 ;;
        --abort-every) abort_every=$2; shift 2 ;;
        --out) out_file=$2; shift 2 ;;
        --restart-at) restart_at=$2; shift 2 ;;
        --resume) resume=$(cd "$2" && pwd); shift 2 ;;
        -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "soak_sim: unknown option $1" >&2; exit 2 ;;
        esac
done
for v in cuts agents vms disks keep every; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "soak_sim: --$v needs a positive integer" >&2; exit 2; }
done
restart_at=${restart_at:-$((cuts / 4))}
[[ $mem_every =~ ^[0-9]+$ && $abort_every =~ ^[0-9]+$ && $restart_at =~ ^[0-9]+$ ]] ||
        { echo "soak_sim: --memory-every/--abort-every/--restart-at need an integer" >&2; exit 2; }
[ "$cuts" -ge 4 ] || { echo "soak_sim: --cuts must be at least 4" >&2; exit 2; }

. "$(dirname "$0")/lib.sh"

start_cut=0
if [ -n "$resume" ]; then
        [ -f "$resume/coordinator.yaml" ] && [ -f "$resume/soak.jsonl" ] ||
                { echo "soak_sim: $resume is not a kept soak_sim dir (no coordinator.yaml or soak.jsonl)" >&2; exit 2; }
        for a in $(seq 1 "$agents"); do
                [ -f "$resume/h$a/agent.yaml" ] || { echo "soak_sim: $resume has no agent h$a (was it run with --agents $agents?)" >&2; exit 2; }
        done
        # Not the fresh dir lib.sh made: the kept one, kept again at the end.
        rm -rf "$T"
        T=$resume KEEP=1
        start_cut=$(jq -r 'select(.cut != null) | .cut' "$T/soak.jsonl" | tail -n 1)
        [[ $start_cut =~ ^[0-9]+$ ]] && [ "$start_cut" -lt "$cuts" ] ||
                { echo "soak_sim: $T/soak.jsonl's last sample (cut '${start_cut}') leaves nothing to do for --cuts $cuts" >&2; exit 2; }
fi

command -v sqlite3 >/dev/null || { echo "# sqlite3 missing (deploy/install-deps.sh installs it): skipped"; exit 77; }

# ASan keeps freed memory in quarantine (256 MiB by default) and maps shadow
# memory: RSS there says nothing about what lockstep holds.
asan=0
grep -q 'LOCKSTEP_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null && asan=1

# ---- the fleet ----------------------------------------------------------------
letters=(a b c d e f g h i j k l m n o p)
[ "$disks" -le 16 ] || { echo "soak_sim: at most 16 disks" >&2; exit 2; }
disk_list=$(for d in $(seq 0 $((disks - 1))); do printf 'vd%s,' "${letters[d]}"; done)
disk_list=${disk_list%,}
hosts=() members=()
for a in $(seq 1 "$agents"); do
        h=h$a doms=()
        for v in $(seq 1 "$vms"); do
                doms+=("domain ${h}vm$v disks=$disk_list")
                members+=("${h}vm$v@$h")
        done
        if [ -z "$resume" ]; then
                sim_agent "$h" "${doms[@]}" "latency freeze=0 snapshot=0 thaw=0 check=0 ga_ping=0 discard=0"
                # Two windows (10 s) is how long an agent keeps every finished
                # transaction before TXN_KEEP_MAX applies (agent/txn.h).
                echo "time_window_s: $window" >> "$T/$h/agent.yaml"
        else
                # An injected failure the killed run had not taken back yet.
                sed -i '/^fail /d' "$T/$h/sim.txt"
                STARTED[$h]=1
        fi
        start_agent "$h"
        hosts+=("$h")
done
per_agent_disks=$((vms * disks))
keep_cap=$((1024 + 700 * window / 5)) # TXN_KEEP_MAX + 2 windows at 70/s
members_per_cut=$((agents * vms))
GROUP_YAML="  - name: soak
    members: [$(IFS=,; echo "${members[*]}" | sed 's/,/, /g')]
    lease_s: 30
    retention: {keep_last: $keep}"
mport=$(free_port)
[ -z "$resume" ] || mport=$(sed -n 's|^metrics: http://127.0.0.1:||p' "$T/coordinator.yaml")
# Small history bounds, so that 1,000 cuts show them hold (defaults: 10000,
# 200000, 200000).
history_keep=50 audit_keep=2000 events_keep=200
COORD_EXTRA="metrics: http://127.0.0.1:$mport
history_keep: $history_keep
audit_keep: $audit_keep
events_keep: $events_keep"
[ -n "$resume" ] || coordinator "${hosts[@]}"
start_lockstepd
lsd_pid=$(cat "$T/lockstepd.pid")
# The agents' rows (and their /metrics series) now, not at the first health poll.
ls_cli agents --json >/dev/null

# ---- measurements ---------------------------------------------------------------
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# The agents write while this reads: a file may vanish between find's listing and its stat.
nfiles() { { [ -d "$1" ] && find "$1" -maxdepth 1 -type f 2> /dev/null || true; } | wc -l; }
sql() { sqlite3 -cmd '.timeout 10000' "$T/catalog.db" "$@"; }

# Deepest backing chain of any disk of the VMs in state files $@ (hops from
# the active layer down to the base image).
chain_depth() {
        awk '/^disk / { cur[FILENAME SUBSEP $2] = $3 }
             /^backing / { b[FILENAME SUBSEP $2] = $3 }
             END { for (k in cur) { split(k, f, SUBSEP); d = 0; p = cur[k]
                                    while (((f[1] SUBSEP p) in b) && d < 10000) { d++; p = b[f[1] SUBSEP p] }
                                    if (d > m) m = d }
                   print m + 0 }' "$@"
}

# /metrics: number of series (non-comment lines), over a raw HTTP/1.0 GET.
metrics_series() {
        local body
        body=$( (exec 3<>"/dev/tcp/127.0.0.1/$mport" || exit 1
                printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
                cat <&3) 2>/dev/null) || { echo -1; return; }
        sed '1,/^\r\{0,1\}$/d' <<<"$body" | grep -c '^lockstep_' || true
}

# Every daemon stopped and started again: what it remembers comes back from its
# catalog and journals (a restarted agent reads up to TXN_KEEP_MAX of them).
restarts=0 restart_fail=
restart_all() {
        local a
        kill -TERM "$lsd_pid"
        wait "$lsd_pid" 2>/dev/null || true
        for a in "${hosts[@]}"; do stop_agent "$a"; done
        for a in "${hosts[@]}"; do start_agent "$a" || { restart_fail="agent $a did not come back"; return 1; }; done
        start_lockstepd || { restart_fail="lockstepd did not come back"; return 1; }
        lsd_pid=$(cat "$T/lockstepd.pid")
        restarts=$((restarts + 1))
}

live_cuts() { sql "SELECT txid FROM txns WHERE kind = 'snapshot' AND committed = 1 AND cut_status <> 'deleted'"; }

declare -A S # the last sample, flattened: S[key] and S[agent.key]
samples=()   # cut numbers sampled
declare -A H # history: H[cut.key]

sample() { # sample CUT
        local i=$1 now_us live a d img ov mem stale base f x t depth
        now_us=$(($(date +%s%N) / 1000))
        S=()
        S[cut]=$i
        S[db_bytes]=$(fsize "$T/catalog.db")
        S[wal_bytes]=$(fsize "$T/catalog.db-wal")
        for t in txns members images audit events agents groups group_members schedules; do
                S[rows_$t]=$(sql "SELECT count(*) FROM $t")
        done
        S[txns_snapshot]=$(sql "SELECT count(*) FROM txns WHERE kind = 'snapshot'")
        S[txns_delete]=$(sql "SELECT count(*) FROM txns WHERE kind = 'delete'")
        S[txns_deleted_cuts]=$(sql "SELECT count(*) FROM txns WHERE kind = 'snapshot' AND cut_status = 'deleted'")
        S[audit_status]=$(sql "SELECT count(*) FROM audit WHERE step = 'STATUS'")
        S[txns_aborted]=$(sql "SELECT count(*) FROM txns WHERE kind = 'snapshot' AND committed = 0")
        # Every transaction lockstepd began (cuts, deletes) says so in its log;
        # the catalog forgets ended ones (history_keep), so count them there.
        # An agent keeps every transaction that ended in the last two time
        # windows and TXN_KEEP_MAX older ones (none older than an hour): at
        # most keep_cap here (this soak ends fewer than 70 a second).
        S[txns_all]=$(grep -c 'BEGIN    ls-\|DELETE   ls-[0-9A-Za-z-]*: ' "$T/lockstepd.log" || true)
        S[txns_last_hour]=$((S[txns_all] < keep_cap ? S[txns_all] : keep_cap))
        live=$(live_cuts)
        S[live_cuts]=$(grep -c . <<<"$live" || true)
        S[lsd_rss_kb]=$(rss_kb "$lsd_pid")
        S[lsd_fds]=$(nfds "$lsd_pid")
        S[lsd_log_bytes]=$(fsize "$T/lockstepd.log")
        S[coord_counter_bytes]=$(fsize "$T/coord.counter")
        S[metrics_series]=$(metrics_series)
        S[max_chain]=0 S[max_img_files]=0 S[max_overlays]=0 S[max_mem]=0 S[max_stale]=0 S[max_journal]=0
        S[max_journal_txn]=0 S[max_branches]=0 S[max_agent_rss_kb]=0 S[max_agent_log_bytes]=0 S[max_state_bytes]=0
        S[max_agent_fds]=0
        for a in "${hosts[@]}"; do
                img=$T/$a/sim/img
                ov=0 mem=0 stale=0 base=0
                if [ -d "$img" ]; then
                        while IFS= read -r f; do
                                f=${f##*/}
                                case $f in
                                *.mem) mem=$((mem + 1)); x=${f%.mem}; x=${x##*.} ;;
                                *.qcow2) x=${f%.qcow2}
                                        if [[ $x != *.* ]]; then base=$((base + 1)); continue; fi
                                        ov=$((ov + 1)); x=${x##*.} ;;
                                *) continue ;;
                                esac
                                grep -qxF -- "$x" <<<"$live" || stale=$((stale + 1))
                        done < <(find "$img" -maxdepth 1 -type f)
                fi
                S[$a.img_files]=$(nfiles "$img")
                S[$a.base]=$base S[$a.overlays]=$ov S[$a.mem]=$mem S[$a.stale]=$stale
                depth=$(chain_depth "$T/$a"/sim/*.state)
                S[$a.chain]=$depth
                S[$a.backing_lines]=$(cat "$T/$a"/sim/*.state | grep -c '^backing' || true)
                S[$a.state_bytes]=$(cat "$T/$a"/sim/*.state | wc -c)
                S[$a.journal_files]=$(nfiles "$T/$a/journal")
                S[$a.journal_txn]=$({ find "$T/$a/journal" -maxdepth 1 -type f -name '*.txn' 2> /dev/null || true; } | wc -l)
                S[$a.journal_counters]=$({ find "$T/$a/journal/replay" -maxdepth 1 -type f -name 'counter-*' ! -name '*.tmp.*' 2> /dev/null || true; } | wc -l)
                # The agent writes while this reads: a temporary file may vanish under du.
                S[$a.journal_bytes]=$({ du -sb "$T/$a/journal" 2> /dev/null || true; } | awk '{print $1 + 0}')
                S[$a.branches]=$(nfiles "$T/$a/journal/branches")
                # The agent is two processes: its executor and network half.
                S[$a.rss_kb]=$(($(rss_kb "$(cat "$T/$a/pid")") + $(rss_kb "$(net_half "$a" || echo 0)")))
                S[$a.fds]=$(nfds "$(cat "$T/$a/pid")")
                S[$a.log_bytes]=$(fsize "$T/$a/agent.log")
                for k in chain:chain img_files:img_files overlays:overlays mem:mem stale:stale journal:journal_files \
                        journal_txn:journal_txn branches:branches agent_rss_kb:rss_kb agent_log_bytes:log_bytes \
                        state_bytes:state_bytes agent_fds:fds; do
                        [ "${S[$a.${k#*:}]}" -le "${S[max_${k%%:*}]}" ] || S[max_${k%%:*}]=${S[$a.${k#*:}]}
                done
        done
        for k in "${!S[@]}"; do H[$i.$k]=${S[$k]}; done
        samples+=("$i")
        # One JSON line: the totals, then the agents.
        {
                printf '{"cut":%s,"t_us":%s,"catalog":{"db_bytes":%s,"wal_bytes":%s' "$i" "$now_us" "${S[db_bytes]}" "${S[wal_bytes]}"
                for t in txns members images audit events agents groups group_members schedules; do
                        printf ',"rows_%s":%s' "$t" "${S[rows_$t]}"
                done
                printf ',"txns_snapshot":%s,"txns_delete":%s,"txns_deleted_cuts":%s,"txns_aborted":%s,"audit_status":%s,"live_cuts":%s}' \
                        "${S[txns_snapshot]}" "${S[txns_delete]}" "${S[txns_deleted_cuts]}" "${S[txns_aborted]}" \
                        "${S[audit_status]}" "${S[live_cuts]}"
                printf ',"lockstepd":{"rss_kb":%s,"fds":%s,"log_bytes":%s,"counter_bytes":%s,"metrics_series":%s}' \
                        "${S[lsd_rss_kb]}" "${S[lsd_fds]}" "${S[lsd_log_bytes]}" "${S[coord_counter_bytes]}" "${S[metrics_series]}"
                printf ',"ms_per_cut_recent":%s,"agents":[' "${recent_ms:-0}"
                local sep=
                for a in "${hosts[@]}"; do
                        printf '%s{"id":"%s","rss_kb":%s,"fds":%s,"log_bytes":%s,"img_files":%s,"base_images":%s,"overlays":%s,"mem_files":%s,"stale_files":%s,"max_chain_depth":%s,"backing_lines":%s,"state_bytes":%s,"journal_files":%s,"journal_txn":%s,"journal_counters":%s,"journal_bytes":%s,"branches":%s}' \
                                "$sep" "$a" "${S[$a.rss_kb]}" "${S[$a.fds]}" "${S[$a.log_bytes]}" "${S[$a.img_files]}" "${S[$a.base]}" \
                                "${S[$a.overlays]}" "${S[$a.mem]}" "${S[$a.stale]}" "${S[$a.chain]}" "${S[$a.backing_lines]}" \
                                "${S[$a.state_bytes]}" "${S[$a.journal_files]}" "${S[$a.journal_txn]}" "${S[$a.journal_counters]}" \
                                "${S[$a.journal_bytes]}" "${S[$a.branches]}"
                        sep=,
                done
                printf ']}\n'
        } >> "$T/soak.jsonl"
        printf '%7s %8s %7s %6s %7s %7s %7s %7s %6s %6s %5s %5s %5s %6s %6s %8s %8s %5s %7s\n' "$i" \
                $((S[db_bytes] / 1024)) $((S[wal_bytes] / 1024)) "${S[rows_txns]}" "${S[rows_members]}" "${S[rows_images]}" \
                "${S[rows_audit]}" "${S[rows_events]}" $((S[lsd_rss_kb] / 1024)) $((S[max_agent_rss_kb] / 1024)) \
                "${S[max_chain]}" "${S[max_overlays]}" "${S[max_stale]}" "${S[max_journal]}" "${S[max_branches]}" \
                $((S[lsd_log_bytes] / 1024)) $((S[max_agent_log_bytes] / 1024)) "${S[metrics_series]}" "${recent_ms:-0}"
}

# ---- bounds checked at every sample --------------------------------------------------
max_depth=$((keep + 2))
max_overlays=$(((keep + 2) * per_agent_disks))
max_mem=$([ "$mem_every" = 0 ] && echo 0 || echo $((keep * vms)))
viol_chain=() viol_overlays=() viol_stale=() viol_mem=() viol_journal=() viol_branches=() viol_counters=() viol_links=()
check_sample() {
        local a jb
        for a in "${hosts[@]}"; do
                [ "${S[$a.chain]}" -le "$max_depth" ] || viol_chain+=("cut ${S[cut]} $a depth ${S[$a.chain]}")
                [ "${S[$a.backing_lines]}" -le "$max_overlays" ] || viol_links+=("cut ${S[cut]} $a ${S[$a.backing_lines]} links")
                [ "${S[$a.overlays]}" -le "$max_overlays" ] && [ "${S[$a.base]}" -le "$per_agent_disks" ] ||
                        viol_overlays+=("cut ${S[cut]} $a ${S[$a.overlays]} overlays + ${S[$a.base]} base")
                [ "${S[$a.stale]}" -eq 0 ] || viol_stale+=("cut ${S[cut]} $a ${S[$a.stale]}")
                [ "${S[$a.mem]}" -le "$max_mem" ] || viol_mem+=("cut ${S[cut]} $a ${S[$a.mem]}")
                # The reaper (agent/txn_lease.c) removes a transaction's journal
                # file once it is forgotten (TXN_KEEP_US, TXN_KEEP_MAX); every
                # transaction here names every agent. Besides: one
                # counter-<key> file per key that sent (coordinator, reader).
                jb=$((S[txns_last_hour] + 2))
                [ "${S[$a.journal_txn]}" -le "${S[txns_last_hour]}" ] && [ "${S[$a.journal_files]}" -le "$jb" ] ||
                        viol_journal+=("cut ${S[cut]} $a ${S[$a.journal_files]} files (${S[$a.journal_txn]} .txn) > $jb")
                [ "${S[$a.journal_counters]}" -le 2 ] || viol_counters+=("cut ${S[cut]} $a ${S[$a.journal_counters]}")
                [ "${S[$a.branches]}" -eq 0 ] || viol_branches+=("cut ${S[cut]} $a ${S[$a.branches]}")
        done
}

# ---- the soak ------------------------------------------------------------------------
span=$((cuts - start_cut))
q1=$((start_cut + span / 4)) q2=$((start_cut + span / 2)) q3=$((start_cut + span * 3 / 4))
create_ms=() prune_ms=()
failed_cuts=0 failed_prunes=0 consecutive=0 first_fail= done_cuts=0 aborts_tried=0 aborts_ok=0 first_abort_fail=
last_host=${hosts[-1]} last_vm=${hosts[-1]}vm$vms
printf '# soak: %s cuts, %s agents x %s VMs x %s disk(s), keep_last %s%s%s\n' "$cuts" "$agents" "$vms" "$disks" "$keep" \
        "$([ $asan = 1 ] && echo ', ASan build')" "${resume:+, resumed after cut $start_cut in $resume}"
printf '%7s %8s %7s %6s %7s %7s %7s %7s %6s %6s %5s %5s %5s %6s %6s %8s %8s %5s %7s\n' cut db_KiB wal_KiB txns \
        members images audit events lsdMiB agtMiB chain ovl stale jfiles branch lsdlogK agtlogK mser ms/cut
t_start=$EPOCHREALTIME
for i in $(seq $((start_cut + 1)) "$cuts"); do
        mode=()
        [ "$mem_every" = 0 ] || [ $((i % mem_every)) != 0 ] || mode=(--mode memory)
        t0=$EPOCHREALTIME
        out=$(ls_cli snapshot create soak "${mode[@]}" --json 2>"$T/create.err") && rc=0 || rc=$?
        t1=$EPOCHREALTIME
        state=$(jq -r '.state // empty' <<<"$out" 2>/dev/null || true)
        if [ "$rc" != 0 ] || [ "$state" != committed ]; then
                failed_cuts=$((failed_cuts + 1)) consecutive=$((consecutive + 1))
                [ -n "$first_fail" ] || first_fail="cut $i: exit $rc, state '${state}': $(jq -r '.reason // empty' <<<"$out" 2>/dev/null | head -c 300) $(head -c 300 "$T/create.err")"
                [ "$failed_cuts" -gt 5 ] || { echo "$out"; cat "$T/create.err"; } > "$T/cut-failed-$i.out"
        else
                consecutive=0
        fi
        ls_cli prune soak --json >"$T/prune.out" 2>&1 && prc=0 || prc=$?
        t2=$EPOCHREALTIME
        if [ "$prc" != 0 ]; then
                failed_prunes=$((failed_prunes + 1))
                [ -n "${first_prune_fail:-}" ] || first_prune_fail="cut $i: exit $prc: $(head -c 300 "$T/prune.out")"
                # The whole answer of the first few, to see which item failed and why.
                [ "$failed_prunes" -gt 5 ] || cp "$T/prune.out" "$T/prune-failed-$i.out"
        fi
        # One extra cut that must abort: the others' pending overlays are discarded.
        if [ "$abort_every" != 0 ] && [ $((i % abort_every)) = 0 ]; then
                echo "fail snapshot $last_vm" >> "$T/$last_host/sim.txt"
                aout=$(ls_cli snapshot create soak --json 2>&1) && arc=0 || arc=$?
                sed -i "/^fail snapshot $last_vm\$/d" "$T/$last_host/sim.txt"
                aborts_tried=$((aborts_tried + 1))
                if [ "$arc" = 1 ] && [ "$(jq -r .state <<<"$aout" 2>/dev/null)" = aborted ]; then
                        aborts_ok=$((aborts_ok + 1))
                else
                        [ -n "$first_abort_fail" ] || first_abort_fail="after cut $i: exit $arc: $(head -c 300 <<<"$aout")"
                fi
        fi
        create_ms+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) * 1000}')")
        prune_ms+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.1f", (b - a) * 1000}')")
        done_cuts=$i
        if [ "$i" = $((start_cut + 1)) ] || [ $((i % every)) = 0 ] || [ "$i" = "$q1" ] || [ "$i" = "$q2" ] || [ "$i" = "$q3" ] || [ "$i" = "$cuts" ]; then
                n=${#create_ms[@]}; from=$((n > every ? n - every : 0))
                recent_ms=$(printf '%s\n' "${create_ms[@]:$from}" "${prune_ms[@]:$from}" |
                        awk -v n=$((n - from)) '{s += $1} END {printf "%.1f", s / n}')
                sample "$i"
                check_sample
        fi
        if [ "$i" = "$restart_at" ] && [ "$i" != "$cuts" ]; then
                restart_all || { echo "# restart after cut $i failed: $restart_fail"; break; }
        fi
        # A chain that is full or an agent that is gone fails every cut from
        # then on: say so once instead of spending the budget on it.
        if [ "$consecutive" -ge 20 ]; then
                echo "# 20 cuts in a row failed; stopping at cut $i"
                sample "$i"
                break
        fi
done
t_end=$EPOCHREALTIME

# ---- verdicts ------------------------------------------------------------------------
# at K: the sample nearest to cut K that was taken.
at() { local want=$1 key=$2 best=${samples[0]} s; for s in "${samples[@]}"; do [ "$s" -le "$want" ] && best=$s; done; echo "${H[$best.$key]}"; }
last=${samples[-1]}
fin() { echo "${H[$last.$1]}"; }

check "every cut commits ($done_cuts of $cuts ran, $failed_cuts failed${first_fail:+; first: $first_fail})" \
        [ "$failed_cuts" = 0 -a "$done_cuts" = "$cuts" ]
check "every cut with an injected snapshot failure aborts ($aborts_ok of $aborts_tried${first_abort_fail:+; first: $first_abort_fail})" \
        [ "$aborts_ok" = "$aborts_tried" ]
[ "$restart_at" = 0 ] || [ "$restart_at" -le "$start_cut" ] || [ "$restart_at" -ge "$cuts" ] ||
        check "lockstepd and every agent restarted after cut $restart_at (${restarts}x${restart_fail:+: $restart_fail})" [ "$restarts" = 1 ]
check "every prune exits 0 ($failed_prunes failed${first_prune_fail:+; first: $first_prune_fail})" [ "$failed_prunes" = 0 ]
check "retention keeps exactly keep_last=$keep live cuts at the end (catalog: $(fin live_cuts))" [ "$(fin live_cuts)" = "$keep" ]
check "sim chain depth per disk <= K+2 = $max_depth at every sample${viol_chain:+ (${viol_chain[0]}, ${#viol_chain[@]} violations)}" \
        [ ${#viol_chain[@]} = 0 ]
check "overlays per agent img dir <= (K+2)*disks = $max_overlays, base images <= $per_agent_disks${viol_overlays:+ (${viol_overlays[0]}, ${#viol_overlays[@]} violations)}" \
        [ ${#viol_overlays[@]} = 0 ]
check "no stale overlay or memory file (of a deleted, aborted or pending cut) in any img dir${viol_stale:+ (${viol_stale[0]}, ${#viol_stale[@]} violations)}" \
        [ ${#viol_stale[@]} = 0 ]
check "memory files per agent img dir <= K*vms = $max_mem (one per VM of each kept memory cut)${viol_mem:+ (${viol_mem[0]}, ${#viol_mem[@]} violations)}" \
        [ ${#viol_mem[@]} = 0 ]
check "agent journal files <= remembered transactions (all, or TXN_KEEP_MAX + two windows of them: $keep_cap) + 2 counter files${viol_journal:+ (${viol_journal[0]})}" \
        [ ${#viol_journal[@]} = 0 ]
check "replay state: <= 2 counter files per agent (one per key that sent), coord.counter <= 64 B ($(fin coord_counter_bytes) B)${viol_counters:+ (${viol_counters[0]})}" \
        [ ${#viol_counters[@]} = 0 -a "$(fin coord_counter_bytes)" -le 64 ]
check "no pre-revert branch records without reverts (0)${viol_branches:+ (${viol_branches[0]})}" [ ${#viol_branches[@]} = 0 ]

# The sim state files hold one "backing" line per overlay layer: no link may
# outlive its layer.
check "sim state: backing links per agent <= (K+2)*disks = $max_overlays at every sample${viol_links:+ (${viol_links[0]})}; state files max $(fin max_state_bytes) B" \
        [ ${#viol_links[@]} = 0 ]

# Catalog rows, by table: a retention-bounded catalog holds the live cuts
# (keep_last) and what is in flight, whatever the number of cuts taken.
mpc=$members_per_cut
dpc=$((members_per_cut * disks))
# The live cuts (keep_last, one more in flight), the history_keep newest ended
# transactions (deleted and aborted cuts, deletes), each with its members and
# images; the newest audit_keep audit rows plus what one cut and its prune add
# before the next trim (FREEZE, SNAPSHOT, DECIDE and DELETE sent + received, and
# the health polls).
live=$((keep + 2 + history_keep))
declare -A bound=(
        [txns]=$live
        [members]=$((live * mpc))
        [images]=$((live * dpc))
        [audit]=$((audit_keep + 8 * agents + 4 * agents))
        [agents]=$agents [groups]=1 [group_members]=$mpc [schedules]=1
)
for t in txns members images audit agents groups group_members schedules; do
        g=$(($(fin rows_$t) - $(at "$q1" rows_$t)))
        extra=
        case $t in
        txns) extra="; $(fin txns_snapshot) cuts ($(fin txns_deleted_cuts) deleted, $(fin txns_aborted) aborted), $(fin txns_delete) deletes" ;;
        audit) extra="; $(fin audit_status) of them health-poll STATUS rows, which grow with uptime" ;;
        esac
        check "catalog $t rows bounded (<= ${bound[$t]}; $(at "$q1" rows_$t) at cut $q1, $(fin rows_$t) at cut $last: +$g$extra)" \
                [ "$(fin rows_$t)" -le "${bound[$t]}" ]
done
# events: trimmed to the newest events_keep after every prune (and every 10 s).
g=$(($(fin rows_events) - $(at "$q1" rows_events)))
check "catalog events rows <= events_keep $events_keep + 4 ($(at "$q1" rows_events) at cut $q1, $(fin rows_events) at cut $last: +$g)" \
        [ "$(fin rows_events)" -le $((events_keep + 4)) ]

# Catalog file: live rows of K cuts fit in a few pages; SQLite reuses freed
# pages, so a bounded catalog stops growing. (EVENTS_KEEP's 200000 rows of
# ~100 B alone would be ~20 MiB.) WAL: auto-checkpoint at 1000 pages of 4 KiB.
db_q2=$(at "$q2" db_bytes) db_end=$(fin db_bytes)
check "catalog file <= 4 MiB ($db_end B at cut $last)" [ "$db_end" -le $((4 << 20)) ]
check "catalog file stops growing (cut $q2 -> $last: $db_q2 -> $db_end B, <= +64 KiB)" [ $((db_end - db_q2)) -le 65536 ]
check "catalog WAL <= 8 MiB ($(fin wal_bytes) B)" [ "$(fin wal_bytes)" -le $((8 << 20)) ]

# lockstepd RSS. Not under ASan (quarantine, shadow memory): reported only.
rss_q2=$(at "$q2" lsd_rss_kb) rss_end=$(fin lsd_rss_kb)
if [ $asan = 0 ]; then
        check "lockstepd RSS <= 32 MiB (${rss_end} KiB at cut $last)" [ "$rss_end" -le 32768 ]
        check "lockstepd RSS stops growing (cut $q2 -> $last: $rss_q2 -> $rss_end KiB, <= +2 MiB)" [ $((rss_end - rss_q2)) -le 2048 ]
        # An agent remembers a decided transaction (its stored replies and
        # its journal file) as long as txns_last_hour says, its members 1 s.
        arss_q1=$(at "$q1" max_agent_rss_kb) arss_end=$(fin max_agent_rss_kb)
        abound=$((24576 + 16 * $(fin txns_last_hour)))
        check "agent RSS <= 24 MiB + 16 KiB per remembered transaction = $abound KiB (max ${arss_end} KiB at cut $last, +$((arss_end - arss_q1)) KiB since cut $q1)" \
                [ "$arss_end" -le "$abound" ]
else
        echo "# ASan build: RSS reported, not checked (lockstepd $rss_q2 -> $rss_end KiB from cut $q2 to $last)"
fi
check "lockstepd fds stay flat (cut $q1 -> $last: $(at "$q1" lsd_fds) -> $(fin lsd_fds), <= +4)" \
        [ $(($(fin lsd_fds) - $(at "$q1" lsd_fds))) -le 4 ]
# /metrics: 5 histograms of 14 series (freeze, snapshot, thaw, frozen, group window), agent_up and agent_in_doubt per agent,
# 4 single gauges, cuts_total per group and outcome (committed, aborted, failed).
mser_bound=$((5 * 14 + 2 * agents + 4 + 3))
check "/metrics series <= $mser_bound, not growing with cuts (cut $q1 -> $last: $(at "$q1" metrics_series) -> $(fin metrics_series))" \
        [ "$(at "$q1" metrics_series)" -gt 0 -a "$(fin metrics_series)" -le "$mser_bound" ]

# Logs go to stderr (journald rotates them under systemd): they grow with every
# cut by necessity; what must not grow is what one cut writes.
per_cut() { # KEY FROM TO: bytes per cut between two samples
        echo $((($(at "$3" "$1") - $(at "$2" "$1")) / ($3 - $2 > 0 ? $3 - $2 : 1)))
}
lq=$(per_cut lsd_log_bytes "$q1" "$q2") ll=$(per_cut lsd_log_bytes "$q3" "$last")
check "lockstepd log bytes per cut do not grow (cuts $q1..$q2: $lq B/cut, $q3..$last: $ll B/cut, <= 1.25x)" \
        [ $((ll * 4)) -le $((lq * 5 + 400)) ]
lq=$(per_cut max_agent_log_bytes "$q1" "$q2") ll=$(per_cut max_agent_log_bytes "$q3" "$last")
check "agent log bytes per cut do not grow (cuts $q1..$q2: $lq B/cut, $q3..$last: $ll B/cut, <= 1.25x)" \
        [ $((ll * 4)) -le $((lq * 5 + 400)) ]
check "no other file written by lockstep under the test dir" bash -c "! find '$T' -type f \
        ! -path '$T/*/sim/*' ! -path '$T/*/journal/*' ! -name '*.key' ! -name '*.pub' ! -name '*.counter' \
        ! -name 'catalog.db*' ! -name '*.log' ! -name '*.yaml' ! -name 'sim.txt' ! -name pid ! -name port \
        ! -name lockstepd.pid ! -name soak.jsonl ! -name create.err ! -name prune.out \
        ! -name 'prune-failed-*.out' ! -name 'cut-failed-*.out' | grep ."

# ---- per-cut time: reported, not asserted --------------------------------------------
mean() { printf '%s\n' "$@" | awk '{s += $1; n++} END {printf "%.1f", n ? s / n : 0}'; }
n=${#create_ms[@]}; h=$((n < 100 ? n : 100))
echo "# per-cut wall time (ms), mean of the first/last $h cuts: snapshot create $(mean "${create_ms[@]:0:$h}") / $(mean "${create_ms[@]:$((n - h))}")," \
        "prune $(mean "${prune_ms[@]:0:$h}") / $(mean "${prune_ms[@]:$((n - h))}")"
echo "# total $(awk -v a="$t_start" -v b="$t_end" 'BEGIN {printf "%.1f", b - a}') s for $((done_cuts - start_cut)) cuts; samples in $T/soak.jsonl"
printf '{"summary":{"resumed_after":%s,"cuts":%s,"failed":%s,"aborted_on_purpose":%s,"seconds":%s,"create_ms_first":%s,"create_ms_last":%s,"prune_ms_first":%s,"prune_ms_last":%s,"asan":%s}}\n' \
        "$start_cut" "$done_cuts" "$failed_cuts" "$aborts_ok" "$(awk -v a="$t_start" -v b="$t_end" 'BEGIN {printf "%.1f", b - a}')" \
        "$(mean "${create_ms[@]:0:$h}")" "$(mean "${create_ms[@]:$((n - h))}")" "$(mean "${prune_ms[@]:0:$h}")" \
        "$(mean "${prune_ms[@]:$((n - h))}")" "$asan" >> "$T/soak.jsonl"
[ -z "$out_file" ] || cp "$T/soak.jsonl" "$out_file"
finish
