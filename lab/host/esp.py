"""The EFI system partition the lab makes for an EFI executable (`--uefi --kernel FILE`).

A FAT image, written with mtools (`mformat`, `mmd`, `mcopy` on the file: no mount, no root):

- without a command line, the executable is `\\EFI\\BOOT\\BOOTX64.EFI`, the removable-media
  path UEFI firmware boots when it has no boot entry (UEFI 2.x §3.5.1.1). OVMF's boot manager
  starts it at once, with no load options.
- with a command line (`--append`), the executable is `\\EFI\\LAB\\KERNEL.EFI` and a
  `\\startup.nsh` runs it with that command line. OVMF then finds nothing to boot on the disk
  and starts its built-in UEFI shell, which runs startup.nsh. The shell passes the whole line
  as the load options, its own path first, which is how an EFI-stub Linux takes its command
  line. Before running the script the shell counts down 5 s ("Press ESC in 5 seconds to skip
  startup.nsh or any other key to continue"); the lab answers that prompt on the serial console
  (`SHELL_COUNTDOWN`, `SHELL_COUNTDOWN_REPLY`), a handshake rather than a wait.

The shell substitutes `%variables%` and strips `#` comments before it starts a program: the
lab escapes both with `^`. A pipe or a redirection (`|`, `<`, `>`) and the escape character
`^` itself do not reach the program intact, so a command line holding one is refused.

Images are cached by content (the executable's bytes and the script) in
`$XDG_CACHE_HOME/x86-kernel-lab/esp` (or ~/.cache/...), written to a temporary file there and
renamed into place, so parallel runs share one and a half-written image is never booted. QEMU
opens them with snapshot=on: nothing writes them after that. Nothing is ever written next to
the user's files. Delete the folder to reclaim the space (each image is about the size of its
executable).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lab.host.cache import cache_dir as host_cache
from lab.errors import LabError, ToolMissing, UserError

#: Bumped whenever the layout of the image changes, so older cached images are not reused.
FORMAT = b"lab-esp-1"
DEFAULT_PATH = ("EFI", "BOOT", "BOOTX64.EFI")
SHELL_PATH = ("EFI", "LAB", "KERNEL.EFI")
STARTUP = "startup.nsh"
#: What the UEFI shell prints while it counts down before startup.nsh, and the line the lab
#: sends to end the count ("any other key to continue"): an empty one, the Enter key.
SHELL_COUNTDOWN = rb"any other key to continue"
SHELL_COUNTDOWN_REPLY = ""
#: Characters the UEFI shell interprets before starting a program, and how the lab escapes them.
SHELL_ESCAPES = {"%": "^%", "#": "^#"}
SHELL_REFUSED = "|<>^"
MTOOLS_PACKAGE_HINT = "install Debian's mtools package (apt-get install mtools, or bash lab/setup.sh)"
MTOOLS_TIMEOUT = 60.0  # seconds for each mtools command (a copy of some MiB; normally well under 1 s)
VOLUME_LABEL = "LAB-ESP"
#: Room for the FAT, the directories and the script beside the executable.
SLACK_BYTES = 1 << 20


def cache_dir() -> Path:
    return host_cache("esp")


def startup_script(cmdline: str) -> str:
    """The startup.nsh that runs the executable with `cmdline`; a UserError for a command line
    the UEFI shell cannot pass on intact."""
    if not (cmdline.isascii() and cmdline.isprintable()):
        raise UserError(f"--append {cmdline!r}: a UEFI shell command line is one line of "
                        f"printable ASCII")
    refused = sorted({c for c in cmdline if c in SHELL_REFUSED})
    if refused:
        raise UserError(f"--append {cmdline!r}: the UEFI shell (startup.nsh) does not pass "
                        f"{' '.join(refused)} on to the program intact")
    escaped = "".join(SHELL_ESCAPES.get(c, c) for c in cmdline)
    program = "\\" + "\\".join(SHELL_PATH)
    # fs0: is the first file system, this image (the lab gives the VM one disk).
    return "\r\n".join(("@echo -off", "fs0:", f"{program} {escaped}", ""))


#: This process's answers: (file, size, mtime, cmdline, cache) -> image, so checking a run's
#: media and then making its command line read the executable once.
_made: dict[tuple, Path] = {}


def esp_image(executable: Path, cmdline: str | None = None, cache: Path | None = None) -> Path:
    """The FAT image holding `executable` (and, with `cmdline`, the startup.nsh that passes
    it), made once and cached by content."""
    script = startup_script(cmdline) if cmdline is not None else None
    cache = cache or cache_dir()
    from lab.host.kernelfile import identity

    known = (*identity(executable), cmdline, str(cache))
    if known in _made and _made[known].is_file():
        return _made[known]
    _made[known] = image = _cached(executable, script, cache)
    return image


def _cached(executable: Path, script: str | None, cache: Path) -> Path:
    try:
        data = executable.read_bytes()
    except OSError as exc:
        raise UserError(f"kernel cannot be read: {executable}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(FORMAT + b"\0" + (script or "").encode() + b"\0" + data).hexdigest()
    image = cache / f"{digest[:40]}.img"
    if image.is_file():
        return image
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the EFI system partition cache {cache}: {exc.strerror or exc}") from None
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".img")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.truncate(_image_size(len(data) + len(script or "")))  # sparse until mtools writes
        _make(tmp, executable, script)
        os.replace(tmp, image)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".nsh").unlink(missing_ok=True)
    return image


def _image_size(payload: int) -> int:
    """Bytes for an image holding `payload` bytes of files: 5% and 1 MiB more, in whole MiB."""
    mib = 1 << 20
    return -(-(payload + payload // 20 + SLACK_BYTES) // mib) * mib


def _make(image: Path, executable: Path, script: str | None) -> None:
    """Formats `image` as FAT and copies the files onto it."""
    path = SHELL_PATH if script is not None else DEFAULT_PATH
    dirs = ["::/" + "/".join(path[:i]) for i in range(1, len(path))]
    _mtools("mformat", "-i", str(image), "-v", VOLUME_LABEL, "::")
    _mtools("mmd", "-i", str(image), *dirs)
    _mtools("mcopy", "-i", str(image), str(executable), "::/" + "/".join(path))
    if script is not None:
        nsh = image.with_suffix(".nsh")
        nsh.write_text(script, encoding="ascii")
        _mtools("mcopy", "-i", str(image), str(nsh), f"::/{STARTUP}")


def _mtools(*argv: str) -> None:
    program = shutil.which(argv[0])
    if program is None:
        raise ToolMissing(f"{argv[0]} not found: making an EFI system partition needs mtools; "
                          f"{MTOOLS_PACKAGE_HINT}")
    # No user or system mtools configuration (drive letters, checks): only the image named.
    env = {**os.environ, "MTOOLSRC": os.devnull, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}
    try:
        r = subprocess.run([program, *argv[1:]], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=MTOOLS_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LabError(f"{argv[0]} did not finish in {MTOOLS_TIMEOUT:g} s", command=list(argv)) from None
    if r.returncode != 0:
        raise LabError(f"{argv[0]} failed making an EFI system partition: "
                       f"{(r.stderr or r.stdout).strip()[-500:]}", command=list(argv), status=r.returncode)
