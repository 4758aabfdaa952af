"""Where the lab finds its tools, and one clear error when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lab.errors import ToolMissing

#: The directory holding the `lab` package: the checkout in a checkout (or an editable
#: install), site-packages in an installed one. gdb's Python imports the lab from here.
REPO_ROOT = Path(__file__).resolve().parents[2]  # lab/host/toolchain.py -> lab/ -> here
#: The lab kernel's sources: only in a checkout (building the lab kernel needs one).
KERNEL_DIR = REPO_ROOT / "kernel"


def _config_dir() -> Path:
    """The QEMU profiles: qemu-configs/ in a checkout, else the copy installed with the
    package (lab.qemu_configs, pyproject.toml)."""
    checkout = REPO_ROOT / "qemu-configs"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parents[1] / "qemu_configs"


CONFIG_DIR = _config_dir()
SETUP_HINT = "run the set-up command from README.md: bash lab/setup.sh"

# Debian's rustc-web/cargo-web: rustup's toolchain on PATH has no rust-src (REFERENCE.md).
CARGO = Path(os.environ.get("LAB_CARGO", "/usr/bin/cargo"))
RUSTC = Path(os.environ.get("LAB_RUSTC", "/usr/bin/rustc"))


def require(program: str) -> str:
    """Absolute path of `program` on PATH, or ToolMissing naming it and the set-up command."""
    found = shutil.which(program)
    if found is None:
        raise ToolMissing(f"{program} not found on PATH; {SETUP_HINT}")
    return found


def qemu_binary() -> str:
    return require(os.environ.get("LAB_QEMU", "qemu-system-x86_64"))


def gdb_binary() -> str:
    return require(os.environ.get("LAB_GDB", "gdb"))


def require_rust() -> None:
    for tool in (CARGO, RUSTC):
        if not os.access(tool, os.X_OK):
            raise ToolMissing(f"{tool} not found (Debian's cargo-web/rustc-web); {SETUP_HINT}")


def cargo_env() -> dict[str, str]:
    """Environment for the kernel build: Debian's compiler first, unstable flags allowed."""
    env = dict(os.environ)
    for var in ("RUSTUP_TOOLCHAIN", "CARGO_BUILD_TARGET", "RUSTFLAGS"):
        env.pop(var, None)
    env["PATH"] = f"{RUSTC.parent}{os.pathsep}{env.get('PATH', '')}"
    env["RUSTC"] = str(RUSTC)
    env["RUSTC_BOOTSTRAP"] = "1"
    return env
