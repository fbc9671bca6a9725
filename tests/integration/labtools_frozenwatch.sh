#!/usr/bin/env bash
# labtools.frozenwatch: lab-frozenwatch against libvirt's test driver. In-process
# (test:///FILE): a running, a paused, a shut-off and a missing domain; the guest
# agent is "unknown" there (the test driver has none). Through a libvirtd of our
# own (test+unix://, session mode, as nobody when we are root): a domain suspended,
# resumed (still held: the agent cannot say it thawed) and destroyed gives one
# held interval of the right length; libvirtd killed and restarted is one reconnect.
. "$(dirname "$0")/lib.sh"

FW=$BUILD/deploy/lab/lab-frozenwatch
[ -x "$FW" ] || { echo "not ok - lab-frozenwatch built in $BUILD"; exit 1; }
jget() { jq -r --arg vm "$2" ".vms[] | select(.vm == \$vm) | $3" "$1"; }
jis() { # jis FILE VM FILTER VALUE
        local v
        v=$(jget "$1" "$2" "$3")
        [ "$v" = "$4" ] || { echo "# $2 $3: $v, want $4"; return 1; }
}
jtrue() { [ "$(jget "$1" "$2" "$3")" = true ] || { echo "# $2: not ($3): $(jget "$1" "$2" .)"; return 1; }; }
fw_stop() { # pid: SIGTERM, and its exit status is 0
        kill -TERM "$1"
        local rc=0
        wait "$1" || rc=$?
        [ "$rc" -eq 0 ] || { echo "# lab-frozenwatch exited $rc"; return 1; }
}

# --- in-process test driver --------------------------------------------------
cat > "$T/node.xml" << 'XML'
<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
  <domain type='test'><name>run1</name><memory>65536</memory><os><type>hvm</type></os></domain>
  <domain type='test'><name>held1</name><memory>65536</memory><os><type>hvm</type></os>
    <test:runstate>3</test:runstate></domain>
  <domain type='test'><name>off1</name><memory>65536</memory><os><type>hvm</type></os>
    <test:runstate>5</test:runstate></domain>
</node>
XML
U="test://$T/node.xml"
"$FW" --interval-ms 50 --out "$T/a.json" run1="$U" held1="$U" off1="$U" ghost="$U" \
        > "$T/a.out" 2> "$T/a.log" &
A=$!
PIDS+=("$A")
check "ready once every VM's libvirt answered" wait_for 20 grep -qx ready "$T/a.out"
check "held1 seen paused" wait_for 10 grep -q 'held1: paused at' "$T/a.log"
sleep 1 # how long held1 is held before we look
check "stops on SIGTERM with status 0" fw_stop "$A"
F=$T/a.json
check "report is JSON with interval_ms 50" jq -e '.interval_ms == 50 and (.vms | length) == 4' "$F"
check "no temporary file left" bash -c "! ls '$T'/a.json.tmp.* 2> /dev/null"
check "run1: every sample unknown (no agent in the test driver), never held" \
        jtrue "$F" run1 '.samples > 5 and .unknown_samples == .samples and .held_samples == 0 and .held_now == false and .max_unknown_run_ms >= 1000 and .last_state == "unknown"'
check "run1: the agent's error printed once, not once per poll" \
        test "$(grep -c 'run1: guest-fsfreeze-status: ' "$T/a.log")" -eq 1
check "held1: paused all along, one interval, held >= 1 s and still held" \
        jtrue "$F" held1 '.held_samples == .samples and .held_intervals == 1 and .held_now and .held_now_ms >= 1000 and .max_held_ms == .held_now_ms and .unknown_samples == 0 and .last_state == "paused"'
for vm in off1 ghost; do
        check "$vm: gone, never held or unknown" \
                jtrue "$F" $vm '.samples > 5 and .held_samples == 0 and .unknown_samples == 0 and .max_held_ms == 0 and .last_state == "gone"'
done
check "no reconnects" jq -e '[.vms[].reconnects] == [0,0,0,0]' "$F"

# --- a libvirtd nobody listens for: unknown, no "ready" ------------------------
"$FW" --out "$T/b.json" bad="qemu+unix:///system?socket=$T/no-such-sock" > "$T/b.out" 2> "$T/b.log" &
B=$!
PIDS+=("$B")
check "unreachable libvirtd: the error names the VM and the step" wait_for 10 grep -q "^lab-frozenwatch: bad: open: .*no-such-sock" "$T/b.log"
check "  stops on SIGTERM" fw_stop "$B"
check "  every sample unknown, last_state unknown" jtrue "$T/b.json" bad '.samples >= 1 and .unknown_samples == .samples and .last_state == "unknown"'
check "  and no \"ready\"" test ! -s "$T/b.out"

# --- bad input: exit 2, nothing written ---------------------------------------
bad_input() { # name pattern args...
        local name=$1 pat=$2 out rc=0
        shift 2
        out=$("$FW" "$@" 2>&1) || rc=$?
        if [ "$rc" -eq 2 ] && grep -q -- "$pat" <<< "$out" && [ ! -e "$T/c.json" ]; then ok "$name"; else
                not_ok "$name (exit $rc: $out)"; fi
}
bad_input "no --out: usage" "usage:" run1="$U"
bad_input "a bad VM name is named" "'web 1=x': want VM=URI" --out "$T/c.json" "web 1=x"
bad_input "a VM twice" "VM named twice" --out "$T/c.json" run1="$U" run1="$U"
bad_input "--interval-ms 5 is out of range" "--interval-ms: '5' is not a number from 10" --out "$T/c.json" --interval-ms 5 run1="$U"

# --- our own libvirtd: transitions and a reconnect ----------------------------
LIBVIRTD=$(command -v libvirtd || echo /usr/sbin/libvirtd)
if [ ! -x "$LIBVIRTD" ]; then
        echo "# no libvirtd: the transition and reconnect part is skipped"
        finish
        exit 0
fi
L=$T/lv
mkdir -p "$L"
AS=()
if [ "$(id -u)" -eq 0 ]; then # a session daemon, as nobody, all under $L
        chmod 711 "$T"
        chown 65534:65534 "$L"
        AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
start_libvirtd() {
        rm -f "$L/run/libvirt/libvirt-sock"
        "${AS[@]}" env -i PATH=/usr/sbin:/usr/bin HOME="$L" XDG_RUNTIME_DIR="$L/run" \
                XDG_CONFIG_HOME="$L/cfg" XDG_CACHE_HOME="$L/cache" XDG_DATA_HOME="$L/data" \
                "$LIBVIRTD" >> "$L/libvirtd.log" 2>&1 &
        LD=$!
        PIDS+=("$LD")
        wait_for 30 test -S "$L/run/libvirt/libvirt-sock"
}
check "our libvirtd up" start_libvirtd
S="test+unix:///default?socket=$L/run/libvirt/libvirt-sock"
lv() { virsh -q -c "$S" "$@" > /dev/null; }
"$FW" --interval-ms 50 --out "$T/d.json" test="$S" > "$T/d.out" 2> "$T/d.log" &
W=$!
PIDS+=("$W")
check "ready through libvirtd" wait_for 20 grep -qx ready "$T/d.out"
lv suspend test
check "suspended: held" wait_for 10 grep -q 'test: paused at' "$T/d.log"
sleep 0.5
lv resume test
sleep 0.5 # running, agent unknown: still held
lv destroy test
check "destroyed: gone, the interval ends" wait_for 10 grep -q 'test: gone at .* held [0-9]* ms' "$T/d.log"
held=$(sed -n 's/.*test: gone at .* held \([0-9]*\) ms/\1/p' "$T/d.log")
kill -9 "$LD"
wait "$LD" 2> /dev/null || true
check "libvirtd killed: the connection is dropped" wait_for 10 grep -q 'test: connection lost' "$T/d.log"
check "libvirtd back" start_libvirtd
check "  and the watcher reconnects" wait_for 10 grep -q 'test: reconnected' "$T/d.log"
check "stops on SIGTERM" fw_stop "$W"
F=$T/d.json
check "one held interval of $held ms: suspend to destroy, across the resume (>= 1000 ms)" \
        jtrue "$F" test ".held_intervals == 1 and .max_held_ms == $held and .max_held_ms >= 1000 and .held_now == false"
check "one reconnect, and the time without libvirtd counted unknown" \
        jtrue "$F" test '.reconnects == 1 and .unknown_samples > 0 and .max_unknown_run_ms > 0'
kill -TERM "$LD"
wait "$LD" 2> /dev/null || true
finish
