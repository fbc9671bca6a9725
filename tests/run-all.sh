#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is needed,
# builds with gcc and with clang (warnings are errors in both), runs the unit
# tests in both builds, then runs every test (unit, integration, lab) in a build
# with AddressSanitizer + UBSan. Fails on any failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/deploy/install-deps.sh"
# install-deps put etcd-server here: the HA tests may not skip for want of it.
export LOCKSTEP_REQUIRE_ETCD=1

step() { printf '\n== %s ==\n' "$*"; }

step "gcc build + unit tests"
CC=gcc "$top/deploy/build.sh" "$top/build-gcc" -DLOCKSTEP_FAILPOINTS=ON
ctest --test-dir "$top/build-gcc" -L 'unit|package' --output-on-failure -j2

step "clang build without failpoints (as released) + unit tests"
CC=clang "$top/deploy/build.sh" "$top/build-clang" -DLOCKSTEP_FAILPOINTS=OFF
ctest --test-dir "$top/build-clang" -L unit --output-on-failure -j2

step "ASan + UBSan build: every test"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
CC=gcc "$top/deploy/build.sh" "$top/build-asan" -DLOCKSTEP_SANITIZE=ON -DLOCKSTEP_FAILPOINTS=ON
ctest --test-dir "$top/build-asan" -L 'unit|integration' --output-on-failure -j2
ctest --test-dir "$top/build-asan" -L lab --output-on-failure

step "all tests passed"
