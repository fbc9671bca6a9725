#!/usr/bin/env bash
# hvmodule: the libvirt backend is a module of its own. A libvirt agent (on
# libvirt's in-process test driver) loads it once, before it forks: executor,
# network half and guardian all map it, and it serves through it. A sim agent
# maps no libvirt at all and stays under 16 MiB RSS in its three processes. A
# missing module, a file that is no module and a module of another build stop
# the agent at start with a message naming the file; a module replaced under a
# running agent (a package upgrade) changes nothing in it.
. "$(dirname "$0")/lib.sh"
: "${HV_MODULE_REL:?}" "${BAD_MODULE:?}"

# maps_libvirt PID: libvirt's library (or the backend module) is mapped in PID.
maps_libvirt() { grep -qE 'libvirt\.so|hv-libvirt\.so' "/proc/$1/maps"; }
no_libvirt() { ! maps_libvirt "$1"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
guardian_of() { local p; for p in $(pgrep -P "$(cat "$T/$1/pid")"); do if ours_guardian "$p"; then echo "$p"; fi; done; }

# libvirt_agent ID: a sim agent's config turned to the libvirt backend on
# libvirt's test driver (a domain "test" in the library itself, no daemon).
libvirt_agent() {
        sim_agent "$1" "domain unused"
        sed -i "s|^backend: sim|backend: libvirt\nlibvirt_uri: \"test:///default\"|; /^sim_config:/d" "$T/$1/agent.yaml"
}

libvirt_agent lv
start_agent lv
exe=$(cat "$T/lv/pid")
net=$(net_half lv)
g=$(guardian_of lv)
for p in "$exe" "$net" "$g"; do
        check "libvirt agent: pid $p ($(cat "/proc/$p/comm")) maps the backend module" grep -q hv-libvirt.so "/proc/$p/maps"
done
r=$(send lv discover)
check "libvirt agent: discover through the module lists the test driver's domain" \
        [ "$(jqr '[.members[].vm] | join(",")' <<< "$r")" = test ]
stop_agent lv

sim_agent sim "domain web1 disks=vda"
start_agent sim
exe=$(cat "$T/sim/pid")
net=$(net_half sim)
g=$(guardian_of sim)
for p in "$exe" "$net" "$g"; do
        check "sim agent: pid $p ($(cat "/proc/$p/comm")) maps no libvirt" no_libvirt "$p"
done
rss=$(($(rss_kb "$exe") + $(rss_kb "$net") + $(rss_kb "$g")))
echo "# sim agent, idle: executor + network half + guardian = $rss kB RSS"
if [ "${LOCKSTEP_SANITIZE:-OFF}" = ON ]; then
        echo "# the 16 MiB bound is not checked under ASan (its shadow memory is in every RSS)"
else
        check "sim agent, idle: under 16 MiB RSS in its three processes ($rss kB)" [ "$rss" -lt 16384 ]
fi
stop_agent sim

# A copy of the agent binary, and the module where that copy looks for it.
mkdir -p "$T/inst/sbin"
cp "$AGENT_BIN" "$T/inst/sbin/lockstep-agent"
mod=$T/inst/sbin/$HV_MODULE_REL
mkdir -p "$(dirname "$mod")"
# check_start WHAT PATTERN: --check-config fails naming the module, and so does a start.
check_start() {
        local out rc=0
        out=$("$T/inst/sbin/lockstep-agent" -c "$T/lv/agent.yaml" --check-config 2>&1) || rc=$?
        check "$1: --check-config fails" [ "$rc" -ne 0 ]
        check "$1: ... saying \"$2\"" grep -qF -- "$2" <<< "$out"
        rc=0
        out=$("$T/inst/sbin/lockstep-agent" -c "$T/lv/agent.yaml" 2>&1) || rc=$?
        check "$1: the agent does not start" [ "$rc" -ne 0 ]
        check "$1: ... saying \"$2\"" grep -qF -- "$2" <<< "$out"
}
check_start "no module" "cannot open its module $mod: No such file or directory"
echo "not an ELF file" > "$mod"
check_start "not a module" "cannot load $mod"
cp "$BAD_MODULE" "$mod"
check_start "module of another build" "$mod is of lockstep 0.0.0-other"
check "a sim agent needs no module" "$T/inst/sbin/lockstep-agent" -c "$T/sim/agent.yaml" --check-config
cp "$(realpath -m "$(dirname "$AGENT_BIN")/$HV_MODULE_REL")" "$mod"
check "with its own module beside it, the copy's config check passes" \
        "$T/inst/sbin/lockstep-agent" -c "$T/lv/agent.yaml" --check-config

# An upgrade renames a new file over the module while the agent runs.
AGENT_BIN=$T/inst/sbin/lockstep-agent start_agent lv
cp "$BAD_MODULE" "$mod.new" && mv "$mod.new" "$mod"
r=$(send lv discover)
check "module replaced under a running agent: it still serves" [ "$(jqr '[.members[].vm] | join(",")' <<< "$r")" = test ]
stop_agent lv
finish
