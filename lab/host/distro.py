"""A distribution's kernel to point the lab at: Debian's current `linux-image-amd64`.

Fetched with `apt-get download` from Debian's archive (nothing from anywhere else), the
vmlinuz alone extracted from the package, and cached in ~/.cache/x86-kernel-lab/debian-kernel.
Without a root disk the kernel panics after boot, which is a fine place to stop and look:
`lab inspect --kernel "$(python3 -m lab.host.distro)" --append "$LINUX_CMDLINE" --when "Kernel panic"`.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.errors import LabError, LabTimeout, ToolMissing

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
    (cache / package).mkdir(parents=True, exist_ok=True)
    with open(cache / package / ".lock", "w") as lock:
        _lock(lock, f"{cache / package}: another fetch of {package}")
        if target.is_file():  # fetched by the process that held the lock
            return target
        with tempfile.TemporaryDirectory(dir=cache / package, prefix=".fetch-") as tmp:
            work = Path(tmp)
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
            found = list((work / "boot").glob("vmlinuz-*"))
            if len(found) != 1:
                raise LabError(f"{debs[0].name} holds {len(found)} /boot/vmlinuz-* files, not one")
            found[0].rename(target)
    return target


LOCK_TIMEOUT = 600.0  # seconds: a download of the kernel package by another process


def _lock(f, what: str) -> None:
    """An exclusive lock on `f`, waiting at most LOCK_TIMEOUT for `what`."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LabTimeout(f"waited {LOCK_TIMEOUT:.0f} s for {what}") from None
            time.sleep(0.1)  # a lock held by another process: no event to wait on

if __name__ == "__main__":
    try:
        print(debian_kernel())
    except LabError as exc:
        sys.exit(f"lab.host.distro: {exc}")
