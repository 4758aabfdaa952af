"""A VM of any x86-64 kernel, booted and stopped, for code that is not the `lab` command: the
pytest plugin, a kernel developer's own scripts."""

from __future__ import annotations

import time
from pathlib import Path

from lab.host import config as lab_config
from lab.host.config import LabConfig
from lab.machine.session import Session, Stop, worth_keeping
from lab.runs.inject import InjectResult, inject_all
from lab.checks.smp_labkernel import percpu_bytes
from lab.runs.inspect import InspectReport, checked_report
from lab.runs.vm import VmSpec, spec_from, stop_from
from lab.scenarios.injections import selected
from lab.target.cpu import parse_info_registers, read_state, require_long_mode
from lab.target.cpus import read_machine


class VM:
    """One running guest, stopped at its stop point. A context manager: the VM ends (QEMU and
    gdb reaped) when the block ends, whatever happened in it."""

    def __init__(self, spec: VmSpec, stop: Stop = Stop()) -> None:
        self.spec = spec
        self.stop = stop
        self.session: Session | None = None
        self.stopped_at: str | None = None  # a line saying where the CPU stopped
        self.waivers: dict[str, str] = {}  # lab.toml's expected findings (from_config)
        #: (name, JSON) of every result this VM produced, in order: the pytest plugin writes
        #: them as the HTML report of a failing test (lab/present/html)
        self.results: list[tuple[str, object]] = []

    @classmethod
    def from_config(cls, path: Path | None = None, **options) -> "VM":
        """The VM a lab.toml describes (`path`, else the nearest from the current directory);
        `options`, as `boot`'s keywords, override it."""
        return boot(**options, config=lab_config.load(path or lab_config.find()))

    def __enter__(self) -> "VM":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc is not None and worth_keeping(exc))

    def start(self) -> None:
        session = self.spec.session(restore=self.spec.restore and self.stop.is_ready)
        self.session = session.__enter__()
        try:
            self.stopped_at = self.session.boot_to(self.stop)
            require_long_mode(parse_info_registers(self.session.gdb.monitor("info registers")), self.stopped_at)
        except BaseException as exc:
            self.close(failed=worth_keeping(exc))
            raise

    def close(self, failed: bool = False) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            session.close(failed=failed)

    def _live(self) -> Session:
        if self.session is None:
            raise RuntimeError("the VM is not running: use it inside `with boot(...) as vm:`")
        return self.session

    # -- reading the stopped CPU ------------------------------------------------------------
    def inspect(self, waivers: dict[str, str] | None = None) -> InspectReport:
        """The IDT, GDT, TSS and registers now, decoded, and every check `lab inspect` runs;
        `waivers` ({check id: reason}, default lab.toml's) turn expected findings WAIVED."""
        s = self._live()
        t0 = time.monotonic()
        state, cpus = read_machine(s.gdb, percpu_bytes(s.symbols))
        report = checked_report(state, s.symbols, self.spec.kernel or self.spec.image,
                                self.spec.profile.name, self.stopped_at or "",
                                self.waivers if waivers is None else waivers, cpus)
        report.timings["read_decode_check"] = time.monotonic() - t0
        self.results.append(("VM.inspect", report.to_json()))
        return report

    def registers(self) -> dict[str, int]:
        """Every register gdb knows (rip, rsp, cr3, gs_base, ...), by name."""
        return self._live().gdb.registers()

    def read_memory(self, address: int, length: int) -> bytes:
        return self._live().gdb.read_memory(address, length)

    def monitor(self, command: str) -> str:
        """One QEMU human-monitor command (`info registers`, `xp /4gx 0x1000`, ...)."""
        return self._live().gdb.monitor(command)

    @property
    def symbols(self):
        return self._live().symbols

    def address_of(self, symbol_or_address: str) -> int:
        return self._live().symbols.require_address(symbol_or_address)

    def serial(self) -> str:
        """What the guest printed on its console so far (its last 64 KiB)."""
        return self._live().serial.tail(1 << 16)

    # -- acting on it -------------------------------------------------------------------------
    def fire(self, *names: str, timeout: float = 5.0) -> list[InjectResult]:
        """Kernel-agnostic exceptions (de bp nmi ud gp pf; none: all) raised at the stop, each
        frame checked, and the CPU put back exactly as it was."""
        results = inject_all(self._live(), selected(list(names) or ["all"]), timeout=timeout)
        self.results.append(("VM.fire", {"stop": self.stopped_at or "", "results": [r.to_json() for r in results]}))
        return results


def boot(kernel: str | Path | None = None, *, profile: str | None = None, append: str | None = None,
         symbols: str | Path | None = None, image: str | Path | None = None,
         initrd: str | Path | None = None, memory: str | None = None, cpus: int | None = None,
         qemu_args=(),
         at: str | None = None, after: float | None = None, when: str | None = None,
         ready_timeout: float | None = None, log_dir: str | Path | None = None,
         restore: bool = True, boot_path: str | None = None, display: str | None = None,
         config: LabConfig | None = None) -> VM:
    """A VM of `kernel` (an ELF, a bzImage; None: the lab's own kernel, built), stopped at
    `at` (a symbol or an address), `after` seconds, `when` the console matches a regex, or,
    for the lab's kernel, at its ready point. Every keyword left out falls back to `config`
    (a lab.toml, lab.host.config.load) when given. Use it in a `with` block."""
    cfg = config or LabConfig()
    path = lambda p: None if p is None else Path(p)
    spec = spec_from(cfg, kernel=path(kernel), profile=profile, boot=boot_path, display=display, memory=memory,
                     cpus=cpus, initrd=path(initrd), qemu_args=tuple(qemu_args), append=append, image=path(image),
                     symbols=path(symbols), ready_timeout=ready_timeout, log_dir=path(log_dir),
                     restore=restore)
    vm = VM(spec, stop_from(cfg, at=at, after=after, when=when))
    vm.waivers = dict(cfg.waivers)
    return vm
