#!/usr/bin/env bash
# The demo on a fresh Debian 12 machine: install, build, bring up the lab with
# real guests, take a consistent snapshot across the hosts, check it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/install-deps.sh"
"$top/deploy/build.sh" "$top/build"
if [ -x "$top/deploy/lab/demo" ]; then
        exec "$top/deploy/lab/demo"
fi
echo "demo: the lab has not landed yet; built binaries are in $top/build"
