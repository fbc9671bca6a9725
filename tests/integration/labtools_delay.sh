#!/usr/bin/env bash
# labtools.delay: lab-delay in front of an echo server of our own: bytes arrive
# whole and in order on several connections at once, half-close passes through,
# a round trip takes at least 2 x (delay - jitter), and a dead far end closes the
# client's connection instead of holding it. No root needed.
. "$(dirname "$0")/lib.sh"

DELAY=$BUILD/deploy/lab/lab-delay
ECHO=$BUILD/tests/integration/lab-echo
[ -x "$DELAY" ] && [ -x "$ECHO" ] || { echo "not ok - lab-delay and lab-echo built in $BUILD"; exit 1; }
D=300 J=100

"$ECHO" serve "$T/echo.port" 2> "$T/echo.log" &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_for 10 test -s "$T/echo.port" || { not_ok "echo server up"; finish; }
"$DELAY" --listen 127.0.0.1:0 --to "127.0.0.1:$(cat "$T/echo.port")" --delay-ms $D --jitter-ms $J \
        --seed 15 --port-file "$T/delay.port" > "$T/delay.out" 2> "$T/delay.log" &
DELAY_PID=$!
PIDS+=("$DELAY_PID")
wait_for 10 test -s "$T/delay.port" || { not_ok "lab-delay up"; finish; }
P=$(cat "$T/delay.port")
check "lab-delay prints the port it chose ($P)" grep -q "listening on port $P," "$T/delay.out"

check "round trips take at least 2 x ($D - $J) ms" "$ECHO" rtt "$P" 5 $((2 * (D - J)))
# 8 MiB each on 3 connections at once: more than the 4 MiB a direction may
# queue, in pieces from 1 byte to 128 KiB, so order is kept across jittered chunks.
check "3 streams of 8 MiB come back intact, in order, then end of file" "$ECHO" streams "$P" 3 $((8 << 20))

# The far end gone: each connection is closed (and lab-delay lives on).
kill -9 "$ECHO_PID"
wait "$ECHO_PID" 2> /dev/null || true
check "with the far end gone, a connection is closed" "$ECHO" closed "$P"
check "  and a second one too" "$ECHO" closed "$P"
check "  with the refusal named in the log" grep -q 'connect upstream: Connection refused' "$T/delay.log"

kill -TERM "$DELAY_PID"
rc=0
wait "$DELAY_PID" || rc=$?
check "lab-delay ends on SIGTERM with status 0 (got $rc)" test "$rc" -eq 0
cat "$T/delay.out"
# lab-delay: client->upstream: N chunks, B bytes, delay mean X ms, max Y ms, ...
stats_ok() { # direction: chunks > 0, bytes >= min, every delay within delay +- jitter
        awk -v dir="$1:" -v min="$2" -v lo=$((D - J)) -v hi=$((D + J)) '
                $2 == dir { found = 1; ok = $3 > 0 && $5 >= min && $9 >= lo && $9 <= hi && $12 <= hi }
                END { exit !(found && ok) }' "$T/delay.out"
}
total=$((3 * (8 << 20)))
check "client->upstream: all bytes counted, delays within $D +- $J ms" stats_ok client-\>upstream $total
check "upstream->client: all bytes counted, delays within $D +- $J ms" stats_ok upstream-\>client $total
check "6 connections counted" awk '/ connections$/ { exit !($2 >= 6) }' "$T/delay.out"

# Bad input: a clear error naming the option, exit 2.
bad_input() { # name pattern args...
        local name=$1 pat=$2 out rc=0
        shift 2
        out=$("$DELAY" "$@" 2>&1) || rc=$?
        if [ "$rc" -eq 2 ] && grep -q -- "$pat" <<< "$out"; then ok "$name"; else not_ok "$name (exit $rc: $out)"; fi
}
bad_input "--listen nowhere: named" "--listen: 'nowhere' is not ADDR:PORT" --listen nowhere --to 127.0.0.1:1
bad_input "--to without a port: named" "--to: '127.0.0.1' is not ADDR:PORT" --listen 127.0.0.1:0 --to 127.0.0.1
bad_input "--jitter-ms over --delay-ms: refused" "--jitter-ms: 20 is more than --delay-ms 10" \
        --listen 127.0.0.1:0 --to 127.0.0.1:1 --delay-ms 10 --jitter-ms 20
bad_input "--delay-ms -1: refused" "--delay-ms: '-1' is not a number" --listen 127.0.0.1:0 --to 127.0.0.1:1 --delay-ms -1
finish
