"""`lab inspect`: boot, stop at ready, read and decode the tables, run the checks."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.checks import baseline as baselines
from lab.checks.base import Check, Verdict, summary as verdict_counts
from lab.checks.view import View, decode
from lab.checks.inspect import run_all
from lab.checks.smp import CpuView, views as cpu_views
from lab.checks.smp_labkernel import percpu_bytes
from lab.checks.waivers import apply_waivers
from lab.present.rows import cpu_rows, gdt_rows, idt_rows, shared_rows, tss_rows
from lab.errors import UserError
from lab.machine.session import Session, Stop
from lab.runs.vm import VmSpec
from lab.host.profiles import Profile
from lab.target.cpu import require_long_mode
from lab.target.cpus import read_machine


@dataclass
class InspectReport:
    kernel: Path
    profile: str
    ready_line: str
    view: View
    checks: list[Check]
    timings: dict[str, float] = field(default_factory=dict)
    #: waivers that matched no FAIL or WARN ({check id: reason}): the caller reports them
    unused_waivers: dict[str, str] = field(default_factory=dict)
    #: every CPU's state and decoded tables, when the machine has more than one (else empty)
    cpus: list[CpuView] = field(default_factory=list)
    #: the architectural state a baseline records (lab/checks/baseline.py state)
    state: dict = field(default_factory=dict)
    #: the guest's screen at the stop, PNG, when the profile gives it a display (--display)
    screen: bytes | None = None

    @property
    def failed(self) -> list[Check]:
        """The FAILs (WARN, INFO, SKIP and WAIVED never fail a run)."""
        return [c for c in self.checks if c.verdict is Verdict.FAIL]

    # -- typed views, for the Python API (lab/api) --------------------------------------------
    @property
    def idt(self) -> list:
        """The IDT's gates (lab/x86/idt.py Gate), indexed by vector."""
        return self.view.idt

    @property
    def gdt(self) -> list:
        """The GDT's descriptors (lab/x86/gdt.py Descriptor), in slot order."""
        return self.view.gdt

    @property
    def tss(self):
        """The TSS that TR selects (lab/x86/tss.py Tss: rsp, ist, iomap_base), or None."""
        return self.view.tss

    @property
    def registers(self):
        """The CPU's `info registers` (lab/target/cpu.py CpuInfo: gdtr, idtr, tr, values)."""
        return self.view.state.cpu

    def check(self, check_id: str) -> Check:
        """The check called `check_id`; KeyError naming the ids there are."""
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(f"no check {check_id!r}; checks: {', '.join(c.id for c in self.checks)}")

    def summary(self) -> str:
        """One line per check that did not pass, with its first piece of evidence."""
        lines = [f"{c.verdict.value} {c.id}: {c.evidence[0] if c.evidence else c.title}"
                 for c in self.checks if c.verdict is not Verdict.PASS]
        return "\n".join(lines) or f"all {len(self.checks)} checks pass"

    def to_json(self) -> dict:
        cpu = self.view.state.cpu
        return {
            "kernel": str(self.kernel),
            "profile": self.profile,
            "ready": self.ready_line,
            "registers": {
                "idtr": {"base": cpu.idtr.base, "limit": cpu.idtr.limit},
                "gdtr": {"base": cpu.gdtr.base, "limit": cpu.gdtr.limit},
                "tr": {"selector": cpu.tr.selector, "base": cpu.tr.base, "limit": cpu.tr.limit},
                "cr0": cpu.values.get("CR0"), "cr3": cpu.values.get("CR3"),
                "cr4": cpu.values.get("CR4"), "efer": cpu.values.get("EFER"),
            },
            "sev": self.view.state.sev,
            "idt": idt_rows(self.view),
            "gdt": gdt_rows(self.view),
            "tss": tss_rows(self.view),
            "checks": [c.to_json() for c in self.checks],
            "summary": verdict_counts(self.checks),
            "unused_waivers": self.unused_waivers,
            "timings": self.timings,
            **({"cpus": cpu_rows(self.cpus), "shared": shared_rows(self.cpus)} if self.cpus else {}),
            **({"screen": {"png_base64": base64.b64encode(self.screen).decode()}} if self.screen else {}),
        }


def checked_report(state, symbols, kernel: Path | None, profile: str, ready_line: str,
                   waivers: dict[str, str] | None = None, cpus=(),
                   baseline: tuple[str, dict] | None = None) -> InspectReport:
    """The tables read from a stopped CPU (`state`, lab/target/cpu.py read_state) and, on an
    SMP machine, every CPU's (`cpus`, lab/target/cpus.py read_cpus), decoded, checked, compared
    with `baseline` ((its file name, its state: read_baseline)) when given, and `waivers`
    ({check id: reason}) applied: what `lab inspect` and the API's VM.inspect report."""
    view = decode(state, symbols)
    per_cpu = cpu_views(list(cpus), symbols)
    arch = baselines.state(idt_rows(view), gdt_rows(view), tss_rows(view))
    others = {c.cpu.index: baselines.state(idt_rows(c.view), gdt_rows(c.view), tss_rows(c.view))
              for c in per_cpu if c.cpu.long_mode and c.cpu.index != 0}
    if others:
        arch = baselines.with_cpus(arch, others)
    checks = run_all(view, per_cpu)
    if baseline is not None:
        checks.append(baselines.drift_check(baseline[1], arch, baseline[0]))
    checks, unused = apply_waivers(checks, waivers or {})
    return InspectReport(kernel, profile, ready_line, view, checks, unused_waivers=unused, cpus=per_cpu,
                         state=arch)


def read_baseline(path: Path) -> tuple[str, dict]:
    """(the file's name, the state it records); UserError, one line, when it cannot be read."""
    try:
        return str(path), baselines.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--baseline {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"--baseline {path}: not a lab baseline (not UTF-8 text)") from None
    except ValueError as exc:
        raise UserError(f"--baseline {path}: {exc}") from None


def write_baseline(path: Path, report: InspectReport) -> None:
    """Writes the report's state as the baseline file `path` (UserError when it cannot)."""
    try:
        path.write_text(baselines.dumps(report.state), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--update-baseline {path}: {exc.strerror}") from None


def inspect(kernel: Path | None, profile: Profile, *, log_dir: Path | None = None,
            ready_timeout: float = 10.0, stop: Stop = Stop(), append: str | None = None,
            image: Path | None = None, symbols: Path | None = None,
            restore: bool = True, waivers: dict[str, str] | None = None,
            baseline: tuple[str, dict] | None = None) -> InspectReport:
    """Boots, stops (at the lab kernel's ready point, or `stop`), reads and checks the tables.
    Any x86-64 kernel: symbols are optional, and only the generic tier needs none. `restore`
    as Session's (a stop other than the ready point always boots). `waivers` ({check id:
    reason}, lab.toml's) turn expected FAILs and WARNs into WAIVED; the report names the
    unused ones. `baseline` (read_baseline's) adds the check baseline.drift."""
    t0 = time.monotonic()
    with Session(kernel, profile, log_dir=log_dir, ready_timeout=ready_timeout, append=append,
                 image=image, symbols=symbols, restore=restore if stop.is_ready else False) as s:
        t_started = time.monotonic()
        ready = s.boot_to(stop)
        t_ready = time.monotonic()
        state, cpus = read_machine(s.gdb, percpu_bytes(s.symbols))
        require_long_mode(state.cpu, ready)
        screen = s.qemu.screendump() if profile.display != "none" else None
        t_read = time.monotonic()
    report = checked_report(state, s.symbols, kernel or image, profile.name, ready, waivers, cpus, baseline)
    report.screen = screen
    t_done = time.monotonic()
    report.timings = {"restored": s.restored is not None, "start": t_started - t0,
                      "boot_to_ready": t_ready - t_started, "read": t_read - t_ready,
                      "teardown_decode_check": t_done - t_read, "total": t_done - t0}
    return report


def run_inspect(vm: VmSpec, stop: Stop = Stop(), waivers: dict[str, str] | None = None,
                baseline: tuple[str, dict] | None = None) -> InspectReport:
    return inspect(vm.kernel, vm.profile, log_dir=vm.log_dir, ready_timeout=vm.ready_timeout,
                   stop=stop, append=vm.append, image=vm.image, symbols=vm.symbols,
                   restore=vm.restore, waivers=waivers, baseline=baseline)
