"""Where the lab finds its tools, and one clear error when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lab.errors import ToolMissing

REPO_ROOT = Path(__file__).resolve().parents[2]  # lab/host/toolchain.py -> the checkout
KERNEL_DIR = REPO_ROOT / "kernel"
CONFIG_DIR = REPO_ROOT / "qemu-configs"
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
