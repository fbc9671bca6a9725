#!/usr/bin/env bash
# notify_sim: both daemons speak systemd's notify protocol (Type=notify units)
# to a socket standing in for systemd: READY=1 once serving, WATCHDOG=1 within
# the interval asked for, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on stop.
. "$(dirname "$0")/lib.sh"
LISTEN=$BUILD/tests/notify-listen
[ -x "$LISTEN" ] || { echo "SKIP notify_sim: $LISTEN is not built"; exit 77; }
listen() { # name: a listener on $T/name.sock writing $T/name.notify
        "$LISTEN" "$T/$1.sock" > "$T/$1.notify" &
        PIDS+=("$!")
        for _ in $(seq 1 50); do [ -S "$T/$1.sock" ] && return 0; sleep 0.05; done
        return 1
}
count() { grep -c -- "$2" "$T/$1.notify" || true; }
at_least() { [ "$(count "$1" "$2")" -ge "$3" ]; }

listen agent
sim_agent host-a "domain vm1"
NOTIFY_SOCKET=$T/agent.sock WATCHDOG_USEC=1000000 start_agent host-a
check "agent: READY=1 with a status once serving" wait_for 5 grep -q '^READY=1 STATUS=agent host-a on tcp://' "$T/agent.notify"
check "agent: WATCHDOG=1 at least every 0.5 s of a 1 s watchdog" bash -c "sleep 2; [ \$(grep -c '^WATCHDOG=1' '$T/agent.notify') -ge 3 ]"
stop_agent host-a
check "agent: STOPPING=1 on SIGTERM" grep -q '^STOPPING=1' "$T/agent.notify"
NOTIFY_SOCKET=$T/agent.sock start_agent host-a

listen coord
GROUP_YAML="  - name: solo
    members: [vm1@host-a]"
coordinator host-a
NOTIFY_SOCKET=$T/coord.sock WATCHDOG_USEC=1000000 start_lockstepd
check "lockstepd: READY=1 with a status once serving" wait_for 5 grep -q '^READY=1 STATUS=1 agents, 1 groups, 0 scheduled' "$T/coord.notify"
n0=$(count coord '^WATCHDOG=1')
sleep 2
check "lockstepd: WATCHDOG=1 keeps coming ($(count coord '^WATCHDOG=1') after 2 s)" [ "$(count coord '^WATCHDOG=1')" -ge $((n0 + 3)) ]
kill -HUP "$(cat "$T/lockstepd.pid")"
check "lockstepd: RELOADING=1 then READY=1 on SIGHUP" wait_for 5 bash -c "grep -v WATCHDOG '$T/coord.notify' | grep -A1 '^RELOADING=1' | grep -q '^READY=1 STATUS=configuration reloaded'"
kill -TERM "$(cat "$T/lockstepd.pid")"
check "lockstepd: STOPPING=1 on SIGTERM" wait_for 5 grep -q '^STOPPING=1' "$T/coord.notify"
finish
