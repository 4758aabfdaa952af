"""Builds the lab kernel with cargo (build-std, x86_64-unknown-none, Debian's rustc)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.errors import BuildError, UserError
from lab.toolchain import CARGO, KERNEL_DIR, cargo_env, require_rust

TARGET = "x86_64-unknown-none"
BINARY = "labkernel"


def kernel_path(release: bool = False) -> Path:
    return KERNEL_DIR / "target" / TARGET / ("release" if release else "debug") / BINARY


def build_kernel(*, release: bool = False, quiet: bool = False) -> Path:
    """Runs `cargo build` and returns the kernel ELF.

    The compiler's diagnostics go straight to our stderr as cargo prints them; a failed build
    raises BuildError with the command and its exit status.
    """
    if not (KERNEL_DIR / "Cargo.toml").is_file():
        raise UserError(f"no kernel sources at {KERNEL_DIR}; pass --kernel PATH to use a built kernel")
    require_rust()
    command = [str(CARGO), "build", "--manifest-path", str(KERNEL_DIR / "Cargo.toml")]
    if release:
        command.append("--release")
    if quiet:
        command.append("--quiet")
    # cwd matters: cargo reads kernel/.cargo/config.toml (target, build-std) from the cwd.
    result = subprocess.run(command, env=cargo_env(), stdin=subprocess.DEVNULL, cwd=KERNEL_DIR)
    if result.returncode != 0:
        raise BuildError("kernel build failed (compiler output above)", command=command,
                         status=result.returncode)
    return kernel_path(release)
