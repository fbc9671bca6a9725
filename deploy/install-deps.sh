#!/usr/bin/env bash
# Installs every Debian 12 package lockstep needs to build, test and run its lab.
# Idempotent; needs root and Debian's package archive.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: run as root (apt-get needs it)" >&2
        exit 2
fi

packages=(
        # build
        build-essential cmake pkg-config clang git
        libclang-rt-14-dev # libFuzzer and the sanitizers for tests/fuzz (clang 14, Debian 12)
        libnng-dev libprotobuf-c-dev protobuf-c-compiler libsodium-dev
        libcyaml-dev libyaml-dev libsqlite3-dev libvirt-dev libxml2-dev libcmocka-dev
        libtirpc-dev # the agent's sanitizer builds load it at start (agent/CMakeLists.txt)
        libseccomp-dev
        libcurl4-openssl-dev libjson-c-dev # the etcd client (coordinator high availability)
        # packaging (.deb with CPack) and the man pages' check
        dpkg-dev file man-db groff-base
        # run: the agent's hypervisor and the lab's guests
        libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
        qemu-guest-agent busybox-static e2fsprogs cpio kmod iproute2 libc6-dev gzip xz-utils
        # tests
        openssl jq procps psmisc sqlite3 util-linux python3-minimal
        etcd-server # test_etcd starts one of its own
        # the lab's fault tests: packet loss on a lab host's link
        iptables
        # systemd-analyze, for the units' hardening score (libvirt-daemon-system
        # pulls systemd in already; installing it starts nothing in a container)
        systemd
)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
        echo "install-deps: all ${#packages[@]} packages already installed"
        exit 0
fi
echo "install-deps: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
