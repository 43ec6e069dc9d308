#!/usr/bin/env bash
# Installs BUILD_DIR into a scratch prefix and runs `systemd-analyze verify` on the unit it
# installed, whose ExecStart names the binary that install put there (verify checks that it
# exists and is executable).
# usage: verify_unit.sh BUILD_DIR WORK_DIR
set -euo pipefail
build_dir=$1 work_dir=$2

if ! command -v systemd-analyze >/dev/null; then
    echo "SKIPPED: systemd-analyze not found (package systemd)"
    exit 0
fi
rm -rf "$work_dir"
cmake --install "$build_dir" --prefix "$work_dir/prefix" >/dev/null
unit="$work_dir/prefix/lib/systemd/system/ucoro-echo-server.service"
grep "^ExecStart=" "$unit"
# --man=no: Documentation= names the man page, which this scratch install does not put
# where man looks (the man page test checks the pages themselves).
output=$(systemd-analyze verify --man=no "$unit" 2>&1) || {
    echo "$output"
    echo "FAILED: systemd-analyze verify"
    exit 1
}
# verify exits 0 on some warnings (an unknown setting is one); none is allowed.
if [ -n "$output" ]; then
    echo "$output"
    echo "FAILED: systemd-analyze verify warned"
    exit 1
fi
echo "systemd-analyze verify: no warnings"
