#!/usr/bin/env bash
# The Debian packages the lab needs, installed without removing any package the machine has.
#
#   bash lab/setup-debs.sh             install what is missing
#   bash lab/setup-debs.sh --simulate  print the apt-get line and apt's plan (apt-get -s), change nothing
#   bash lab/setup-debs.sh --simulate PKG[=VERSION]...  the same for an install line of your own
#
# Before installing, apt's plan is simulated; a plan that removes a package is refused (exit 1).
# Known conflict: a machine image with qemu-utils from bookworm-backports (10.0) cannot take
# Debian 12's qemu-system-x86 (7.2), whose qemu-system-common that qemu-utils Breaks; apt would
# remove qemu-utils. Set-up instead installs the qemu-utils of the same QEMU 7.2 in the same
# transaction, so qemu-img stays (QEMU 10.0 itself is unpacked privately: lab/setup-qemu.sh).
set -euo pipefail

debs=(qemu-system-x86 qemu-utils gdb binutils gcc rustc-web cargo-web rust-web-src rust-web-llvm lld-22
      ovmf mtools grub-pc-bin grub-efi-amd64-bin xorriso chromium tmux)
simulate=0
[ "${1:-}" = "--simulate" ] && { simulate=1; shift; }

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }

missing=()
for p in "${debs[@]}"; do
    [ -n "$(installed_version "$p")" ] || missing+=("$p")
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ((${#missing[@]})); then
    $sudo apt-get update -qq  # the candidates below come from fresh lists
fi

line=("${missing[@]}")
if (($#)); then
    line=("$@"); missing=()
elif ((${#missing[@]} == 0)); then
    line=("${debs[@]}")  # nothing to do: the simulation checks the whole list is at peace
fi
notes=()
if printf '%s\n' "${missing[@]}" | grep -qx qemu-system-x86; then
    have="$(installed_version qemu-utils)"
    want="$(candidate qemu-system-x86)"
    if [ -n "$have" ] && [ -n "$want" ] && [ "$have" != "$want" ]; then
        line+=("qemu-utils=$want")
        notes+=("qemu-utils $have is installed and conflicts with QEMU $want; installing qemu-utils $want in the same transaction (qemu-img stays, none removed)")
    fi
fi

plan="$(LC_ALL=C apt-get -s install --no-install-recommends --allow-downgrades "${line[@]}" 2>&1)" || {
    echo "setup: apt cannot install ${line[*]}:" >&2
    echo "$plan" | grep -E '^( |E:)' >&2
    exit 1
}
removed="$(echo "$plan" | sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' ')"

if ((simulate)); then
    echo "apt-get install ${line[*]}"
    echo "$plan" | grep -E '^(Inst|Remv|Conf)' || true
    for n in "${notes[@]}"; do echo "note: $n"; done
    [ -z "$removed" ] || { echo "would remove: $removed" >&2; exit 1; }
    exit 0
fi

((${#missing[@]})) || exit 0
if [ -n "$removed" ]; then
    echo "setup: installing ${missing[*]} would remove $removed; refused (install them by hand, choosing what to keep)" >&2
    exit 1
fi
for n in "${notes[@]}"; do echo "setup: $n"; done
echo "setup: installing Debian packages: ${missing[*]}"
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends --allow-downgrades "${line[@]}" >/dev/null
