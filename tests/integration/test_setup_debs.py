"""The set-up's package step, simulated against this machine as it is now (`apt-get -s`, no
change): its install line removes no package; and a line that would remove one is refused."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "lab" / "setup-debs.sh"


def simulate(*packages: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--simulate", *packages], capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                       "LC_ALL": "C"})


def installed(package: str) -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return done.stdout.strip()


def test_the_set_up_line_removes_nothing():
    done = simulate()
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.splitlines()[0]
    assert line.startswith("apt-get install ") and "qemu-system-x86" in line
    assert not [ln for ln in done.stdout.splitlines() if ln.startswith("Remv")], done.stdout


def test_a_line_that_removes_a_package_is_refused():
    """qemu-utils of another QEMU than the system's breaks its qemu-system-common (the conflict
    a bookworm-backports image brings): apt would remove the system QEMU, so the step refuses."""
    system = installed("qemu-system-common")
    policy = subprocess.run(["apt-cache", "policy", "qemu-utils"], capture_output=True, text=True).stdout
    other = [v for v in re.findall(r"^\s+(?:\*\*\* )?(\S+) \d+$", policy, re.M)
             if v.split(":")[-1].split(".")[0] != system.split(":")[-1].split(".")[0]]
    assert system and other, f"no other major version of qemu-utils to try:\n{policy}"
    done = simulate(f"qemu-utils={other[0]}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "would remove: " in done.stderr and "qemu-system-common" in done.stderr
