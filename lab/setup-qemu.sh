#!/usr/bin/env bash
# QEMU 10.0 beside the system's QEMU 7.2, for the lab's matrix (lab/host/qemus.py, `lab qemus`).
#
# Debian's packages of bookworm-backports, downloaded (`apt-get download`) and unpacked
# (`dpkg-deb -x`) into a private prefix, never installed: the system QEMU stays as it is. The lab
# runs the prefix's binary with `-L` for its firmware and QEMU_MODULE_DIR for its modules.
# Idempotent: a complete prefix is kept; a missing apt source for bookworm-backports is added
# (deb822, same mirror and keyring as the system's). Needs root for the apt source only.
set -euo pipefail

qemu_version='1:10.0.2+ds-2+deb13u1~bpo12+1'
seabios_version='1.16.3-2~bpo12+1'
upstream=10.0.2
root="${LAB_QEMU_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/x86-kernel-lab/qemu}"
prefix="$root/$upstream"
stamp="$prefix/.lab-complete"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$qemu_version $seabios_version" ]; then
    exit 0
fi
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
    echo "setup: QEMU $upstream: not on Debian 12 (bookworm); skipped (lab qemus lists what there is)"
    exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: adding the apt source bookworm-backports (/etc/apt/sources.list.d/lab-bookworm-backports.sources)"
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
        'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
        $sudo tee /etc/apt/sources.list.d/lab-bookworm-backports.sources >/dev/null
    $sudo apt-get update -qq
elif ! apt-cache show "qemu-system-x86=$qemu_version" >/dev/null 2>&1; then
    $sudo apt-get update -qq
fi

echo "setup: unpacking QEMU $upstream into $prefix (apt-get download, dpkg-deb -x)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"  # apt's _apt user writes the downloads here
(cd "$work" && apt-get download -qq "qemu-system-x86=$qemu_version" "qemu-system-common=$qemu_version" \
    "qemu-system-data=$qemu_version" "seabios=$seabios_version" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
ls "$work"/*.deb >/dev/null
rm -rf "$prefix.tmp"
mkdir -p "$prefix.tmp"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$prefix.tmp"; done
missing="$(ldd "$prefix.tmp/usr/bin/qemu-system-x86_64" | grep 'not found' || true)"
if [ -n "$missing" ]; then
    echo "setup: QEMU $upstream needs libraries this system lacks:" >&2
    echo "$missing" >&2
    exit 1
fi
QEMU_MODULE_DIR="$prefix.tmp/usr/lib/x86_64-linux-gnu/qemu" "$prefix.tmp/usr/bin/qemu-system-x86_64" --version |
    grep -q "version $upstream" 
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
echo "$qemu_version $seabios_version" > "$stamp"
echo "setup: QEMU $upstream ready ($prefix/usr/bin/qemu-system-x86_64)"
