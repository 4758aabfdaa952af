"""A distribution's kernel to point the lab at: Debian's current `linux-image-amd64`.

Fetched with `apt-get download` from Debian's archive (nothing from anywhere else), the
vmlinuz alone extracted from the package, and cached in ~/.cache/x86-kernel-lab/debian-kernel.
Without a root disk the kernel panics after boot, which is a fine place to stop and look:
`lab inspect --kernel "$(python3 -m lab.host.distro)" --append "$LINUX_CMDLINE" --when "Kernel panic"`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lab.errors import LabError, ToolMissing

CACHE = Path.home() / ".cache" / "x86-kernel-lab" / "debian-kernel"
META_PACKAGE = "linux-image-amd64"
#: The kernel command line the lab uses for it: the console on COM1, no KASLR (so addresses are
#: the same from boot to boot).
CMDLINE = "console=ttyS0 nokaslr"


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]} not found: fetching Debian's kernel needs apt (Debian)") from None
    if r.returncode != 0:
        raise LabError(f"{argv[0]} failed: {r.stderr.strip()[-500:]}", command=argv, status=r.returncode)
    return r


def debian_kernel(cache: Path = CACHE) -> Path:
    """The vmlinuz of the package `linux-image-amd64` depends on, fetched once."""
    depends = _run(["apt-cache", "depends", META_PACKAGE]).stdout
    found = re.search(r"Depends: (linux-image-\S+)", depends)
    if found is None:
        raise LabError(f"apt-cache names no kernel package for {META_PACKAGE}: {depends.strip()[:200]}")
    package = found.group(1)
    target = cache / package / "vmlinuz"
    if target.is_file():
        return target
    work = cache / package
    work.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "download", "-q", package], cwd=work)
    debs = list(work.glob("*.deb"))
    if len(debs) != 1:
        raise LabError(f"apt-get download left {len(debs)} packages in {work}")
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
    try:
        _run(["tar", "-x", "-C", str(work), "--wildcards", "./boot/vmlinuz-*"], stdin=tar.stdout)
    finally:
        tar.stdout.close()
        tar.wait()
    [vmlinuz] = (work / "boot").glob("vmlinuz-*")
    vmlinuz.rename(target)
    debs[0].unlink()
    return target


if __name__ == "__main__":
    try:
        print(debian_kernel())
    except LabError as exc:
        sys.exit(f"lab.host.distro: {exc}")
