#!/usr/bin/env bash
# privsep_sim: a real agent splits in two. The process that holds the listening
# TCP socket is not root, runs under seccomp with no_new_privs; the executor
# (the agent's main pid) is in a network namespace of its own and holds no TCP
# socket. A cut still works; kill -9 of the network half ends the executor and
# the frozen guest is thawed; SIGTERM stops both.
. "$(dirname "$0")/lib.sh"

sim_agent host-a "domain web1 disks=vda" "domain db1"
# A counter file where versions before the split kept it (state_dir defaults
# to journal_dir): it is moved into the network half's directory.
mkdir -p "$T/host-a/journal"
echo 7 > "$T/host-a/journal/counter-0011223344556677"
start_agent host-a
exe=$(cat "$T/host-a/pid")
port=$(cat "$T/host-a/port")
net=$(net_half host-a || true)
check "the agent has a network half" [ -n "$net" ]

# listener_pid PORT: the pid holding the listening TCP socket on PORT.
listener_pid() { ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
status_field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"; }
lis=$(listener_pid "$port")
check "the listening socket is the network half's" [ "$lis" = "$net" ]
if [ "$(id -u)" -eq 0 ]; then
        check "listener: no uid is 0" bash -c "grep -q '^Uid:' /proc/$lis/status && ! grep -q '^Uid:.*\b0\b' /proc/$lis/status"
        check "listener: no gid is 0" bash -c "grep -q '^Gid:' /proc/$lis/status && ! grep -q '^Gid:.*\b0\b' /proc/$lis/status"
        check "listener: no supplementary groups" [ -z "$(status_field "$lis" Groups)" ]
        check "executor: its own network namespace" \
                [ "$(readlink "/proc/$exe/ns/net")" != "$(readlink /proc/self/ns/net)" ]
else
        echo "# not root: the uid and namespace checks are skipped (the agent keeps its user and network)"
fi
check "listener: seccomp filter" [ "$(status_field "$lis" Seccomp)" = 2 ]
check "listener: no_new_privs" [ "$(status_field "$lis" NoNewPrivs)" = 1 ]
check "network half: replay state in its own directory" \
        bash -c "ls $T/host-a/journal/replay/counter-* >/dev/null && [ \"\$(readlink /proc/$net/cwd)\" = $T/host-a/journal/replay ]"

check "old counter file moved into replay/" \
        bash -c "[ ! -e $T/host-a/journal/counter-0011223344556677 ] && grep -qx 7 $T/host-a/journal/replay/counter-0011223344556677"
[ "$(id -u)" -ne 0 ] ||
        check "... and is the network half's" [ "$(stat -c %u "$T/host-a/journal/replay/counter-0011223344556677")" = "$(status_field "$net" Uid | cut -f1)" ]

# tcp_inodes PID: socket inodes of every TCP socket in PID's network
# namespace and in ours.
tcp_inodes() { awk 'FNR > 1 { print $10 }' "/proc/$1/net/tcp" "/proc/$1/net/tcp6" /proc/self/net/tcp /proc/self/net/tcp6; }
fd_sockets() { find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' | sed 's/socket:\[\([0-9]*\)\]/\1/'; }
has_tcp() { grep -qxFf <(tcp_inodes "$1") <(fd_sockets "$1"); }
no_tcp() { ! has_tcp "$1"; }
check "network half: holds TCP sockets (the check below can see one)" has_tcp "$net"
check "executor: holds no TCP socket" no_tcp "$exe"
[ "$(id -u)" -ne 0 ] ||
        check "executor: its namespace has no TCP socket at all" [ "$(awk 'FNR > 1' "/proc/$exe/net/tcp" "/proc/$exe/net/tcp6" | wc -l)" = 0 ]

# A cut through both halves.
r=$(send host-a freeze t1 s1 quiesce 10000 web1:0 db1:1)
check "freeze through the executor" [ "$(jqr .code <<<"$r")" = OK ]
r=$(send host-a snapshot t1)
check "snapshot" [ "$(jqr .code <<<"$r")" = OK ]
r=$(send host-a commit t1)
check "decide (commit)" [ "$(jqr .code <<<"$r")" = OK ]
check "nothing frozen after the cut" nothing_frozen

# kill -9 of the network half while a guest is frozen.
send host-a freeze t2 s2 quiesce 30000 web1:0 >/dev/null
check "web1 frozen" frozen host-a web1
kill -9 "$net"
code=0; wait "$exe" 2>/dev/null || code=$?
check "executor ended with the network half (exit code 1, got $code)" [ "$code" = 1 ]
check "... and web1 was thawed" wait_for 30 bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"
check "... the executor said why" grep -q 'the network half ended (signal 9)' "$T/host-a/agent.log"

# kill -9 of the executor: the network half dies with it, the guardian thaws.
# Replay files left by another privsep_user (root here) are handed over at
# start: the restarted agent reads its counters and answers.
[ "$(id -u)" -ne 0 ] || chown 0:0 "$T"/host-a/journal/replay/counter-*
start_agent host-a
exe=$(cat "$T/host-a/pid"); net=$(net_half host-a || true)
send host-a freeze t3 s3 quiesce 30000 web1:0 >/dev/null
check "web1 frozen again" frozen host-a web1
kill -9 "$exe"; wait "$exe" 2>/dev/null || true
check "network half died with the executor" wait_for 10 pid_gone "$net"
check "guardian thawed web1" wait_for 30 bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"

# SIGTERM: a clean stop of both halves, frozen guests thawed first.
start_agent host-a
exe=$(cat "$T/host-a/pid"); net=$(net_half host-a || true)
send host-a freeze t4 s4 quiesce 30000 web1:0 >/dev/null
kill -TERM "$exe"
code=0; wait "$exe" 2>/dev/null || code=$?
check "SIGTERM: executor exits 0 (got $code)" [ "$code" = 0 ]
check "SIGTERM: network half gone" wait_for 10 pid_gone "$net"
check "SIGTERM: web1 thawed" bash -c "! grep -q '^frozen 1' $T/host-a/sim/web1.state"
check "SIGTERM: port released" bash -c "[ -z \"\$(ss -Hltn 'sport = :$port')\" ]"
finish
