#!/usr/bin/env bash
# Set-up for the x86-64 kernel test lab, then the main job (boot the kernel and inspect it).
#
# Idempotent: installs only what is missing, never removes a package (lab/setup-debs.sh simulates
# apt's plan first). Needs root or sudo for Debian packages.
#   Debian: qemu-system-x86 (QEMU 7.2), qemu-utils (qemu-img: record/replay), gdb, binutils, rustc-web + cargo-web + rust-web-src
#           (Rust 1.96 with the standard library's sources, for build-std); for the BIOS path,
#           rust-web-llvm + lld-22 (rust-lld, bootloader 0.9's linker; LLVM 22's objcopy/ar);
#           for the UEFI path (--uefi), ovmf (the firmware) + mtools (the FAT image for an EFI
#           executable); for a Multiboot2 kernel (GRUB image), grub-pc-bin + grub-efi-amd64-bin + xorriso
#           for the HTML report's browser test, chromium; for terminal tests, tmux
#   QEMU 10.0 beside the system's 7.2 (bookworm-backports, unpacked into a private prefix, never
#           installed over it: lab/setup-qemu.sh; `lab qemus` lists both)
#   PyPI:   this package (editable) with its test extras, which bring pytest, `just` and MkDocs
#   crates: bootimage, pinned (cargo install); the kernel's dependencies, pinned by
#           kernel/Cargo.lock (fetched by the first build)
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
trap 'echo "setup: stopped after $((SECONDS - started)) s" >&2' ERR
echo "setup: Debian packages (lab/setup-debs.sh: simulated first, nothing removed)"
bash lab/setup-debs.sh

echo "setup: QEMU 10.0 beside the system's (lab/setup-qemu.sh)"
bash lab/setup-qemu.sh

echo "setup: installing the lab (pip install -e '.[test]')"
pip_install() { python3 -m pip install -q --disable-pip-version-check "$@" --config-settings editable_mode=compat -e '.[test]'; }
pip_install 2>/dev/null || pip_install --break-system-packages  # Debian's externally-managed python
command -v pyenv >/dev/null && pyenv rehash

scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
case ":$PATH:" in
    *":$scripts:"*) ;;
    *) export PATH="$scripts:$PATH"
       echo "setup: note: add $scripts to PATH for the 'lab' and 'just' commands" ;;
esac

# `cargo bootimage` for the BIOS path; the version is pinned in lab/host/build.py too.
bootimage_version=0.10.4
if ! /usr/bin/cargo bootimage --version 2>/dev/null | grep -qx "bootimage $bootimage_version"; then
    echo "setup: installing bootimage $bootimage_version (cargo install)"
    /usr/bin/cargo install bootimage --version "=$bootimage_version" --locked --quiet
fi

echo "setup: building the kernel and its BIOS disk image"
lab build --boot bios >/dev/null
echo "setup: done in $((SECONDS - started)) s; inspecting the kernel (lab inspect)"
trap - ERR
exec lab inspect
