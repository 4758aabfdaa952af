"""Boot paths, profiles' `boot` key and the llvm-tools sysroot: no QEMU needed."""

from __future__ import annotations

import subprocess

import pytest

from lab.host import profiles
from lab.host.bootpath import BIOS, MULTIBOOT, bios_image, media_args
from lab.host.build import LLVM_TOOLS, ensure_tools_sysroot, image_fresh
from lab.errors import UserError


@pytest.fixture
def kernel(tmp_path):
    k = tmp_path / "labkernel"
    k.write_bytes(b"\x7fELF")
    return k


@pytest.mark.parametrize("append, expected", [
    (None, []),
    ("lab.exit_at_ready", ["-append", "lab.exit_at_ready"]),
])
def test_multiboot_loads_the_elf(kernel, append, expected):
    assert media_args(MULTIBOOT, kernel, append) == ["-kernel", str(kernel)] + expected


@pytest.mark.parametrize("append, expected", [
    (None, []),
    ("lab.exit_at_ready", ["-fw_cfg", "name=opt/lab/cmdline,string=lab.exit_at_ready"]),
    ("a,b", ["-fw_cfg", "name=opt/lab/cmdline,string=a,,b"]),  # QEMU's escaped comma
])
def test_bios_boots_the_image_and_passes_the_cmdline_by_fw_cfg(kernel, append, expected):
    image = bios_image(kernel)
    assert image.name == "bootimage-labkernel.bin"
    image.write_bytes(b"\0" * 512)
    assert media_args(BIOS, kernel, append) == ["-drive", f"format=raw,file={image},snapshot=on"] + expected


def test_bios_without_image_is_a_user_error(kernel):
    with pytest.raises(UserError, match="no BIOS disk image.*lab build --boot bios"):
        media_args(BIOS, kernel)


def test_unknown_boot_path(kernel):
    with pytest.raises(UserError, match="unknown boot path 'pxe'; choose one of: multiboot, bios, uefi"):
        media_args("pxe", kernel)


def _profile_dir(tmp_path, extra=""):
    (tmp_path / "p.toml").write_text('description = "d"\nmachine = "pc"\naccel = "tcg"\n'
                                     f'cpu = "qemu64"\nmemory = "128M"\n{extra}')
    return tmp_path


@pytest.mark.parametrize("extra, boot", [("", MULTIBOOT), ('boot = "bios"\n', BIOS)])
def test_profile_boot_key(tmp_path, extra, boot):
    assert profiles.load("p", _profile_dir(tmp_path, extra)).boot == boot


def test_profile_with_an_unknown_boot_is_refused(tmp_path):
    with pytest.raises(UserError, match="unknown boot path 'floppy'"):
        profiles.load("p", _profile_dir(tmp_path, 'boot = "floppy"\n'))


def test_with_boot_overrides_only_when_given(tmp_path):
    p = profiles.load("p", _profile_dir(tmp_path))
    assert p.with_boot(None) is p
    assert p.with_boot(BIOS).boot == BIOS and p.with_boot(BIOS).machine == p.machine
    with pytest.raises(UserError):
        p.with_boot("pxe")


def test_tools_sysroot_answers_only_the_sysroot_query(tmp_path):
    bin_dir = ensure_tools_sysroot(tmp_path)
    tools = tmp_path / "lib" / "rustlib" / "x86_64-unknown-linux-gnu" / "bin"
    assert sorted(p.name for p in tools.iterdir()) == sorted(LLVM_TOOLS)
    rustc = bin_dir / "rustc"
    out = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path)
    # Anything else is Debian's rustc: its own sysroot, not ours.
    real = subprocess.run([rustc, "--print", "sysroot", "--target", "x86_64-unknown-none"],
                          capture_output=True, text=True)
    assert real.returncode == 0 and real.stdout.strip() != str(tmp_path)
    # Idempotent: a second call leaves the same files.
    before = rustc.read_text()
    assert ensure_tools_sysroot(tmp_path) == bin_dir and rustc.read_text() == before


def test_image_is_rebuilt_when_the_kernel_or_a_manifest_is_newer(kernel, tmp_path):
    import os

    manifest = tmp_path / "Cargo.toml"
    manifest.write_text("")
    image = bios_image(kernel)
    assert not image_fresh(kernel, (manifest,))  # no image yet
    image.write_bytes(b"\0")
    stamp = lambda path, t: os.utime(path, ns=(t, t))
    stamp(kernel, 1_000), stamp(manifest, 1_000), stamp(image, 2_000)
    assert image_fresh(kernel, (manifest,))
    stamp(kernel, 3_000)
    assert not image_fresh(kernel, (manifest,))
    stamp(kernel, 1_000), stamp(manifest, 3_000)
    assert not image_fresh(kernel, (manifest,))


def test_cargo_is_skipped_only_while_the_elf_is_newer_than_every_input(kernel, tmp_path):
    import os

    from lab.host.build import elf_fresh

    src = tmp_path / "main.rs"
    src.write_text("")
    stamp = lambda path, t: os.utime(path, ns=(t, t))
    stamp(src, 1_000), stamp(kernel, 2_000)
    assert elf_fresh(kernel, [src])
    stamp(src, 3_000)  # an edit after the build
    assert not elf_fresh(kernel, [src])
    assert not elf_fresh(tmp_path / "missing-elf", [src])


def test_kernel_inputs_cover_sources_manifests_and_the_compiler():
    from lab.host.build import RUSTC, kernel_inputs
    from lab.host.toolchain import KERNEL_DIR

    names = {str(p.relative_to(KERNEL_DIR)) for p in kernel_inputs() if p != RUSTC}
    assert {"src/main.rs", "src/boot/bios.rs", "Cargo.toml", "Cargo.lock", "linker.ld", "build.rs",
            ".cargo/config.toml"} <= names
    assert RUSTC in kernel_inputs()


def test_a_profile_customized_by_the_user(tmp_path):
    """--memory, --initrd and --qemu-arg (or lab.toml's) change the profile's command line, and
    so the saved ready state's key; a bad size or a missing initrd is one line."""
    from lab.errors import UserError

    base = profiles.load("tcg")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"\0")
    p = base.customized(memory="512M", initrd=initrd, qemu_args=("-smp", "2"))
    args = p.qemu_args()
    assert args[args.index("-m") + 1] == "512M"
    assert args[-4:] == ["-initrd", str(initrd.resolve()), "-smp", "2"]
    assert base.customized() is base
    with pytest.raises(UserError, match="--memory '12 potatoes'"):
        base.customized(memory="12 potatoes")
    with pytest.raises(UserError, match="initrd not found"):
        base.customized(initrd=tmp_path / "missing")


@pytest.mark.parametrize("extra, cpus", [
    ((), 1),
    (("-smp", "4"), 4),
    (("-smp", "cpus=3,sockets=1"), 3),
    (("-smp", "2", "-smp", "8"), 8),  # QEMU takes the last
    (("-smp", "maxcpus=4"), 1),  # no count given: QEMU's default, one
])
def test_a_profiles_cpu_count_is_its_last_smp(extra, cpus):
    assert profiles.load("tcg").customized(qemu_args=extra).cpus == cpus
