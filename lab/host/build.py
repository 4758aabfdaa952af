"""Builds the lab kernel with cargo (build-std, x86_64-unknown-none, Debian's rustc).

Two products, one ELF:
- `build_kernel(boot="multiboot")`: `cargo build`; QEMU loads the ELF with `-kernel`.
- `build_kernel(boot="bios")`: `cargo bootimage` (bootimage 0.10.4, pinned by lab/setup.sh),
  which runs the same `cargo build`, builds bootloader 0.9.34 around the ELF and writes the raw
  disk image `bootimage-labkernel.bin` beside it (lab/host/bootpath.py).

bootimage and bootloader 0.9's build script find `llvm-objcopy`, `llvm-ar` and `llvm-size`
through the `llvm-tools` crate, which asks `rustc --print sysroot` and looks in
`<sysroot>/lib/rustlib/*/bin`: where rustup's `llvm-tools-preview` component puts them.
Debian's rustc has no such component, so the lab gives them a sysroot of links to Debian's
LLVM 22 (the LLVM of rustc-web) and a `rustc` that answers `--print sysroot` with it and
passes everything else to Debian's rustc.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from lab.host.bootpath import BIOS, bios_image, check_boot
from lab.errors import BuildError, ToolMissing, UserError
from lab.host.locks import exclusive
from lab.host.toolchain import CARGO, KERNEL_DIR, RUSTC, SETUP_HINT, cargo_env, require_rust

TARGET = "x86_64-unknown-none"
BINARY = "labkernel"
#: Pinned in lab/setup.sh too; 0.10.4 is the first to pass -Zjson-target-spec, which cargo 1.96
#: needs for bootloader 0.9's JSON target.
BOOTIMAGE_VERSION = "0.10.4"
LLVM_BIN = Path("/usr/lib/llvm-22/bin")
LLVM_TOOLS = ("llvm-objdump", "llvm-objcopy", "llvm-ar", "llvm-size")
#: A build of the lab kernel from scratch takes about a minute here; another lab waits this long.
BUILD_LOCK_TIMEOUT = 900.0
TOOLS_DIR = KERNEL_DIR / "target" / "llvm-tools-sysroot"
HOST = "x86_64-unknown-linux-gnu"


def kernel_path(release: bool = False) -> Path:
    return KERNEL_DIR / "target" / TARGET / ("release" if release else "debug") / BINARY


def build_kernel(*, release: bool = False, quiet: bool = False, boot: str = "multiboot",
                 force: bool = False) -> Path:
    """Builds the kernel for `boot` and returns its ELF (the BIOS image lies beside it).

    Unless `force` (`lab build`), cargo is not even asked when the ELF is newer than every
    input (kernel sources, manifests, build script, linker script, cargo config, the compiler):
    cargo's own no-op check costs 0.15 s of every `lab` command. The compiler's diagnostics go
    straight to our stderr as cargo prints them; a failed build raises BuildError with the
    command and its exit status.
    """
    if not (KERNEL_DIR / "Cargo.toml").is_file():
        raise UserError(f"no kernel sources at {KERNEL_DIR}; pass --kernel PATH to use a built kernel")
    require_rust()
    # One build at a time across processes (parallel test workers, two terminals): the second
    # waits, then finds everything fresh and writes nothing, so no VM boots a half-written file.
    with exclusive(KERNEL_DIR / "target" / ".lab-build.lock", timeout=BUILD_LOCK_TIMEOUT,
                   what="the lock of another build of the lab kernel"):
        return _build_locked(release=release, quiet=quiet, boot=boot, force=force)


def _build_locked(*, release: bool, quiet: bool, boot: str, force: bool = False) -> Path:
    elf = kernel_path(release)
    if not force and elf_fresh(elf) and (check_boot(boot) != BIOS or image_fresh(elf)):
        return elf
    if check_boot(boot) == BIOS:
        # `cargo bootimage` rebuilds the bootloader and rewrites the image every time, even
        # when nothing changed (0.8 s), and a VM booting the image meanwhile would read a file
        # being rewritten. So: `cargo build` first; only a kernel or manifest newer than the
        # image runs bootimage again.
        _build_locked(release=release, quiet=quiet, boot="multiboot", force=force)
        if image_fresh(elf):
            return elf
        env = bootimage_env(cargo_env())
        command = [str(CARGO), "bootimage"]
    else:
        env = cargo_env()
        command = [str(CARGO), "build"]
    command += ["--manifest-path", str(KERNEL_DIR / "Cargo.toml")]
    if release:
        command.append("--release")
    if quiet:
        command.append("--quiet")
    # cwd matters: cargo reads kernel/.cargo/config.toml (target, build-std) from the cwd.
    # bootimage lets the bootloader's cargo print "Finished" even with --quiet: a quiet build
    # keeps its output and shows it only when the build fails.
    result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, cwd=KERNEL_DIR,
                            stdout=subprocess.PIPE if quiet else None,
                            stderr=subprocess.STDOUT if quiet and boot == BIOS else None)
    if result.returncode != 0:
        if result.stdout:
            sys.stderr.buffer.write(result.stdout)
        raise BuildError("kernel build failed (compiler output above)", command=command,
                         status=result.returncode)
    if boot == BIOS and not bios_image(elf).is_file():
        raise BuildError(f"cargo bootimage succeeded but wrote no {bios_image(elf)}", command=command)
    return elf


MANIFESTS = (KERNEL_DIR / "Cargo.toml", KERNEL_DIR / "Cargo.lock")  # bootloader version, settings


def kernel_inputs(root: Path = KERNEL_DIR) -> list[Path]:
    """Every file the kernel ELF is built from, as far as the lab can tell without cargo."""
    files = [p for p in (root / "src").rglob("*") if p.is_file()]
    files += [root / n for n in ("Cargo.toml", "Cargo.lock", "build.rs", "linker.ld", ".cargo/config.toml")]
    return files + [RUSTC]


def elf_fresh(elf: Path, inputs: list[Path] | None = None) -> bool:
    """Whether `elf` exists and is newer than every input."""
    if not elf.is_file():
        return False
    built = elf.stat().st_mtime_ns
    return all(built > p.stat().st_mtime_ns for p in (kernel_inputs() if inputs is None else inputs)
               if p.exists())


def image_fresh(elf: Path, manifests: tuple[Path, ...] = MANIFESTS) -> bool:
    """Whether the BIOS image is newer than the ELF and the manifests it was built from."""
    image = bios_image(elf)
    if not image.is_file():
        return False
    return all(image.stat().st_mtime_ns > p.stat().st_mtime_ns for p in (elf, *manifests) if p.exists())


def bootimage_version(env: dict[str, str]) -> str | None:
    """The installed `cargo bootimage`'s version, or None when there is none."""
    try:
        out = subprocess.run([str(CARGO), "bootimage", "--version"], env=env, capture_output=True,
                             text=True, stdin=subprocess.DEVNULL)
    except OSError:
        return None
    found = re.search(r"bootimage (\d+\.\d+\.\d+)", out.stdout)
    return found.group(1) if out.returncode == 0 and found else None


def bootimage_env(env: dict[str, str]) -> dict[str, str]:
    """`env` plus the llvm-tools sysroot, after checking bootimage and LLVM are installed."""
    missing = [t for t in LLVM_TOOLS if not (LLVM_BIN / t).is_file()]
    if missing:
        raise ToolMissing(f"{LLVM_BIN}/{missing[0]} not found (Debian's llvm-22); {SETUP_HINT}")
    bin_dir = ensure_tools_sysroot()
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    version = bootimage_version(env)
    if version != BOOTIMAGE_VERSION:
        found = f"bootimage {version}" if version else "no `cargo bootimage`"
        raise ToolMissing(f"the BIOS path needs bootimage {BOOTIMAGE_VERSION}, found {found}; {SETUP_HINT}")
    return env


def ensure_tools_sysroot(root: Path = TOOLS_DIR) -> Path:
    """Creates (idempotently) the sysroot of LLVM tool links and the `rustc` that names it;
    returns the directory to put first on PATH."""
    tools = root / "lib" / "rustlib" / HOST / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    for name in LLVM_TOOLS:
        link = tools / name
        if not link.is_symlink() or os.readlink(link) != str(LLVM_BIN / name):
            link.unlink(missing_ok=True)
            link.symlink_to(LLVM_BIN / name)
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    rustc = bin_dir / "rustc"
    script = ("#!/bin/sh\n"
              "# Written by lab/host/build.py: the llvm-tools crate's sysroot query, and nothing else, is answered here.\n"
              f'if [ "$#" = 2 ] && [ "$1" = --print ] && [ "$2" = sysroot ]; then echo "{root}"; exit 0; fi\n'
              f'exec "{RUSTC}" "$@"\n')
    if not rustc.is_file() or rustc.read_text() != script:
        tmp = rustc.with_suffix(".tmp")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(rustc)
    return bin_dir
