"""QEMU's record/replay (docs/devel/replay.rst; QEMU 7.2): a run recorded with icount, replayed
instruction for instruction under gdb, which can then step and continue backwards.

Recording writes every non-deterministic input (the clock, serial input, interrupts' timing)
to `replay.bin`; the CPU's progress is counted in instructions (`-icount shift=N`, no
`shift=auto`: its rate adapts to the host). Reverse execution needs snapshots: `rrsnapshot`
takes one when recording starts, stored in a qcow2 image that no device uses (`rr.qcow2`);
reverse-stepi and reverse-continue replay forward from it. A disk would need
`-drive driver=blkreplay` over it; the lab records only runs without a disk.

A recording's directory holds replay.bin, rr.qcow2, a copy of the kernel, QEMU's `-d int`
log of the recorded run (qemu.log, where the exception chain is read) and recording.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.errors import LabError, UserError
from lab.host.toolchain import require

#: -icount shift: one instruction = 2**shift ns of virtual time. Fixed, as replay needs.
ICOUNT_SHIFT = 5
META = "recording.json"
#: The environment variable that names a replayed recording's directory to the commands in gdb.
REPLAY_ENV = "LAB_REPLAY"
RRFILE = "replay.bin"
RRSNAPSHOT_IMAGE = "rr.qcow2"
RRSNAPSHOT = "init"
KERNEL_COPY = "kernel.elf"
LOG = "qemu.log"
#: QMP/HMP `info replay` answers "... instruction count = N".
SNAPSHOT_IMAGE_SIZE = "64M"


@dataclass
class Recording:
    path: Path
    probe: str
    profile: str
    icount_shift: int = ICOUNT_SHIFT
    end_icount: int | None = None  # the instruction whose execution ended the run (the reset)
    append: str | None = None

    @property
    def kernel(self) -> Path:
        return self.path / KERNEL_COPY

    @property
    def log(self) -> Path:
        return self.path / LOG

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        (self.path / META).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Recording":
        meta = path / META
        if not meta.is_file():
            raise UserError(f"{path} is not a recording (no {META}; make one with `lab probe NAME --record`)")
        try:
            data = json.loads(meta.read_text())
            rec = cls(path=path.resolve(), **data)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{meta}: not a recording's description ({exc})") from None
        for name in (RRFILE, RRSNAPSHOT_IMAGE, KERNEL_COPY):
            if not (path / name).is_file():
                raise UserError(f"recording {path} lacks {name}")
        if rec.end_icount is None:
            raise UserError(f"recording {path} did not reach its end (no end_icount in {META})")
        return rec

    # -- QEMU's arguments ------------------------------------------------------------------
    def _icount(self, mode: str) -> list[str]:
        return ["-icount", f"shift={self.icount_shift},rr={mode},rrfile={self.path / RRFILE},"
                           f"rrsnapshot={RRSNAPSHOT}",
                "-drive", f"file={self.path / RRSNAPSHOT_IMAGE},if=none,id=rr,format=qcow2",
                # A reset or power-off pauses instead of ending QEMU: a replay can go back
                # from there, and a recording's last instruction count can be read.
                "-action", "shutdown=pause"]

    def record_args(self) -> list[str]:
        return self._icount("record")

    def replay_args(self) -> list[str]:
        return self._icount("replay")


def start(path: Path, probe: str, profile: str, kernel: Path, append: str | None = None) -> Recording:
    """A new recording's directory (a recording already there is replaced; any other non-empty
    directory is refused): the kernel's copy and an empty snapshot image."""
    if (path / META).exists():
        shutil.rmtree(path)
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} exists and is not a recording: pick an empty or new directory")
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel, path / KERNEL_COPY)
    argv = [require("qemu-img"), "create", "-q", "-f", "qcow2", str(path / RRSNAPSHOT_IMAGE), SNAPSHOT_IMAGE_SIZE]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise LabError(f"qemu-img failed: {done.stderr.strip()}", command=argv, status=done.returncode)
    return Recording(path.resolve(), probe, profile, append=append)


def parse_info_replay(text: str) -> int:
    """The instruction count in HMP `info replay`'s answer."""
    import re

    m = re.search(r"instruction count = (\d+)", text)
    if m is None:
        raise LabError(f"unexpected `info replay` answer: {text.strip()!r}")
    return int(m.group(1))
