#!/usr/bin/env bash
# Builds the Debian package from BUILD_DIR with CPack and inspects it as an operator would:
# its dependencies (dpkg-deb --info), its files (dpkg-deb --contents), and the server it
# holds, extracted into a scratch root (dpkg -x) and run with --version.
# usage: check_deb.sh CPACK BUILD_DIR WORK_DIR
set -euo pipefail
cpack=$1 build_dir=$2 work_dir=$3

if ! command -v dpkg-deb >/dev/null; then
    echo "SKIPPED: dpkg-deb not found (package dpkg)"
    exit 0
fi
rm -rf "$work_dir"
mkdir -p "$work_dir"
if ! "$cpack" -G DEB --config "$build_dir/CPackConfig.cmake" -B "$work_dir" >"$work_dir/cpack.log" 2>&1; then
    cat "$work_dir/cpack.log"
    echo "FAILED: cpack -G DEB"
    exit 1
fi
debs=("$work_dir"/*.deb)
deb=${debs[0]}
echo "built $(basename "$deb")"

status=0
fail() {
    echo "FAILED: $*"
    status=1
}

info=$(dpkg-deb --info "$deb")
depends=$(sed -n 's/^ Depends: //p' <<<"$info")
echo "Depends: $depends"
for dependency in liburing2 libfmt9; do
    grep -qw "$dependency" <<<"$depends" || fail "Depends lacks $dependency"
done
for field in Maintainer Description Section; do
    grep -q "^ $field: ." <<<"$info" || fail "no $field"
done

grep -q "^  .*;" <<<"$info" && fail "the Description holds a CMake list separator (;)"

contents=$(dpkg-deb --contents "$deb" | awk '{print $NF}')
for path in /usr/bin/ucoro-echo-server /usr/bin/ucoro-echo-client /usr/bin/ucoro-bench \
    '/usr/lib/(.*/)?libucoro\.(a|so)' /usr/include/ucoro/ucoro.hpp \
    '/usr/lib/(.*/)?pkgconfig/ucoro\.pc' '/usr/lib/(.*/)?cmake/ucoro/ucoro-config\.cmake' \
    /usr/share/man/man1/ucoro-echo-server.1 /usr/share/man/man1/ucoro-echo-client.1 \
    /usr/share/man/man1/ucoro-bench.1 /usr/lib/systemd/system/ucoro-echo-server.service; do
    if grep -Eq "^\.${path}\$" <<<"$contents"; then
        echo "contains $path"
    else
        fail "the package lacks $path"
    fi
done

root="$work_dir/root"
dpkg -x "$deb" "$root"
grep -q "^ExecStart=/usr/bin/ucoro-echo-server " "$root/usr/lib/systemd/system/ucoro-echo-server.service" ||
    fail "the unit's ExecStart is not /usr/bin/ucoro-echo-server"
version=$("$root/usr/bin/ucoro-echo-server" --version)
echo "extracted server: $version"
grep -Eq '^ucoro-echo-server [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]+|unknown)\)$' <<<"$version" ||
    fail "the extracted server's --version printed '$version'"
exit $status
