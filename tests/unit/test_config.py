"""lab.toml (lab/host/config.py), without QEMU: found upwards, paths relative to it, and every
unknown key or wrong value one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import BuildError, UserError
from lab.host import config


def write(directory: Path, text: str) -> Path:
    path = directory / config.FILE_NAME
    path.write_text(text)
    return path


def test_a_full_file(tmp_path):
    cfg = config.load(write(tmp_path, """
[kernel]
path = "build/k.elf"
build = "make -C kernel"
symbols = "build/System.map"
append = "console=ttyS0"
[vm]
profile = "mine.toml"
memory = "512M"
qemu_args = ["-smp", "2"]
ready_timeout = 30
[stop]
at = "kernel::init"
[waivers]
"tss.stacks-mapped" = "mapped on first use"
"""))
    assert cfg.kernel == tmp_path / "build" / "k.elf"
    assert cfg.build == ("make", "-C", "kernel")
    assert cfg.symbols == tmp_path / "build" / "System.map"
    assert cfg.profile == str(tmp_path / "mine.toml")
    assert (cfg.append, cfg.memory, cfg.qemu_args, cfg.ready_timeout) == ("console=ttyS0", "512M", ("-smp", "2"), 30.0)
    assert cfg.at == "kernel::init" and cfg.after is None
    assert cfg.waivers == {"tss.stacks-mapped": "mapped on first use"}


def test_found_from_a_subdirectory(tmp_path):
    path = write(tmp_path, '[vm]\nprofile = "tcg"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert config.find(sub) == path
    assert config.find(tmp_path.parent) != path  # never below the start


def test_no_file_is_an_empty_configuration():
    cfg = config.load(None)
    assert cfg.kernel is None and cfg.waivers == {} and cfg.qemu_args == ()


@pytest.mark.parametrize("text, needle", [
    ('[kernel]\npth = "k.elf"\n', "unknown key kernel.pth; [kernel] takes path,"),
    ('[kernal]\npath = "k.elf"\n', "unknown section [kernal]"),
    ('[kernel]\npath = 3\n', "kernel.path must be a string, not 3"),
    ('[vm]\nready_timeout = -1\n', "vm.ready_timeout must be a positive number, not -1"),
    ('[vm]\nready_timeout = nan\n', "vm.ready_timeout must be a positive number"),
    ('[vm]\nqemu_args = "-smp 2"\n', "vm.qemu_args must be a list of strings"),
    ('[kernel]\nbuild = []\n', "kernel.build must be a string or a list of strings"),
    ('[stop]\nat = "x"\nwhen = "y"\n', "[stop] takes one of at, after, when, not at and when"),
    ('[waivers]\n"idt.df-ist" = ""\n', "waivers.idt.df-ist: the reason, a non-empty string"),
    ('kernel = "k.elf"\n', "kernel must be a table"),
    ('[kernel\n', "not valid TOML"),
])
def test_a_bad_key_or_value_is_one_line_naming_it(tmp_path, text, needle):
    with pytest.raises(UserError) as exc:
        config.load(write(tmp_path, text))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_not_utf8(tmp_path):
    path = tmp_path / config.FILE_NAME
    path.write_bytes(b'[kernel]\npath = "\xff"\n')
    with pytest.raises(UserError, match="not UTF-8"):
        config.load(path)


def test_the_build_command_runs_in_the_files_directory(tmp_path):
    cfg = config.load(write(tmp_path, '[kernel]\npath = "k.elf"\nbuild = ["sh", "-c", "echo built > k.elf"]\n'))
    cfg.build_kernel()
    assert (tmp_path / "k.elf").read_text() == "built\n"


def test_a_failing_build_is_a_build_error_with_its_output(tmp_path):
    cfg = config.load(write(tmp_path, '[kernel]\nbuild = ["sh", "-c", "echo no compiler >&2; exit 7"]\n'))
    with pytest.raises(BuildError) as exc:
        cfg.build_kernel()
    assert exc.value.status == 7 and "no compiler" in exc.value.message


def test_the_caller_wins_and_lab_toml_fills_the_rest(tmp_path):
    """One builder (lab/runs/vm.py) for the CLI and lab.api: every value left out comes from
    lab.toml, lab.toml's QEMU arguments before the caller's; the boot key is one of them."""
    from lab.host.bootpath import bios_image
    from lab.runs.vm import spec_from, stop_from

    kernel = tmp_path / "k.elf"
    kernel.write_bytes(b"\x7fELF\x02" + bytes(13) + b"\x3e" + bytes(64))  # ELF64 header stub, x86-64
    bios_image(kernel).write_bytes(b"\0" * 512)
    cfg = config.load(write(tmp_path, '[kernel]\npath = "k.elf"\nboot = "bios"\nappend = "quiet"\n'
                                      '[vm]\nmemory = "256M"\nqemu_args = ["-smp", "2"]\nready_timeout = 30\n'
                                      '[stop]\nat = "kmain"\n'))
    spec = spec_from(cfg, qemu_args=("-no-hpet",))
    assert (spec.kernel, spec.profile.boot, spec.append, spec.ready_timeout) == (kernel, "bios", "quiet", 30.0)
    assert spec.profile.memory == "256M" and spec.profile.args[-3:] == ("-smp", "2", "-no-hpet")
    assert "-smp" not in spec_from(cfg, qemu_args=()).profile.args[:-2]  # no cpus: only lab.toml's own
    spec = spec_from(cfg, append="loud", ready_timeout=5.0, boot="multiboot")
    assert (spec.profile.boot, spec.append, spec.ready_timeout) == ("multiboot", "loud", 5.0)
    assert stop_from(cfg).at == "kmain" and stop_from(cfg, when="x").at is None
    assert spec_from(config.LabConfig(), kernel=kernel).ready_timeout == config.DEFAULT_READY_TIMEOUT


def test_which_qemu_from_lab_toml_a_profile_or_the_caller(tmp_path):
    """[vm] qemu names a QEMU (a name, or a path relative to lab.toml); the caller's --qemu wins;
    a profile's own `qemu` key is kept when neither names one."""
    from lab.host import profiles
    from lab.runs.vm import spec_from

    kernel = tmp_path / "k.elf"
    kernel.write_bytes(b"\x7fELF\x02" + bytes(13) + b"\x3e" + bytes(64))
    cfg = config.load(write(tmp_path, '[kernel]\npath = "k.elf"\n[vm]\nqemu = "10.0"\n'))
    assert cfg.qemu == "10.0"
    assert spec_from(cfg).profile.qemu == "10.0"
    assert spec_from(cfg, qemu="system").profile.qemu == "system"
    assert config.load(write(tmp_path, '[vm]\nqemu = "q/bin/qemu-system-x86_64"\n')).qemu == \
        str(tmp_path / "q/bin/qemu-system-x86_64")
    with pytest.raises(UserError, match="vm.qemu must be a string"):
        config.load(write(tmp_path, '[vm]\nqemu = 10\n'))
    own = tmp_path / "mine.toml"
    own.write_text('description = "x"\nmachine = "pc"\naccel = "tcg"\ncpu = "qemu64"\nmemory = "128M"\nqemu = "10.0"\n')
    assert profiles.load(str(own)).qemu == "10.0"
    assert profiles.load(str(own)).with_qemu(None).qemu == "10.0"
    assert profiles.load("tcg").qemu is None


def test_cpus_from_lab_toml_the_caller_wins_and_a_bad_count_is_one_line(tmp_path):
    """[vm] cpus = N is QEMU's `-smp N`, before lab.toml's and the caller's QEMU arguments;
    the caller's `cpus` replaces it; not a positive whole number: one line naming the key."""
    from lab.runs.vm import spec_from

    kernel = tmp_path / "k.elf"
    kernel.write_bytes(b"\x7fELF\x02" + bytes(13) + b"\x3e" + bytes(64))
    cfg = config.load(write(tmp_path, '[kernel]\npath = "k.elf"\n[vm]\ncpus = 4\nqemu_args = ["-no-hpet"]\n'))
    assert cfg.cpus == 4
    assert spec_from(cfg).profile.args[-3:] == ("-smp", "4", "-no-hpet")
    assert spec_from(cfg, cpus=8).profile.args[-3:] == ("-smp", "8", "-no-hpet")
    for bad in ("0", "2.5", '"4"', "true"):
        with pytest.raises(UserError, match="vm.cpus must be a positive whole number"):
            config.load(write(tmp_path, f"[vm]\ncpus = {bad}\n"))
    with pytest.raises(UserError, match="--cpus 300: a number of vCPUs, 1-255"):
        spec_from(cfg, cpus=300)
