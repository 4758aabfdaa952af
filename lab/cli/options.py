"""The `lab` command line: every option declared once, in a group, and each command built from
the groups it takes. Bad values are one line and exit status 2 (`LabParser.error`)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lab.cli.bisect import HELP as BISECT_HELP, options as bisect_options
from lab.host.bootpath import ALL_BOOT_PATHS, BOOT_PATHS, UEFI
from lab.host.config import DEFAULT_KVM_READY_TIMEOUT, DEFAULT_READY_TIMEOUT
from lab.host.profiles import DEFAULT_PROFILE, DISPLAYS, MAX_CPUS
from lab.labkernel.limits import MAX_CPUS as LAB_KERNEL_MAX_CPUS
from lab.x86.vectors import MAX_VECTOR


class LabParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (no usage block) and exit 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


#: The longest wait any option may ask for (11.6 days): past this, clocks and select() overflow.
MAX_SECONDS = 1_000_000


def seconds(text: str) -> float:
    """A bound on a wait: a positive, finite number of seconds, at most MAX_SECONDS."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"needs a positive, finite number of seconds, not {text!r}")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SECONDS} seconds, not {text!r}")
    return value


def vector(text: str) -> int:
    """An interrupt vector, 0-255 (decimal or 0x...)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a vector number") from None
    if not 0 <= value <= MAX_VECTOR:
        raise argparse.ArgumentTypeError(f"vector {value} is outside 0-{MAX_VECTOR}")
    return value


def vectors(text: str) -> set[int]:
    """A list of vectors and ranges: 0-31,0x80."""
    from lab.present.compact import vector_list

    try:
        return vector_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--vectors: ")) from None


def positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"needs a positive number, not {value}")
    return value


def cpu_count(text: str) -> int:
    """A number of vCPUs, 1-MAX_CPUS."""
    value = positive_int(text)
    if value > MAX_CPUS:
        raise argparse.ArgumentTypeError(f"at most {MAX_CPUS} vCPUs, not {value}")
    return value


# -- option groups ------------------------------------------------------------------------------

def vm_options(sp, *, restore: bool = True) -> None:
    """What to boot and under which profile (every command that starts a VM)."""
    if restore:
        sp.add_argument("--fresh", action="store_true",
                        help="boot the kernel; by default a VM stopping at lab_ready is restored "
                             "from the saved ready state of this kernel, profile and command line "
                             "(made by one boot on first use; lab/machine/snapshot.py)")
    sp.add_argument("--kernel", metavar="PATH", help="kernel to boot: an ELF (Multiboot), a Linux bzImage, or "
                    "an EFI executable with --uefi (default: lab.toml's, else build the lab kernel)")
    sp.add_argument("--release", action="store_true", help="build the release profile")
    sp.add_argument("--profile", metavar="NAME|FILE",
                    help=f"QEMU profile: a name from qemu-configs/ or a TOML file (default: {DEFAULT_PROFILE})")
    sp.add_argument("--qemu", metavar="NAME|PATH",
                    help="which QEMU runs the profile: system (default), a name `lab qemus` lists "
                         "(10.0), or a path to a qemu-system-x86_64 (default: the profile's, lab.toml's)")
    boot = sp.add_mutually_exclusive_group()
    boot.add_argument("--boot", choices=ALL_BOOT_PATHS, help="how QEMU loads the kernel (default: the profile's, multiboot)")
    boot.add_argument("--uefi", dest="boot", action="store_const", const=UEFI,
                      help="boot through UEFI firmware (OVMF): the EFI executable --kernel names, on a "
                           "FAT image the lab makes, or the UEFI disk --image names (= --boot uefi)")
    sp.add_argument("--display", choices=DISPLAYS, help="guest framebuffer, shown in the HTML report (default: none)")
    sp.add_argument("--memory", metavar="SIZE", help="guest memory, e.g. 512M or 2G (default: the profile's)")
    sp.add_argument("--cpus", type=cpu_count, metavar="N",
                    help=f"vCPUs (QEMU -smp N; default: lab.toml's, else the profile's, 1): at most "
                         f"{LAB_KERNEL_MAX_CPUS} for the lab kernel, which starts no more; {MAX_CPUS} for "
                         "other kernels; inspect then reads and checks every CPU")
    sp.add_argument("--initrd", metavar="PATH", help="an initial ramdisk for a Linux-style kernel (-initrd)")
    sp.add_argument("--qemu-arg", action="append", metavar="ARG", dest="qemu_args",
                    help="one more QEMU argument (repeatable: --qemu-arg=-smp --qemu-arg=2)")
    sp.add_argument("--config", metavar="FILE",
                    help="the lab.toml to use (default: the nearest lab.toml from here upwards)")


def foreign_options(sp, *, stops: bool = True) -> None:
    """Kernels the lab did not build: what to boot, with which symbols, and when to stop."""
    g = sp.add_argument_group("other kernels")
    g.add_argument("--image", metavar="PATH", help="boot this raw disk image through the BIOS, or "
                   "UEFI with --uefi (--kernel, if given, only supplies symbols)")
    g.add_argument("--append", metavar="CMDLINE", help="kernel command line (-append; fw_cfg "
                   "opt/lab/cmdline for disk images; a startup.nsh for an EFI executable)")
    g.add_argument("--symbols", metavar="PATH", help="symbols from this ELF or System.map")
    if stops:
        stop = g.add_mutually_exclusive_group()
        stop.add_argument("--at", metavar="SYMBOL|ADDRESS|idle|fault",
                          help="stop at a hardware breakpoint here; idle: the kernel parked (hlt with "
                               "RFLAGS.IF=1, a jmp . self-loop, or halted for good), found by polling, "
                               "without symbols, the default for a kernel without lab_ready; fault: the "
                               "first exception the kernel's own IDT delivers, its frame decoded")
        stop.add_argument("--after", type=seconds, metavar="SECONDS", help="stop after running this long")
        stop.add_argument("--when", metavar="REGEX", help="stop when the serial console matches")


def json_option(sp, help: str = "print the result as JSON") -> None:
    sp.add_argument("--json", action="store_true", help=help)


def log_dir_option(sp, help: str = "keep serial/QEMU/gdb logs in DIR") -> None:
    sp.add_argument("--log-dir", metavar="DIR", help=help)


def result_options(sp, *, log_help: str = "keep serial/QEMU/gdb logs in DIR") -> None:
    """What every command that produces a result takes: --json, --html and --log-dir."""
    json_option(sp)
    sp.add_argument("--html", metavar="PATH", help="also write the result as a self-contained HTML "
                    "report with pictures (the same as `lab report` of the --json output)")
    log_dir_option(sp, log_help)


def verbose_option(sp) -> None:
    """-v, accepted before and after the command (SUPPRESS: the subcommand's default does not
    overwrite a -v given before it)."""
    sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                    help="print progress (pids, run dir) on stderr")


def ready_timeout_option(sp, help: str = "bound on the wait for the kernel's ready marker") -> None:
    sp.add_argument("--ready-timeout", type=seconds, metavar="S",
                    help=f"{help} (default: lab.toml's, else {DEFAULT_READY_TIMEOUT:g}; "
                         f"{DEFAULT_KVM_READY_TIMEOUT:g} on KVM)")


def timeout_option(sp, default: float, help: str, *aliases: str) -> None:
    """The command's own bound on its waits: always --timeout (the one spelling; `aliases` are
    older names still accepted). The boot's bound is --ready-timeout."""
    sp.add_argument("--timeout", *aliases, dest="timeout", type=seconds, default=default, metavar="S",
                    help=f"{help} (default: %(default)s)")


def shard(text: str) -> tuple[int, int]:
    """--shard K/N: 1 <= K <= N."""
    from lab.runs.matrix import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def matrix_options(sp) -> None:
    """What `lab matrix` runs (every backend, or one shard of them) or joins (--merge)."""
    sp.add_argument("--kernel", metavar="PATH", help="the lab kernel to run (default: build it)")
    sp.add_argument("--release", action="store_true", help="build the release profile")
    sp.add_argument("--fresh", action="store_true", help="boot every VM (no saved ready states)")
    part = sp.add_mutually_exclusive_group()
    part.add_argument("--shard", type=shard, metavar="K/N",
                      help="run shard K of N: every N-th backend from the K-th (for a CI job matrix)")
    part.add_argument("--merge", nargs="+", metavar="JSON", type=Path,
                      help="join shards' `lab matrix --json` files into the one table (runs nothing)")
    sp.add_argument("--no-kvm", action="store_true", help="leave KVM out even where /dev/kvm is usable")
    out = sp.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the matrix as JSON (what --merge reads)")
    out.add_argument("--markdown", action="store_true", help="print the exceptions table and the "
                     "recorded deviations as Markdown (docs/reference/matrix.md)")
    sp.add_argument("--html", metavar="PATH", help="also write the matrix as a self-contained HTML "
                    "report (the same as `lab report` of the --json output)")
    log_dir_option(sp, "keep each backend's serial/QEMU/gdb logs in DIR/<backend> (e.g. DIR/tcg-10.0.2)")
    ready_timeout_option(sp)


def gdb_options(sp) -> None:
    sp.add_argument("-ex", action="append", metavar="COMMAND", help="gdb command to run (repeatable)")
    sp.add_argument("--batch", action="store_true", help="run the -ex commands and exit (gdb -batch)")


# -- the parser ---------------------------------------------------------------------------------

#: `lab --help` lists the commands by what they are for; every command is in exactly one group.
GROUPS = (
    ("look at a stopped kernel", ("inspect", "pcpu", "frame", "translate")),
    ("make the CPU act, and judge it", ("fire", "probe", "timer", "tasks", "ring3", "claims")),
    ("step through it yourself", ("boot", "debug", "attach")),
    ("compare backends", ("matrix", "qemus", "profiles")),
    ("find the commit that changed it", ("bisect",)),
    ("pictures", ("report",)), ("catalogs", ("scenarios", "probes")),
    ("set-up", ("build",)),
)


def _grouped(helps: dict[str, str], width: int) -> str:
    """The commands under their groups, each with its one-line help, wrapped to `width`."""
    import textwrap

    grouped = [c for _, names in GROUPS for c in names]
    assert sorted(grouped) == sorted(helps), f"lab --help groups: {sorted(set(grouped) ^ set(helps))}"
    out = []
    for title, names in GROUPS:
        out.append(f"{title}:")
        for name in names:
            out += textwrap.wrap(helps[name], width, initial_indent=f"  {name:<11} ",
                                 subsequent_indent=" " * 14, break_on_hyphens=False)
    return "\n".join(out)


class _TopHelp(argparse.RawDescriptionHelpFormatter):
    """The top-level help: the grouped command list (the epilog) kept as laid out."""


def parser(commands) -> LabParser:
    """The `lab` parser; `commands` maps each command name to its function (cli/commands.py)."""
    p = LabParser(prog="lab", description="x86-64 kernel test lab: `lab COMMAND --help` for one "
                  "command", formatter_class=_TopHelp)
    p.add_argument("-v", "--verbose", action="store_true", help="print progress (pids, run dir) on stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of the commands below")
    helps: dict[str, str] = {}

    def add(name, help):
        helps[name] = help
        sp = sub.add_parser(name, description=help)
        sp.set_defaults(func=commands[name])
        verbose_option(sp)
        return sp

    def experiment(name, help):
        """A command that boots the lab kernel, observes and checks: VM options, --json,
        --html, --log-dir, --ready-timeout."""
        sp = add(name, help)
        vm_options(sp)
        result_options(sp)
        ready_timeout_option(sp)
        return sp

    def listing(name, help):
        sp = add(name, help)
        json_option(sp, "print the list as JSON")
        return sp

    sp = add("build", "build the lab kernel (cargo, build-std); --boot bios adds the disk image")
    sp.add_argument("--release", action="store_true")
    sp.add_argument("--boot", choices=BOOT_PATHS, default="multiboot",
                    help="bios: also make the BIOS disk image with cargo bootimage (default: %(default)s)")
    listing("profiles", "list the QEMU profiles")
    sp = add("qemus", "list the QEMUs the lab can run, with their versions (lab/setup-qemu.sh adds 10.0)")
    json_option(sp)

    sp = add("inspect", "boot any x86-64 kernel, stop, decode and check IDT, GDT and TSS")
    vm_options(sp)
    foreign_options(sp)
    result_options(sp)
    ready_timeout_option(sp, "bound on the wait for the stop (ready point, idle, --at, --when)")
    sp.add_argument("--vectors", type=vectors, metavar="LIST",
                    help="the IDT rows to print: vectors and ranges, e.g. 0-31,0x80 (default: every "
                         "present gate, identical neighbours grouped)")
    base = sp.add_mutually_exclusive_group()
    base.add_argument("--baseline", metavar="FILE",
                      help="compare the IDT, GDT, TSS stacks and IST map with this reviewed baseline "
                           "file: any difference is the FAIL baseline.drift, its evidence the diff "
                           "(docs/baselines.md)")
    base.add_argument("--update-baseline", metavar="FILE",
                      help="write the IDT, GDT, TSS stacks and IST map to this baseline file "
                           "(JSON, one line per entry, addresses by symbol), the state to review")

    sp = add("fire", "raise exceptions and check each frame against the manual: in the lab "
             "kernel through its harness, in any other kernel by writing one instruction at a stop")
    vm_options(sp)
    foreign_options(sp)
    sp.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                    help="scenario name(s) from the catalog, or 'all' (see `lab scenarios`); with "
                         "--agnostic: de bp nmi ud gp pf, or 'all'")
    sp.add_argument("--agnostic", action="store_true",
                    help="kernel-agnostic firing: one instruction written at the stop, in any kernel")
    sp.add_argument("--style", default="x86-interrupt",
                    help="handler style: x86-interrupt, stub, both, or tutorial (seed 002's stub; error-code "
                         "vectors only) (default: %(default)s)")
    sp.add_argument("--vector", type=vector, help="vector for the 'int' scenario (default 0x80)")
    sp.add_argument("--observer", choices=("guest", "gdb"),
                    help="who records each exception: guest (the kernel's own records, no breakpoint "
                         "or stop; judged on KVM too) or gdb (breakpoints at the handler; sentinels "
                         "in the registers; on TCG also compared with the kernel's records). "
                         "Default: gdb with --html or --panels (the pictures show what only its "
                         "stops see), else guest where the kernel has the observer, else gdb")
    sp.add_argument("--panels", dest="verbose_panels", action="store_true",
                    help="print each scenario's stack and checks panels (default: one line per "
                         "scenario, the panels of a failure)")
    result_options(sp)
    ready_timeout_option(sp)
    timeout_option(sp, 5.0, "bound on the wait for the handler and the resume point", "--handler-timeout")
    sp.add_argument("--no-inject", action="store_true",
                    help="nmi: do not inject the NMI (shows a handler that is never reached; boot CPU only)")
    sp.add_argument("--cpu", type=int, default=0, metavar="K",
                    help="run the scenarios on CPU K (an AP the lab kernel started: needs --cpus > K; "
                         "nmi: the boot CPU sends CPU K alone an NMI IPI; default: 0, the boot CPU)")
    listing("scenarios", "list the exception scenarios")

    sp = add("probe", "double fault, its control, and triple-fault probes, each in a fresh VM")
    vm_options(sp)
    sp.add_argument("probes", nargs="+", metavar="PROBE", help="probe name(s), or 'all' (see `lab probes`)")
    result_options(sp, log_help="keep each probe's logs in DIR/<probe>")
    ready_timeout_option(sp)
    sp.add_argument("--record", nargs="?", const="recordings", metavar="DIR",
                    help="record each probe's run with QEMU's record/replay in DIR/<probe> (default DIR: "
                         "./recordings) for `lab debug --replay DIR/<probe>`; TCG, no disk")
    timeout_option(sp, 10.0, "bound on each wait (reset, handler, report)")
    listing("probes", "list the fatal-path probes")

    sp = experiment("timer", "PIT tick rates (guest TSC and host clock) and the timer pitfalls")
    sp.add_argument("--rate", type=positive_int, action="append", metavar="HZ",
                    help="rate(s) to measure (default: 100 and 250; at 1000 Hz TCG can lose ticks under host load)")
    sp.add_argument("--window", type=positive_int, default=500, metavar="MS", help="measurement window (default: %(default)s)")
    sp.add_argument("--cpu", type=int, action="append", metavar="K",
                    help="measure application processor K's own local APIC timer instead (repeatable; "
                         "needs --cpus > K): the named CPUs run their timers at once, at different rates")
    sp = experiment("tasks", "tasks from kernel memory, their saved switch frames, a traced switch; "
                    "with --cpu K, a context switch on CPU K seen from every CPU")
    sp.add_argument("--cpu", type=int, default=0, metavar="K",
                    help="switch tasks on CPU K (an AP the lab kernel started: needs --cpus > K) and show "
                         "every CPU's TSS.RSP0, per-CPU current and GS base before and after "
                         "(default: 0, the boot CPU's tasks)")
    experiment("ring3", "syscall entry with swapgs, an interrupt in ring 3, ring-3 faults, syscall rate")
    experiment("pcpu", "decode the per-CPU area through GS_BASE (layout checked against DWARF)")
    sp = experiment("frame", "stop at a handler and decode the frame the CPU pushed")
    sp.add_argument("--at", required=True, metavar="SYMBOL|ADDRESS", help="where to stop (a handler's entry)")
    sp.add_argument("--shell", required=True, metavar="LINE", help="kernel shell line that gets there, e.g. 'user run kread'")
    timeout_option(sp, 10.0, "bound on the wait for the stop")

    sp = add("matrix", "the catalog, the probes and the claims on every backend (each QEMU with TCG, "
             "KVM), in parallel: one table of verdicts, deviations with their upstream cause")
    matrix_options(sp)

    sp = add("claims", "tutorial-style statements about x86-64, each decided by measurement")
    vm_options(sp)
    result_options(sp, log_help="keep each experiment's logs in DIR/<experiment>")
    ready_timeout_option(sp)
    sp.add_argument("--all", dest="all_claims", action="store_true",
                    help="print every claim with its evidence (default: a summary and the refuted "
                         "or conditional ones)")
    sp.add_argument("--seed", metavar="FILE",
                    help="only the claims of one tutorial text of shared/seeds/ (its file name or number, e.g. 002)")
    sp.add_argument("--markdown", action="store_true", help="print one Markdown table per text (docs/reference/claims.md)")

    bisect_options(add("bisect", BISECT_HELP))
    sp = add("report", "write runs' JSON (what --json prints) as one self-contained HTML report")
    sp.add_argument("runs", nargs="+", metavar="RUN.json", help="a JSON file a command printed with --json")
    sp.add_argument("-o", "--output", required=True, metavar="PATH", help="the HTML file to write")
    sp.add_argument("--title", default="lab report", help="the report's title (default: %(default)s)")

    sp = add("debug", "boot and open gdb with the lab's commands (lab-idt, lab-frame, lab-fire, ...)")
    vm_options(sp, restore=False)
    foreign_options(sp, stops=False)
    sp.add_argument("--at", metavar="SYMBOL|ADDRESS",
                    help="stop here first (default: lab_ready if the kernel has it, else the reset vector)")
    sp.add_argument("--replay", metavar="RUN", help="replay a recording (`lab probe NAME --record`) under gdb, "
                    "positioned at its end, with reverse-stepi/reverse-continue, lab-chain and lab-goto")
    gdb_options(sp)

    sp = add("attach", "attach gdb with the lab's commands to a running `lab boot` VM")
    sp.add_argument("socket", metavar="GDB_SOCKET", type=Path, help="the gdb socket `lab boot` printed")
    sp.add_argument("--kernel", metavar="PATH", help="kernel ELF for symbols (default: the lab kernel's build, if any)")
    gdb_options(sp)

    sp = experiment("translate", "walk the live 4-level page tables for addresses or symbols")
    sp.add_argument("addresses", nargs="+", metavar="ADDRESS", help="virtual address (0x...) or symbol")

    sp = add("boot", "boot with the serial console on this terminal (Ctrl-A X quits)")
    vm_options(sp, restore=False)
    p.epilog = _grouped(helps, 78)
    return p
