#!/usr/bin/env bash
# package: CPack builds the two .deb packages; each is unpacked into a clean
# directory root, holds what it should (programs, unit, man pages, example
# config), declares its library dependencies, and its programs run --version.
set -euo pipefail
BUILD=${1:?usage: package.sh BUILD_DIR}
fails=0
ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; fails=$((fails + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
for c in cpack dpkg-deb dpkg-shlibdeps; do
        command -v "$c" > /dev/null || { echo "SKIP package: $c is missing (install dpkg-dev and cmake: deploy/install-deps.sh)"; exit 77; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/ls-pkg-XXXXXX")
trap 'rm -rf "$W"' EXIT

(cd "$BUILD" && cpack -G DEB -B "$W/out" > "$W/cpack.log" 2>&1) || { cat "$W/cpack.log"; echo "not ok - cpack -G DEB"; exit 1; }
agent=$(ls "$W"/out/lockstep-agent_*.deb 2> /dev/null | head -1)
coord=$(ls "$W"/out/lockstep-coordinator_*.deb 2> /dev/null | head -1)
check "cpack made lockstep-agent_*.deb" [ -n "$agent" ]
check "cpack made lockstep-coordinator_*.deb" [ -n "$coord" ]
[ -n "$agent" ] && [ -n "$coord" ] || exit 1

for pkg in "$agent" "$coord"; do
        name=$(dpkg-deb -f "$pkg" Package)
        deps=$(dpkg-deb -f "$pkg" Depends)
        check "$name: depends on libc and libnng (from dpkg-shlibdeps): $deps" bash -c "grep -q 'libc6' <<<'$deps' && grep -q 'libnng1' <<<'$deps'"
        mkdir -p "$W/root-$name"
        dpkg-deb -x "$pkg" "$W/root-$name"
done
RA=$W/root-lockstep-agent RC=$W/root-lockstep-coordinator
for f in usr/sbin/lockstep-agent usr/lib/systemd/system/lockstep-agent.service usr/share/man/man8/lockstep-agent.8 \
        usr/share/doc/lockstep/examples/agent.yaml.example; do
        check "lockstep-agent holds /$f" [ -s "$RA/$f" ]
done
for f in usr/sbin/lockstepd usr/bin/lockstep usr/lib/systemd/system/lockstepd.service usr/lib/sysusers.d/lockstep.conf \
        usr/share/man/man8/lockstepd.8 usr/share/man/man1/lockstep.1 usr/share/doc/lockstep/examples/coordinator.yaml.example; do
        check "lockstep-coordinator holds /$f" [ -s "$RC/$f" ]
done
check "lockstep-agent holds no coordinator program" [ ! -e "$RA/usr/sbin/lockstepd" ]
# The libvirt backend is a module the agent finds from its own binary.
rel=$(strings -n 8 "$RA/usr/sbin/lockstep-agent" | grep -m1 '/hv-libvirt\.so$' || true)
check "lockstep-agent holds its libvirt backend where the agent looks for it (/usr/sbin/$rel)" \
        bash -c "[ -n '$rel' ] && [ -s '$RA/usr/sbin/$rel' ]"
check "lockstep-agent depends on libvirt0 (its backend module's library)" \
        bash -c "dpkg-deb -f '$agent' Depends | grep -q 'libvirt0'"
mkdir -p "$W/ctl" && dpkg-deb -e "$coord" "$W/ctl"
check "lockstep-coordinator's postinst creates its user" grep -q 'systemd-sysusers lockstep.conf' "$W/ctl/postinst"
check "lockstep-agent --version from the unpacked root" bash -c "'$RA/usr/sbin/lockstep-agent' --version | grep -qx 'lockstep-agent [0-9.]*'"
check "lockstepd --version from the unpacked root" bash -c "'$RC/usr/sbin/lockstepd' --version | grep -qx 'lockstepd [0-9.]*'"
check "lockstep --version from the unpacked root" bash -c "'$RC/usr/bin/lockstep' --version | grep -qx 'lockstep [0-9.]*'"
check "the units are Type=notify with a watchdog" bash -c "grep -q '^Type=notify' '$RA/usr/lib/systemd/system/lockstep-agent.service' && grep -q '^WatchdogSec=' '$RC/usr/lib/systemd/system/lockstepd.service'"
if command -v man > /dev/null; then
        for m in "$RA/usr/share/man/man8/lockstep-agent.8" "$RC/usr/share/man/man8/lockstepd.8" "$RC/usr/share/man/man1/lockstep.1"; do
                check "$(basename "$m") renders without warnings" bash -c "! LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l '$m' 2>&1 >/dev/null | grep -q ."
        done
fi
if [ "$fails" -ne 0 ]; then echo "# $fails check(s) failed"; exit 1; fi
echo "# all checks passed"
