#!/usr/bin/env bash
# schedule_sim: lockstepd as a fleet service against 5 real agent processes (sim
# backend), with a clock the test moves (LOCKSTEP_CLOCK_FILE): schedules fire,
# skip while the last cut runs, catch up once after downtime; retention prunes;
# fleet limits hold with 20 groups over 5 agents; SIGHUP with a bad file keeps
# the running configuration; 90 groups due at once, more than lockstepd runs
# operations at once (64), all run.
. "$(dirname "$0")/lib.sh"
need_failpoints

hosts=(host-a host-b host-c host-d host-e)
for h in "${hosts[@]}"; do
        doms=()
        for v in 1 2 3 4 5 6 7 8; do doms+=("domain ${h#host-}vm$v"); done
        sim_agent "$h" "${doms[@]}" "latency freeze=20 snapshot=10 thaw=5"
        start_agent "$h"
done
# 20 groups over the 5 agents: group fN has VMs on two neighbouring agents, and
# groups f0..f4 also share a VM (vm8) with fN+5 on the same agent.
GROUP_YAML="  - name: s1
    members: [avm1@host-a, bvm1@host-b]
    schedule: \"*/15 * * * *\"
    retention: {keep_last: 2}
  - name: nocatch
    members: [cvm1@host-c]
    schedule: \"@hourly\"
    catch_up: false"
for i in $(seq 0 19); do
        a=${hosts[$((i % 5))]} b=${hosts[$(((i + 1) % 5))]}
        v=$((2 + i / 5))
        GROUP_YAML+="
  - name: f$i
    members: [${a#host-}vm$v@$a, ${b#host-}vm$v@$b, ${a#host-}vm8@$a]"
done
# 90 groups due at 12:30 each day, one VM each (VMs shared among them).
for i in $(seq 0 89); do
        h=${hosts[$((i % 5))]}
        GROUP_YAML+="
  - name: b$i
    members: [${h#host-}vm$((1 + (i / 5) % 8))@$h]
    schedule: \"30 12 * * *\""
done
MPORT=$(free_port)
COORD_EXTRA="max_cuts: 3
max_cuts_per_agent: 1
metrics: http://127.0.0.1:$MPORT"
# No step here is meant to time out; a cut held on purpose must not either.
STEP_TIMEOUT=60 coordinator "${hosts[@]}"
CLOCK_FILE=$T/clock
# clock TIME: sets the test's clock. Renamed into place: lockstepd reading a
# half-written (empty) file would take the real time instead.
clock() { date -u -d "$1" +%s > "$CLOCK_FILE.new" && mv "$CLOCK_FILE.new" "$CLOCK_FILE"; }
clock "2026-01-01T10:07:00Z"
start_lockstepd
sched() { ls_cli schedules --json | jq -r --arg g "$1" ".[] | select(.group == \$g) | $2"; }
cuts_named() { ls_cli snapshot list "$1" --json | jq -r '[.[] | select(.name | startswith("sched-")) | select(.state == "committed")] | length'; }
is() { [ "$("${@:2}")" = "$1" ]; } # is WANT cmd...: cmd prints WANT
committed() { ls_cli snapshot list "$1" --json | jq '[.[] | select(.state == "committed")] | length'; }
# jq -s and any(): jq 1.6's -e looks only at what the last input gave.
event_like() { ls_cli -c "${CFG:-$T/coordinator.yaml}" events --limit 500 --json | jq -s -e --arg k "$1" --arg g "$2" --arg re "$3" \
        'any(.[]; .kind == $k and (.group // "") == $g and (.message | test($re)))' > /dev/null; }

# /metrics over HTTP: the body must parse as Prometheus text format 0.0.4
# (every sample of a family declared by # TYPE, names and labels well formed).
scrape() {
        local resp
        exec 3<> "/dev/tcp/127.0.0.1/$MPORT" || return 1
        printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
        resp=$(cat <&3 | tr -d '\r')
        exec 3<&-
        head -n 1 <<<"$resp" | grep -q '^HTTP/1.1 200' || return 1
        sed '1,/^$/d' <<<"$resp"
}
prom_valid() { # stdin: exposition; prints the first bad line and fails
        awk '
        /^# TYPE / { if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/) { print "bad type: " $0; bad = 1 } typed[$3] = $4; next }
        /^# HELP / { next }
        /^$/ { next }
        {
                if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|Inf|NaN)$/) { print "bad sample: " $0; bad = 1; next }
                name = $0; sub(/[{ ].*/, "", name); fam = name; sub(/_(bucket|sum|count)$/, "", fam)
                if (!(name in typed) && !(fam in typed && typed[fam] == "histogram")) { print "undeclared: " $0; bad = 1 }
                n++
        }
        END { if (n == 0) { print "no samples"; bad = 1 } exit bad }'
}
metric() { scrape | awk -v k="$1" '$1 == k { print $2 }'; }
check "/metrics answers and parses as Prometheus text" bash -c "$(declare -f scrape prom_valid); MPORT=$MPORT; scrape | prom_valid"
check "... no cut counted yet" [ -z "$(metric 'lockstep_cuts_total{group="s1",outcome="committed"}')" ]

# 1. Planned from the test's clock; fires when the clock gets there.
check "schedules: next run of s1 at 10:15" [ "$(sched s1 .next_due_at)" = "2026-01-01T10:15:00.000Z" ]
check "... nothing ran yet" [ "$(sched s1 .runs)" = 0 ]
check "... @hourly for nocatch at 11:00" [ "$(sched nocatch .next_due_at)" = "2026-01-01T11:00:00.000Z" ]
clock "2026-01-01T10:15:00Z"
check "at 10:15 a scheduled cut of s1 commits" wait_for 20 is 1 cuts_named s1
check "... named after its due time" is sched-20260101T1015 bash -c "'$LOCKSTEP_BIN' -c '$T/coordinator.yaml' snapshot list s1 --json | jq -r '.[0].name'"
check "... schedules shows it" wait_for 10 is "1 committed 2026-01-01T10:30:00.000Z" sched s1 '"\(.runs) \(.last_outcome) \(.next_due_at)"'

# 2. Falls due while the last cut still runs: skipped and recorded, never stacked.
# The 10:30 run is held in FREEZE on host-a's sim lock until 10:45 was skipped.
hold_sim host-a
clock "2026-01-01T10:30:00Z"
check "the 10:30 run starts (held in FREEZE)" wait_for 10 grep -q 'scheduled run due 20260101T1030 starts' "$T/lockstepd.log"
wait_for 30 sim_blocked host-a || true
clock "2026-01-01T10:45:00Z"
check "the 10:45 run is skipped while 10:30's runs" wait_for 10 is 1 sched s1 .skipped
check "... recorded as an event with the reason" event_like schedule s1 "skipped: the previous cut of the group is still running"
release_sim
check "... the 10:30 run commits" wait_for 20 is 2 sched s1 .runs
check "only 2 scheduled cuts so far (10:15, 10:30)" [ "$(cuts_named s1)" = 2 ]
check "/metrics: s1's committed cuts counted (2)" [ "$(metric 'lockstep_cuts_total{group="s1",outcome="committed"}')" = 2 ]
check "... freeze times observed (2 cuts x 2 members)" [ "$(metric lockstep_freeze_seconds_count)" = 4 ]
check "... a group window per cut" [ "$(metric lockstep_group_window_seconds_count)" = 2 ]
ls_cli agents > /dev/null # a health check now, not in up to 10 s
check "... 5 agents up" [ "$(metric lockstep_agents_up)" = 5 ]
check "... s1's skipped run" [ "$(metric 'lockstep_schedule_skipped_total{group="s1"}')" = 1 ]
check "... still parses" bash -c "$(declare -f scrape prom_valid); MPORT=$MPORT; scrape | prom_valid"

# 3. Down from 10:50 to 11:50: 11:00, 11:15, 11:30, 11:45 missed; one catch-up
# run at start. nocatch (catch_up: false) runs nothing and counts 11:00 skipped.
kill -TERM "$(cat "$T/lockstepd.pid")"; wait "$(cat "$T/lockstepd.pid")" 2>/dev/null || true
clock "2026-01-01T11:50:00Z"
start_lockstepd
check "after downtime: one catch-up run of s1" wait_for 20 is 3 sched s1 .runs
check "... said so in the events (4 missed)" event_like schedule s1 "^4 run.s. missed while lockstepd was down: one catch-up run now"
sleep 2
check "... exactly one, not four" [ "$(ls_cli events --limit 500 --json | jq -s '[.[] | select(.group == "s1" and (.message | test("catch-up run due")))] | length')" = 1 ]
check "... next run at 12:00" [ "$(sched s1 .next_due_at)" = "2026-01-01T12:00:00.000Z" ]
check "nocatch: no catch-up, 1 skipped" [ "$(sched nocatch '"\(.runs) \(.skipped)"')" = "0 1" ]

# 4. Retention keep_last 2 ran after each scheduled cut: 3 taken, 2 left.
check "retention keep_last 2: 2 of s1's 3 scheduled cuts left" wait_for 20 is 2 committed s1
check "... the oldest (10:15) went, through the delete path" [ "$(ls_cli snapshot list s1 --json | jq -r '[.[] | select(.state == "committed") | .name] | sort | join(" ")')" = "sched-20260101T1030 sched-20260101T1145" ]
ls_cli snapshot create s1 --name manual >/dev/null
out=$(ls_cli prune s1 --dry-run --json) && rc=0 || rc=$?
check "prune --dry-run: exit 0, keeps 2, would remove 1, with why" [ "$rc:$(jq -r '"\(.kept) \(.removed) \(.cuts[] | select(.action == "remove") | .name) \(.cuts[] | select(.action == "remove") | .why)"' <<<"$out")" = "0:2 1 sched-20260101T1030 older than every rule keeps" ]
check "... and removes nothing" is 3 committed s1
out=$(ls_cli prune s1 --json) && rc=0 || rc=$?
check "prune: removes it" [ "$rc:$(jq -r '.removed' <<<"$out"):$(committed s1)" = "0:1:2" ]

# 5. Fleet limits: 20 groups at once over 5 agents, max_cuts 3, 1 per agent.
for h in "${hosts[@]}"; do echo "latency freeze=300" >> "$T/$h/sim.txt"; done
pids=()
for i in $(seq 0 19); do
        ls_cli snapshot create "f$i" --json > "$T/f$i.json" 2> "$T/f$i.err" &
        pids+=($!)
done
all=0
for p in "${pids[@]}"; do wait "$p" || all=1; done
check "20 concurrent groups over 5 agents: all commit, no deadlock" [ "$all" = 0 ]
check "... every CLI followed its cut without a missed poll" bash -c "! grep -l . '$T'/f*.err"
for h in "${hosts[@]}"; do sed -i '/latency freeze=300/d' "$T/$h/sim.txt"; done
# Each cut's [started, decided] interval lies inside its slot: overlaps show a limit broken.
for i in $(seq 0 19); do jq -c '{g: .group, s: .started_at, d: .decided_at, a: ([.members[].agent] | unique), v: [.members[] | "\(.vm)@\(.agent)"]}' "$T/f$i.json"; done > "$T/iv.jsonl"
viol=$(jq -s '
  def t: sub("Z$"; "") | sub("\\.(?<ms>[0-9]+)$"; "") as $base | (($base + "Z") | fromdate) * 1000 + (capture("\\.(?<ms>[0-9]+)Z?$").ms | tonumber);
  [.[] | {g, s: (.s | t), d: (.d | t), a, v}] as $c
  | [ $c[] as $x | $c[] as $y | select($x.g < $y.g and $x.s < $y.d and $y.s < $x.d) | {x: $x.g, y: $y.g, agent: (($x.a - ($x.a - $y.a)) | length > 0), vm: (($x.v - ($x.v - $y.v)) | length > 0)} ] as $ov
  | { agent: [$ov[] | select(.agent)] | length, vm: [$ov[] | select(.vm)] | length,
      fleet: ([$c[] as $x | [$c[] | select(.s <= $x.s and $x.s < .d)] | length] | max) }' "$T/iv.jsonl")
check "... no two cuts on one agent at once (max_cuts_per_agent 1)" [ "$(jq .agent <<<"$viol")" = 0 ]
check "... groups sharing a VM never cut at once" [ "$(jq .vm <<<"$viol")" = 0 ]
check "... at most 3 in the fleet at once (max_cuts 3): $(jq .fleet <<<"$viol")" [ "$(jq .fleet <<<"$viol")" -le 3 ]
check "... some waited for their slot (progress says why)" grep -q 'WAIT .*waits: ' "$T/lockstepd.log"

# 6. Reload: a bad file is refused with file:line, the running config stays;
# a good one is applied (SIGHUP and lockstep reload).
cp "$T/coordinator.yaml" "$T/good.yaml"
sed -i 's|schedule: "\*/15 \* \* \* \*"|schedule: "61 * * * *"|' "$T/coordinator.yaml"
kill -HUP "$(cat "$T/lockstepd.pid")"
CFG=$T/good.yaml
check "SIGHUP with a bad schedule: refused, named with file:line" wait_for 10 event_like reload "" "refused.*coordinator.yaml:[0-9]+.*schedule.*61"
unset CFG
check "... the old schedule stays" [ "$("$LOCKSTEP_BIN" -c "$T/good.yaml" schedules --json | jq -r '.[] | select(.group == "s1") | .schedule')" = "*/15 * * * *" ]
out=$(ls_cli reload 2>&1) && rc=0 || rc=$?
check "lockstep reload with the bad file: exit 1, says why" bash -c "[ $rc = 1 ] && grep -q 'coordinator.yaml:[0-9]*.*schedule' <<<'$out'"
check "... the CLI still reaches lockstepd despite the bad file" bash -c "grep -q 'warning: .*coordinator.yaml' <<<'$out'"
sed "s|^catalog: .*|catalog: $T/other.db|" "$T/good.yaml" > "$T/coordinator.yaml"
out=$(ls_cli reload 2>&1) && rc=0 || rc=$?
check "reload that moves the catalog: refused, takes a restart" bash -c "[ $rc = 1 ] && grep -q 'catalog changed; that takes a restart' <<<'$out'"
cp "$T/good.yaml" "$T/coordinator.yaml"
printf '  - name: added\n    members: [evm1@host-e]\n    schedule: "@daily"\n' >> "$T/coordinator.yaml"
# A cut in progress does not hold the reload back: it finishes on the
# configuration it started with. The cut is held in FREEZE on host-a's sim lock
# until the reload has returned.
hold_sim host-a
(exec {HOLD_FD}>&-; exec "$LOCKSTEP_BIN" -c "$T/coordinator.yaml" snapshot create f0 --json > "$T/slow.json" 2>&1) &
slow=$!
wait_for 10 grep -q 'BEGIN .*group f0' "$T/lockstepd.log" || true
wait_for 30 sim_blocked host-a || true
out=$(ls_cli reload 2>&1) && rc=0 || rc=$?
check "lockstep reload with a good file while a cut runs: applied at once ($out)" [ "$rc:$(sched added .next_due_at)" = "0:2026-01-02T00:00:00.000Z" ]
check "... without waiting for the cut (still held in FREEZE)" sim_blocked host-a
release_sim
wait "$slow" && rc=0 || rc=$?
check "... and the cut that was running commits" [ "$rc:$(jq -r .state "$T/slow.json")" = "0:committed" ]
check "... and the group can be cut" ls_cli snapshot create added
# exec: $! is the CLI itself, so the kill below ends it, not a subshell around it.
(exec "$LOCKSTEP_BIN" -c "$T/coordinator.yaml" events --follow --json > "$T/follow.jsonl" 2> "$T/follow.err") &
follower=$!
PIDS+=("$follower")
followed() { jq -s -e --arg n "$1" 'any(.[]; .kind == "cut" and .group == "added" and (.message | test("committed"))) and ([.[] | select(.kind == "cut" and .group == "added")] | length) == ($n | tonumber)' "$T/follow.jsonl" > /dev/null; }
check "events --follow starts with the newest events" wait_for 10 followed 1
ls_cli snapshot create added > /dev/null
check "... and shows the next cut as it happens" wait_for 10 followed 2
kill "$follower"; wait "$follower" 2> /dev/null || true
check "... nocatch's missed run still counted once after the reload" is "0 1" sched nocatch '"\(.runs) \(.skipped)"'

# 7. 90 groups fall due at 12:30, more than the 64 operations lockstepd runs at
# once: a run that finds no room waits for it (said once) instead of being
# skipped, and every one commits.
clock "2026-01-01T12:30:00Z"
bursts() { ls_cli schedules --json | jq "[.[] | select(.group | test(\"^b[0-9]+\$\")) | $1]"; }
bursts_committed() { bursts 'select(.runs == 1 and .last_outcome == "committed")' | jq length; }
bursts_skipped() { bursts .skipped | jq add; }
waited_for_room() { ls_cli events --limit 1000 --json | jq -s -e 'any(.[]; .kind == "schedule" and (.message | test("waits for room: lockstepd runs 64 operations at once, 8 of them kept for requests")))' > /dev/null; }
check "90 groups due at once: every run commits" wait_for 120 is 90 bursts_committed
check "... none skipped" is 0 bursts_skipped
check "... those that found no room said they wait for it" waited_for_room

# 8. A run still waiting for room when its group's next run falls due is
# skipped, says why, and the next run takes its place. Every agent is held in
# its sim lock, so lockstepd's table stays full (3 cuts held in FREEZE, the rest
# waiting for a slot) while the clock moves a day, then another.
holds=()
for h in "${hosts[@]}"; do
        exec {fd}<> "$T/$h/sim/.lock"
        flock -x "$fd"
        holds+=("$fd")
done
event_any() { ls_cli events --limit 1000 --json | jq -s -e --arg re "$1" 'any(.[]; .kind == "schedule" and (.message | test($re)))' > /dev/null; }
clock "2026-01-02T12:30:00Z"
check "a day later, with every agent held: runs wait for room" wait_for 30 event_any "run due 2026-01-02T12:30:00.000Z waits for room"
# The operator still gets a cut in: the scheduler leaves 8 entries to requests.
(for fd in "${holds[@]}"; do exec {fd}>&-; done
        exec "$LOCKSTEP_BIN" -c "$T/coordinator.yaml" snapshot create f0 --json > "$T/manual.json" 2> "$T/manual.err") &
manual=$!
clock "2026-01-03T12:30:00Z"
check "... still waiting when the next run fell due: skipped, saying why" wait_for 30 event_any "run due 2026-01-02T12:30:00.000Z skipped: no room among the operations lockstepd runs at once before the next run fell due"
check "... and the next run waits in its place" wait_for 30 event_any "run due 2026-01-03T12:30:00.000Z waits for room"
for fd in "${holds[@]}"; do exec {fd}>&-; done
wait "$manual" && rc=0 || rc=$?
check "... and the operator's cut started among them commits ($(head -c 200 "$T/manual.err"))" [ "$rc:$(jq -r .state "$T/manual.json" 2> /dev/null)" = "0:committed" ]
ran_twice() { bursts 'select(.runs == 2 and .last_outcome == "committed")' | jq length; }
skipped_once() { bursts 'select(.skipped == 1)' | jq length; }
check "released: every group ran once more (one of the two days each), and committed" wait_for 120 is 90 ran_twice
check "... and skipped the other day once" is 90 skipped_once

finish
