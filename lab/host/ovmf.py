"""OVMF, the UEFI firmware for QEMU, from Debian's `ovmf` package.

QEMU maps it as two pflash chips below 4 GiB: the firmware code, read-only and shared by every
run, and the variable store (boot entries, settings), which the firmware writes. Each run gets
a private copy of the store's template in its own 0700 directory, so no run sees another's
variables and the package's files are never written.

Debian puts them in /usr/share/OVMF. The 4 MiB build without Secure Boot is the one QEMU's own
firmware descriptor names (/usr/share/qemu/firmware/60-edk2-x86_64.json); the 2 MiB build is
the fallback. Code and store must be of one build: `LAB_OVMF_CODE` and `LAB_OVMF_VARS` point
the lab at another pair (the store defaults to the code's name with CODE replaced by VARS).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UserError

ENV_CODE, ENV_VARS = "LAB_OVMF_CODE", "LAB_OVMF_VARS"
DEBIAN_DIR = Path("/usr/share/OVMF")
#: (code, variable store template), best first.
DEBIAN_PAIRS = (("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"), ("OVMF_CODE.fd", "OVMF_VARS.fd"))
PACKAGE_HINT = "install Debian's ovmf package (apt-get install ovmf, or bash lab/setup.sh)"
#: The run's copy of the variable store, in its private directory.
VARS_COPY = "OVMF_VARS.fd"


@dataclass(frozen=True)
class Firmware:
    code: Path
    vars_template: Path

    def pflash_args(self, private_dir: Path) -> list[str]:
        """QEMU arguments for this firmware: the code read-only, and a fresh private copy of
        the variable store in `private_dir` (mode 0600), written by the firmware."""
        copy = private_dir / VARS_COPY
        try:
            shutil.copyfile(self.vars_template, copy)
            copy.chmod(0o600)
        except OSError as exc:
            raise UserError(f"cannot copy the UEFI variable store {self.vars_template} to "
                            f"{copy}: {exc.strerror or exc}") from None
        return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={_escape(self.code)}",
                "-drive", f"if=pflash,format=raw,unit=1,file={_escape(copy)}"]


def find() -> Firmware:
    """The firmware to boot: `LAB_OVMF_CODE`/`LAB_OVMF_VARS` when set, else Debian's; a
    UserError in one line naming what is missing and the package that has it."""
    code_env, vars_env = os.environ.get(ENV_CODE), os.environ.get(ENV_VARS)
    if code_env or vars_env:
        code = Path(code_env) if code_env else DEBIAN_DIR / DEBIAN_PAIRS[0][0]
        store = Path(vars_env) if vars_env else code.with_name(code.name.replace("CODE", "VARS"))
        for path, name in ((code, ENV_CODE), (store, ENV_VARS)):
            if not os.access(path, os.R_OK) or not path.is_file():
                source = f"{name}={os.environ[name]}" if os.environ.get(name) else f"default for {name}"
                raise UserError(f"UEFI firmware not found: {path} ({source}); {PACKAGE_HINT}, or set "
                                f"{ENV_CODE} and {ENV_VARS} to an OVMF code image and its variable store")
        return Firmware(code, store)
    for code_name, vars_name in DEBIAN_PAIRS:
        code, store = DEBIAN_DIR / code_name, DEBIAN_DIR / vars_name
        if code.is_file() and store.is_file():
            return Firmware(code, store)
    names = " or ".join(f"{DEBIAN_DIR / c} with {v}" for c, v in DEBIAN_PAIRS)
    raise UserError(f"UEFI firmware not found: no {names}; {PACKAGE_HINT}")


def _escape(path: Path) -> str:
    """QEMU option values: a comma is written as two."""
    return str(path).replace(",", ",,")
