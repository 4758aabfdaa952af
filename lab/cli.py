"""`lab`: the command-line front end. Thin: parses arguments, calls the library, prints.

Exit status: 0 all checks pass; 1 a check failed; 2 bad input (one line, no traceback);
3 the lab itself failed (the message names the command, its status and the logs);
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from lab.errors import LabError


class Terminated(BaseException):
    """SIGTERM, turned into an exception so every `finally` reaps its processes."""


def _on_sigterm(signum, frame):
    raise Terminated()


#: Commands that drive the lab kernel's shell and symbols (inspect works on any kernel).
LAB_KERNEL_COMMANDS = {"fire", "probe", "timer", "tasks", "ring3", "pcpu", "frame", "translate", "claims"}


def _kernel(args) -> Path | None:
    if getattr(args, "image", None) and not args.kernel:
        return None  # a disk image the lab did not build; symbols, if any, from --symbols
    if args.kernel:
        path = Path(args.kernel)
        if args.command in LAB_KERNEL_COMMANDS and not getattr(args, "agnostic", False):
            from lab.machine.session import require_lab_kernel

            require_lab_kernel(path, args.command)
        return path
    from lab.build import build_kernel

    return build_kernel(release=args.release, quiet=True, boot=_profile(args).boot)


def _foreign(args) -> dict:
    """Session options for a kernel the lab did not build: --append, --image, --symbols."""
    return {"append": args.append, "image": Path(args.image) if args.image else None,
            "symbols": Path(args.symbols) if args.symbols else None}


def _stop(args):
    from lab.machine.session import Stop

    return Stop(at=args.at, after=args.after, when=args.when)


def _profile(args):
    """The --profile, with its boot path replaced by --boot when given."""
    from lab import profiles

    return profiles.load(args.profile).with_boot(getattr(args, "boot", None))


def _console():
    from rich.console import Console

    # Piped output (CI logs) gets a fixed wide layout instead of rich's 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=160)


def _observe(args, observe, **options):
    """Boots the kernel under the chosen profile, stops at ready, runs `observe(session)`."""
    from lab.machine.session import Session

    profile = _profile(args)
    kernel = _kernel(args)
    log_dir = Path(args.log_dir) if getattr(args, "log_dir", None) else None
    with Session(kernel, profile, ready_timeout=args.ready_timeout, log_dir=log_dir) as s:
        s.boot_to_ready()
        return profile, observe(s, **options)


def _emit(args, payload: dict, show) -> None:
    """--json prints `payload`; otherwise `show(console)` prints the tables."""
    if args.json:
        json.dump(payload, sys.stdout, indent=2, default=str)
        print()
    else:
        show(_console())


def _status(checks, tolerated=()) -> int:
    from lab.checks import Verdict

    return 1 if any(c.verdict is Verdict.FAIL and c.id not in tolerated for c in checks) else 0


def cmd_build(args) -> int:
    from lab.build import build_kernel

    print(build_kernel(release=args.release, boot=args.boot, force=True))
    return 0


def cmd_probe(args) -> int:
    from lab.checks import Verdict
    from lab.checks.probe import run
    from lab.probe import run_probe
    from lab.scenarios import probes

    profile = _profile(args)
    selected = list(probes.CATALOG) if args.probes == ["all"] else [probes.get(n) for n in args.probes]
    if profile.accel == "kvm":
        for p in [p for p in selected if p.kvm_unsupported]:
            print(f"lab: skipping {p.name} on KVM: {p.kvm_unsupported}", file=sys.stderr)
        selected = [p for p in selected if not p.kvm_unsupported]
    kernel = _kernel(args)
    results = []
    for i, p in enumerate(selected):
        log_dir = Path(args.log_dir) / p.name if args.log_dir else None
        obs = run_probe(kernel, profile, p, log_dir=log_dir, timeout=args.timeout)
        checks = run(obs, p)
        v = Verdict.FAIL if any(c.verdict is Verdict.FAIL for c in checks) else Verdict.PASS
        results.append((p, obs, checks, v))
    if args.json:
        json.dump([{"probe": p.name, "expected": p.expected, "expected_chain": list(p.chain),
                    "verdict": v.value, "checks": [c.to_json() for c in checks],
                    "observation": obs.to_json()} for p, obs, checks, v in results], sys.stdout, indent=2)
        print()
    else:
        from rich.console import Console

        from lab.render import print_probes

        print_probes(results, Console() if sys.stdout.isatty() else Console(width=160))
    return 1 if any(v is Verdict.FAIL for *_, v in results) else 0


def cmd_timer(args) -> int:
    from lab.checks.timer import run
    from lab.render import checks_table
    from lab.timer import observe

    profile, obs = _observe(args, observe, rates=tuple(args.rate or (100, 250)), window_ms=args.window)
    checks = run(obs)
    _emit(args, {"observation": obs.to_json(), "checks": [c.to_json() for c in checks]},
          lambda console: console.print(checks_table(checks, title=f"lab timer ({profile.name})")))
    return _status(checks)


def cmd_tasks(args) -> int:
    from lab.checks.tasks import run
    from lab.render import checks_table, print_tasks
    from lab.tasks import observe

    _, obs = _observe(args, observe)
    checks = run(obs)

    def show(console):
        print_tasks(obs, console)
        console.print(checks_table(checks, title="checks"))
    _emit(args, {"observation": obs.to_json(), "checks": [c.to_json() for c in checks]}, show)
    return _status(checks)


def cmd_ring3(args) -> int:
    from lab.checks.ring3 import run
    from lab.render import checks_table
    from lab.ring3 import observe

    profile, obs = _observe(args, observe)
    checks, outcomes = run(obs)

    def show(console):
        console.print(checks_table(checks, title=f"lab ring3: syscall path, ring-3 interrupt and faults ({profile.name})"))
        console.print("user faults: " + ", ".join(f"{p} {o}" for p, o in outcomes.items()) +
                      f"; syscall check sequence {obs.seconds['syscall_sequence'] * 1000:.0f} ms")
    _emit(args, {"observation": obs.to_json(), "checks": [c.to_json() for c in checks], "outcomes": outcomes}, show)
    # A recorded deviation (e.g. TCG's missing #AC) is reported, not failed.
    return _status(checks, tolerated={f"ring3.fault-{p}" for p, o in outcomes.items() if o == "DEVIATION"})


def cmd_pcpu(args) -> int:
    from lab.checks import Check, Verdict, verdict
    from lab.machine.session import Session
    from lab.pcpu import CACHE_LINE, HOT_FIELDS, PERCPU
    from lab.tasks import dwarf_layout

    profile = _profile(args)
    kernel = _kernel(args)
    with Session(kernel, profile, ready_timeout=args.ready_timeout) as s:
        s.boot_to_ready()
        gs = s.gdb.registers()["gs_base"]
        fields = PERCPU.decode(s.gdb.read_memory(gs, PERCPU.size))
        sym = s.symbols.lookup("PERCPU")
        dwarf = dwarf_layout(kernel, "PerCpu")
    declared = {f.name: f.offset for f in PERCPU.fields}
    checks = [
        Check("pcpu.gs-base", "pcpu", "in kernel mode GS_BASE points at PERCPU",
              verdict(sym is not None and gs == sym.address and fields["self_ptr"] == gs),
              (f"GS_BASE {gs:#x}; PERCPU {sym.address if sym else 0:#x}; self_ptr {fields['self_ptr']:#x}",)),
        Check("pcpu.cache-line", "pcpu", "the hot fields (current, kernel_rsp, user_rsp) share one 64-byte line",
              verdict(gs % CACHE_LINE == 0 and all(PERCPU.offset(f) + 8 <= CACHE_LINE for f in HOT_FIELDS)),
              (f"PERCPU at {gs:#x} ({gs % CACHE_LINE} mod 64); offsets " +
               ", ".join(f"{f}={PERCPU.offset(f):#x}" for f in HOT_FIELDS),)),
        Check("pcpu.layout", "pcpu", "the declared PerCpu layout matches the DWARF",
              Verdict.SKIP if dwarf is None else verdict(dwarf == (PERCPU.size, declared)),
              (f"declared {PERCPU.size} bytes {declared}; DWARF {dwarf}",)),
    ]
    if args.json:
        json.dump({"address": gs, "fields": fields, "checks": [c.to_json() for c in checks]}, sys.stdout, indent=2)
        print()
    else:
        from rich.console import Console

        from lab.render import checks_table, pcpu_table

        console = Console() if sys.stdout.isatty() else Console(width=160)
        console.print(pcpu_table(sym.address if sym else gs, fields, gs))
        console.print(checks_table(checks))
    return 1 if any(c.verdict is Verdict.FAIL for c in checks) else 0


def cmd_frame(args) -> int:
    from lab.frame import decode_at_stop
    from lab.machine.session import Session

    profile = _profile(args)
    kernel = _kernel(args)
    with Session(kernel, profile, ready_timeout=args.ready_timeout) as s:
        s.boot_to_ready()
        at = _address(args.at, s.symbols)
        s.gdb.hbreak(f"*{at:#x}")
        s.serial.send_line(args.shell)
        s.gdb.cont()
        s.gdb.wait_stopped(args.timeout, f"the CPU to reach {args.at}")
        frame = decode_at_stop(s.gdb, s.qemu.hmp, s.symbols)
    if args.json:
        json.dump(frame, sys.stdout, indent=2)
        print()
    else:
        from rich.console import Console

        from lab.render import frame_table

        console = Console() if sys.stdout.isatty() else Console(width=160)
        console.print(frame_table(frame))
    return 0


def cmd_claims(args) -> int:
    from lab.claims import REFUTED, UNMEASURED, collect, evaluate

    profile = _profile(args)
    kernel = _kernel(args)
    results = evaluate(collect(kernel, profile))
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        style = {"holds": "green", "holds only under a condition": "yellow", REFUTED: "bold red",
                 UNMEASURED: "dim"}
        console = Console() if sys.stdout.isatty() else Console(width=170)
        t = Table(title=f"lab claims: measured on {profile.name}", title_justify="left", show_lines=True)
        for col in ("claim", "verdict", "evidence"):
            t.add_column(col, overflow="fold")
        for r in results:
            t.add_row(f"[bold]{r['id']}[/] ({r['topic']})\n{escape(r['statement'])}",
                      f"[{style[r['verdict']]}]{r['verdict']}[/]", escape("\n".join(r["evidence"])))
        console.print(t)
        counts = {v: sum(1 for r in results if r["verdict"] == v) for v in style}
        console.print(", ".join(f"{n} {v}" for v, n in counts.items()))
    return 1 if any(r["verdict"] == UNMEASURED for r in results) else 0


def _gdb_args(args) -> list[str]:
    out = []
    for e in args.ex or []:
        out += ["-ex", e]
    return out + (["-batch"] if args.batch else [])


def cmd_debug(args) -> int:
    from lab.debug import debug

    profile = _profile(args)
    return debug(_kernel(args), profile, args.at, _gdb_args(args), **_foreign(args))


def cmd_attach(args) -> int:
    from lab.debug import attach

    return attach(Path(args.socket), Path(args.kernel) if args.kernel else None, _gdb_args(args))


def cmd_translate(args) -> int:
    from lab.machine.session import Session
    from lab.translate import translate

    profile = _profile(args)
    kernel = _kernel(args)
    with Session(kernel, profile, ready_timeout=args.ready_timeout) as s:
        s.boot_to_ready()
        addrs = [_address(a, s.symbols) for a in args.addresses]
        results = [translate(s, va) for va in addrs]
    if args.json:
        json.dump([{"va": t.va, "cr3": t.cr3, "physical": t.physical, "page_size": t.page_size,
                    "fault": t.fault, "steps": [{"level": st.level, "index": st.index,
                                                 "entry_address": st.entry_address, "entry": st.entry,
                                                 "flags": st.flags} for st in t.steps]}
                   for t in results], sys.stdout, indent=2)
        print()
        return 0
    from rich.console import Console

    from lab.render import print_translation

    console = Console() if sys.stdout.isatty() else Console(width=160)
    for t in results:
        print_translation(t, console)
    return 0


def _address(text: str, symbols) -> int:
    """A number (0x... or decimal) or a symbol name."""
    from lab.errors import UserError

    address = symbols.address_of(text)
    if address is None:
        raise UserError(f"{text!r} is neither an address nor a symbol of the kernel")
    return address


def cmd_probes(args) -> int:
    from lab.scenarios.probes import CATALOG

    for p in CATALOG:
        print(f"{p.name:18} {p.expected:22} {p.summary}")
    return 0


def cmd_scenarios(args) -> int:
    from lab.scenarios.exceptions import CATALOG

    for s in CATALOG:
        extra = f"  [TCG: {s.tcg.note}]" if s.tcg else ""
        print(f"{s.name:16} {s.vector:>3}  {s.summary}{extra}")
    return 0


def cmd_profiles(args) -> int:
    from lab import profiles

    for name in profiles.available():
        p = profiles.load(name)
        print(f"{name:8} {p.description}")
    return 0


def cmd_inspect(args) -> int:
    from lab.inspect import inspect

    profile = _profile(args)
    kernel = _kernel(args)
    report = inspect(kernel, profile, log_dir=Path(args.log_dir) if args.log_dir else None,
                     ready_timeout=args.ready_timeout, stop=_stop(args), **_foreign(args))
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        from rich.console import Console

        from lab.render import print_report

        # Piped output (CI logs) gets a fixed wide layout instead of rich's 80 columns.
        print_report(report, Console() if sys.stdout.isatty() else Console(width=160))
    return 1 if report.failed else 0


def cmd_fire_inject(args) -> int:
    """Kernel-agnostic firing (lab/inject.py) at any stop of any x86-64 kernel."""
    from lab.inject import inject_all, selected
    from lab.machine.session import Session
    from lab.target import parse_info_registers, require_long_mode

    injections = selected(args.scenarios)
    profile = _profile(args)
    kernel = _kernel(args)
    stop = _stop(args)  # checked before anything boots
    with Session(kernel, profile, ready_timeout=args.ready_timeout, **_foreign(args),
                 log_dir=Path(args.log_dir) if args.log_dir else None,
                 restore=None if stop.is_ready else False) as s:
        where = s.boot_to(stop)
        require_long_mode(parse_info_registers(s.gdb.monitor("info registers")), where)
        results = inject_all(s, injections, timeout=args.handler_timeout)
    if args.json:
        json.dump({"stop": where, "results": [r.to_json() for r in results]}, sys.stdout, indent=2)
        print()
    else:
        from lab.render import print_injections

        print_injections(results, _console(), where)
    return 1 if any(r.outcome == "FAIL" for r in results) else 0


def cmd_fire(args) -> int:
    from lab.fire_report import fire, selected
    from lab.scenarios.exceptions import STYLES, check_style

    if args.agnostic:
        return cmd_fire_inject(args)
    if args.image or args.append or args.symbols or args.at or args.after or args.when:
        from lab.errors import UserError
        raise UserError("--image, --append, --symbols and the stop options fire without the lab "
                        "kernel's harness: add --agnostic")

    profile = _profile(args)
    styles = list(STYLES) if args.style == "both" else [check_style(args.style)]
    plan = selected(args.scenarios, styles)
    if args.vector is not None and any(s.name != "int" for s, _ in plan):
        from lab.errors import UserError
        raise UserError("--vector applies to the 'int' scenario only")
    kernel = _kernel(args)
    results, symbols = fire(kernel, profile, plan, vector=args.vector,
                            log_dir=Path(args.log_dir) if args.log_dir else None,
                            ready_timeout=args.ready_timeout, inject_nmi=not args.no_inject,
                            handler_timeout=args.handler_timeout)
    if args.json:
        json.dump([r.to_json(symbols) for r in results], sys.stdout, indent=2)
        print()
    else:
        from rich.console import Console

        from lab.render import print_fire, print_fire_summary

        console = Console() if sys.stdout.isatty() else Console(width=160)
        for r in results:
            if len(results) == 1 or args.verbose_panels or r.outcome == "FAIL":
                print_fire(r, symbols, console)
        if len(results) > 1:
            print_fire_summary(results, console)
    return 1 if any(r.outcome == "FAIL" for r in results) else 0


def cmd_boot(args) -> int:
    from lab.boot import boot_interactive

    return boot_interactive(_kernel(args), _profile(args))


def parser() -> argparse.ArgumentParser:
    from lab.bootpath import BOOT_PATHS
    from lab.profiles import DEFAULT_PROFILE

    p = argparse.ArgumentParser(prog="lab", description="x86-64 kernel test lab")
    p.add_argument("-v", "--verbose", action="store_true", help="print progress (pids, run dir) on stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help):
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    def experiment(name, func, help):
        """A command that boots the kernel and reports: kernel/profile, --json, --ready-timeout."""
        sp = add(name, func, help)
        kernel_opts(sp)
        sp.add_argument("--json", action="store_true", help="print the result as JSON")
        sp.add_argument("--ready-timeout", type=float, default=10.0, metavar="S",
                        help="bound on the wait for the kernel's ready marker (default: %(default)s)")
        return sp

    def kernel_opts(sp, restore=True):
        if restore:
            sp.add_argument("--fresh", action="store_true",
                            help="boot the kernel; by default a VM stopping at lab_ready is restored "
                                 "from the saved ready state of this kernel, profile and command line "
                                 "(made by one boot on first use; lab/machine/snapshot.py)")
        sp.add_argument("--kernel", metavar="PATH", help="kernel to boot: an ELF (Multiboot) or a Linux bzImage (default: build the lab kernel)")
        sp.add_argument("--release", action="store_true", help="build the release profile")
        sp.add_argument("--profile", default=DEFAULT_PROFILE, help="QEMU profile from qemu-configs/ (default: %(default)s)")
        boot_opt(sp, "how QEMU loads the kernel (default: the profile's, multiboot)")

    def foreign_opts(sp, stops=True):
        """Kernels the lab did not build: what to boot, with which symbols, and when to stop."""
        g = sp.add_argument_group("other kernels")
        g.add_argument("--image", metavar="PATH", help="boot this raw disk image through the BIOS "
                       "(--kernel, if given, only supplies symbols)")
        g.add_argument("--append", metavar="CMDLINE", help="kernel command line (-append; fw_cfg "
                       "opt/lab/cmdline for disk images)")
        g.add_argument("--symbols", metavar="PATH", help="symbols from this ELF or System.map")
        if not stops:
            return
        stop = g.add_mutually_exclusive_group()
        stop.add_argument("--at", metavar="SYMBOL|ADDRESS", help="stop at a hardware breakpoint here")
        stop.add_argument("--after", type=float, metavar="SECONDS", help="stop after running this long")
        stop.add_argument("--when", metavar="REGEX", help="stop when the serial console matches")

    def boot_opt(sp, help):
        sp.add_argument("--boot", choices=BOOT_PATHS, help=help)

    sp = add("build", cmd_build, "build the lab kernel (cargo, build-std); --boot bios adds the disk image")
    sp.add_argument("--release", action="store_true")
    sp.add_argument("--boot", choices=BOOT_PATHS, default="multiboot",
                    help="bios: also make the BIOS disk image with cargo bootimage (default: %(default)s)")
    add("profiles", cmd_profiles, "list the QEMU profiles")
    sp = add("inspect", cmd_inspect, "boot any x86-64 kernel, stop, decode and check IDT, GDT and TSS")
    kernel_opts(sp)
    foreign_opts(sp)
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    sp.add_argument("--log-dir", metavar="DIR", help="keep serial/QEMU/gdb logs in DIR")
    sp.add_argument("--ready-timeout", type=float, default=10.0, metavar="S",
                    help="bound on the wait for the stop (ready marker, --at, --when) (default: %(default)s)")
    sp = add("fire", cmd_fire, "raise exceptions and check each frame against the manual: in the lab "
             "kernel through its harness, in any other kernel by writing one instruction at a stop")
    kernel_opts(sp)
    foreign_opts(sp)
    sp.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                    help="scenario name(s) from the catalog, or 'all' (see `lab scenarios`); with "
                         "--agnostic: de bp nmi ud gp pf, or 'all'")
    sp.add_argument("--agnostic", action="store_true",
                    help="kernel-agnostic firing: one instruction written at the stop, in any kernel")
    sp.add_argument("--style", default="x86-interrupt",
                    help="handler style: x86-interrupt, stub, or both (default: %(default)s)")
    sp.add_argument("--vector", type=lambda v: int(v, 0), help="vector for the 'int' scenario (default 0x80)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--panels", dest="verbose_panels", action="store_true",
                    help="with several scenarios, print every panel, not just the summary")
    sp.add_argument("--log-dir", metavar="DIR")
    sp.add_argument("--ready-timeout", type=float, default=10.0, metavar="S")
    sp.add_argument("--handler-timeout", type=float, default=5.0, metavar="S",
                    help="bound on the wait for the handler and the resume point (default: %(default)s)")
    sp.add_argument("--no-inject", action="store_true",
                    help="nmi: do not inject the NMI (shows a handler that is never reached)")
    add("scenarios", cmd_scenarios, "list the exception scenarios")
    sp = add("probe", cmd_probe, "double fault, its control, and triple-fault probes, each in a fresh VM")
    kernel_opts(sp)
    sp.add_argument("probes", nargs="+", metavar="PROBE", help="probe name(s), or 'all' (see `lab probes`)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--log-dir", metavar="DIR", help="keep each probe's logs in DIR/<probe>")
    sp.add_argument("--timeout", type=float, default=10.0, metavar="S",
                    help="bound on each wait (reset, handler, report) (default: %(default)s)")
    add("probes", cmd_probes, "list the fatal-path probes")
    sp = experiment("timer", cmd_timer, "PIT tick rates (guest TSC and host clock) and the timer pitfalls")
    sp.add_argument("--rate", type=int, action="append", metavar="HZ",
                    help="rate(s) to measure (default: 100 and 250; at 1000 Hz TCG can lose ticks under host load)")
    sp.add_argument("--window", type=int, default=500, metavar="MS", help="measurement window (default: %(default)s)")
    sp.add_argument("--log-dir", metavar="DIR")
    experiment("tasks", cmd_tasks, "tasks from kernel memory, their saved switch frames, a traced switch")
    experiment("ring3", cmd_ring3, "syscall entry with swapgs, an interrupt in ring 3, ring-3 faults, syscall rate")
    experiment("pcpu", cmd_pcpu, "decode the per-CPU area through GS_BASE (layout checked against DWARF)")
    sp = experiment("frame", cmd_frame, "stop at a handler and decode the frame the CPU pushed")
    sp.add_argument("--at", required=True, metavar="SYMBOL|ADDRESS", help="where to stop (a handler's entry)")
    sp.add_argument("--shell", required=True, metavar="LINE", help="kernel shell line that gets there, e.g. 'user run kread'")
    sp.add_argument("--timeout", type=float, default=10.0, metavar="S")
    sp = add("claims", cmd_claims, "tutorial-style statements about x86-64, each decided by measurement")
    kernel_opts(sp)
    sp.add_argument("--json", action="store_true")
    sp = add("debug", cmd_debug, "boot and open gdb with the lab's commands (lab-idt, lab-frame, lab-fire, ...)")
    kernel_opts(sp, restore=False)
    foreign_opts(sp, stops=False)
    sp.add_argument("--at", metavar="SYMBOL|ADDRESS",
                    help="stop here first (default: lab_ready if the kernel has it, else the reset vector)")
    sp.add_argument("-ex", action="append", metavar="COMMAND", help="gdb command to run (repeatable)")
    sp.add_argument("--batch", action="store_true", help="run the -ex commands and exit (gdb -batch)")
    sp = add("attach", cmd_attach, "attach gdb with the lab's commands to a running `lab boot` VM")
    sp.add_argument("socket", metavar="GDB_SOCKET", help="the gdb socket `lab boot` printed")
    sp.add_argument("--kernel", metavar="PATH", help="kernel ELF for symbols (default: none)")
    sp.add_argument("-ex", action="append", metavar="COMMAND")
    sp.add_argument("--batch", action="store_true")
    sp = add("translate", cmd_translate, "walk the live 4-level page tables for addresses or symbols")
    kernel_opts(sp)
    sp.add_argument("addresses", nargs="+", metavar="ADDRESS", help="virtual address (0x...) or symbol")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--ready-timeout", type=float, default=10.0, metavar="S")
    sp = add("boot", cmd_boot, "boot with the serial console on this terminal (Ctrl-A X quits)")
    kernel_opts(sp, restore=False)
    return p


def main(argv: list[str] | None = None) -> int:
    import faulthandler

    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C must unwind through the `finally` blocks that reap QEMU and gdb even when SIGINT
    # was ignored by whatever started the lab (pytest-xdist's workers ignore it, and so do
    # their children unless told otherwise).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # `kill -USR1` a lab that seems stuck: every thread's Python stack goes to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    args = parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="lab: %(message)s", stream=sys.stderr)
    early_gdb = hasattr(args, "fresh")  # the commands that start a Session
    if early_gdb:
        from lab.machine import gdb
    try:
        if early_gdb:
            gdb.prestart()  # starts while the command's modules import
            from lab.machine.session import Session

            Session.restore_default = not args.fresh
        return args.func(args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("lab: terminated", file=sys.stderr)
        return 143
    finally:
        if early_gdb:
            gdb.discard_early()


if __name__ == "__main__":
    raise SystemExit(main())
