#!/usr/bin/env bash
# Set-up for the x86-64 kernel test lab, then the main job (boot the kernel and inspect it).
#
# Idempotent: installs only what is missing. Needs root or sudo for Debian packages.
#   Debian: qemu-system-x86 (QEMU 7.2), gdb, binutils, rustc-web + cargo-web + rust-web-src
#           (Rust 1.96 with the standard library's sources, for build-std)
#   PyPI:   this package (editable) with its test extras, which bring pytest and `just`
#   crates: the kernel's dependencies, pinned by kernel/Cargo.lock (fetched by the first build)
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(qemu-system-x86 gdb binutils rustc-web cargo-web rust-web-src)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "setup: installing the lab (pip install -e '.[test]')"
pip_install() { python3 -m pip install -q --disable-pip-version-check "$@" -e '.[test]'; }
pip_install 2>/dev/null || pip_install --break-system-packages  # Debian's externally-managed python
command -v pyenv >/dev/null && pyenv rehash

scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
case ":$PATH:" in
    *":$scripts:"*) ;;
    *) export PATH="$scripts:$PATH"
       echo "setup: note: add $scripts to PATH for the 'lab' and 'just' commands" ;;
esac

echo "setup: building the kernel"
lab build >/dev/null
echo "setup: done; inspecting the kernel (lab inspect)"
exec lab inspect
