"""Which exception scenarios this host's KVM can run, measured, not assumed.

A host's KVM may fail to run an instruction it has to emulate (a nested KVM: software
interrupts, x87, LDMXCSR...): QEMU then stops the VM with "KVM internal error. Suberror: 1 /
emulation failure". That is a property of the host (CPU, hypervisor), not of the lab's
debugger, so the probe runs with no debugger at all: plain QEMU (no gdbstub), the lab kernel's
own shell, `fire <scenario>` per scenario over serial. A scenario whose `fired` line comes
back runs; otherwise the VM's state says why (QMP query-status, QEMU's stderr), and the next
scenario gets a fresh VM.

The triple-fault probes (lab/scenarios/probes.py) are measured the same way, each in its own
VM: `probe <name>` typed into the shell; the machine's expected reset (QMP SHUTDOWN, reason
guest-reset, under -no-reboot; or RESET) means it runs; a STOP with status internal-error (QEMU's
"KVM internal error") means this host's KVM cannot run it (`classify_probe`).

The result names the host CPU (/proc/cpuinfo) and is cached, keyed by host CPU + QEMU version
+ kernel hash, in `$XDG_CACHE_HOME/x86-kernel-lab/kvm-probe/`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.host.cache import cache_dir as host_cache
from lab.errors import LabError, LabTimeout
from lab.host.profiles import Profile
from lab.host.toolchain import qemu_binary
from lab.machine.process import Deadline
from lab.machine.qemu import QemuMachine
from lab.machine.rundir import RunDir
from lab.machine.serial import SerialConsole
from lab.target.cpu import parse_info_registers
from lab.target.symbols import Symbols
from lab.scenarios import probes as probe_catalog
from lab.scenarios.exceptions import CATALOG, RIP_LOOP, ExceptionScenario
from lab.scenarios.probes import TRIPLE_FAULT, Probe

FIRE_TIMEOUT = 5.0
PROBE_VERSION = 2  # part of the cache key: a change of the probe's logic re-measures
EMULATION_FAILURE, STOPPED, NO_REPORT = "emulation failure", "VM stopped", "no report"


@dataclass(frozen=True)
class HostCpu:
    vendor: str
    model: str

    def describe(self) -> str:
        return f"{self.model} ({self.vendor})"


def host_cpu(cpuinfo: str | None = None) -> HostCpu:
    """The first CPU's vendor_id and model name in /proc/cpuinfo."""
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return HostCpu(fields.get("vendor_id", "unknown"), fields.get("model name", "unknown"))


def qemu_version() -> str:
    out = subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"


@dataclass
class ProbeResult:
    cpu: dict
    qemu: str
    kernel_sha256: str
    runs: list[str] = field(default_factory=list)  # scenario names whose fire came back
    fails: dict[str, str] = field(default_factory=dict)  # scenario -> why not
    probe_runs: list[str] = field(default_factory=list)  # triple-fault probes that reset
    probe_fails: dict[str, str] = field(default_factory=dict)  # probe -> why not
    cached: bool = False

    def reason(self, name: str) -> str | None:
        return self._reason(self.fails.get(name))

    def probe_reason(self, name: str) -> str | None:
        return self._reason(self.probe_fails.get(name))

    def _reason(self, why: str | None) -> str | None:
        if why is None:
            return None
        return f"this host's KVM ({HostCpu(**self.cpu).describe()}) cannot run it: {why}"

    def to_json(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    return host_cache("kvm-probe")


def cache_key(cpu: HostCpu, qemu: str, kernel_sha256: str, profile: Profile) -> str:
    text = json.dumps([PROBE_VERSION, asdict(cpu), qemu, kernel_sha256, profile.qemu_args()])
    return hashlib.sha256(text.encode()).hexdigest()


def classify(status: str, stderr_text: str) -> str:
    """Why a fire's report did not come back, from QEMU's run state and its stderr."""
    if status == "internal-error" or "KVM internal error" in stderr_text:
        lines = [ln.strip() for ln in stderr_text.splitlines() if "KVM internal error" in ln or "emulation failure" in ln]
        return f"{EMULATION_FAILURE}: QEMU stopped the VM ('{' / '.join(lines[:2]) or status}')"
    if status in ("shutdown", "guest-panicked", "paused"):
        return f"{STOPPED} (status {status})"
    return f"{NO_REPORT} within {FIRE_TIMEOUT:g} s (status {status})"


def classify_probe(event: dict | None, status: str | None, stderr_text: str) -> str | None:
    """A triple-fault probe's outcome: None when the machine reset as expected (the QMP event
    SHUTDOWN with reason guest-reset, or RESET); else why not, from the event (None: none came),
    QEMU's run state (asked only when no SHUTDOWN came) and its stderr."""
    if event is not None and event.get("event") == "RESET":
        return None
    if event is not None and event.get("event") == "SHUTDOWN":
        reason = event.get("data", {}).get("reason")
        return None if reason == "guest-reset" else f"{STOPPED} (QMP SHUTDOWN, reason {reason})"
    return classify(status or "unknown", stderr_text)


TRIPLE_FAULT_PROBES = tuple(p for p in probe_catalog.CATALOG if p.expected == TRIPLE_FAULT)
STOP_THEN_SHUTDOWN = 0.5  # a reset's STOP is followed by SHUTDOWN at once


class _Vm:
    """One probe VM: plain QEMU without a gdbstub, running from the start, and its console."""

    def __init__(self, kernel: Path, profile: Profile, ready_timeout: float) -> None:
        self.run = RunDir()
        self.qemu = QemuMachine(profile, self.run, kernel=kernel, paused=False, gdbstub=False)
        self.serial: SerialConsole | None = None
        self.ready_timeout = ready_timeout
        self.symbols = Symbols.from_elf(kernel)

    def __enter__(self) -> "_Vm":
        try:
            self.qemu.launch()
            self.serial = SerialConsole(self.qemu.serial, self.run)
            self.serial.wait_ready(self.ready_timeout)
            self.serial.wait_prompt(self.ready_timeout)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.qemu.shutdown()
        finally:
            if self.serial is not None:
                self.serial.close()
            self.run.close(failed=False)


def _fire(vm: _Vm, s: ExceptionScenario) -> str | None:
    """None when the scenario ran; else why not (the VM is then unusable)."""
    vm.serial.send_line(f"fire {s.name}")
    if s.rip == RIP_LOOP:  # inject the NMI once RIP is in the wait loop (QEMU's monitor)
        plant, resume = (vm.symbols.lookup(f"lab_{x}_{s.symbol}").address for x in ("plant", "resume"))
        deadline = Deadline(FIRE_TIMEOUT, f"{s.name}: the CPU in the wait loop")
        while not plant <= parse_info_registers(vm.qemu.hmp("info registers")).values["RIP"] <= resume:
            if deadline.expired():
                return f"{NO_REPORT}: the CPU never reached the wait loop"
        vm.qemu.qmp_cmd("inject-nmi")
    try:
        vm.serial.expect(rb"fired [^\r\n]*\r?\n", FIRE_TIMEOUT, f"the report of {s.name}")
        vm.serial.wait_prompt(FIRE_TIMEOUT)
        return None
    except LabTimeout:
        status = vm.qemu.qmp_cmd("query-status")["status"]
        return classify(status, vm.qemu.stderr_log.read_text(errors="replace"))


def _probe(vm: _Vm, p: Probe) -> str | None:
    """None when the probe reset the machine; else why not. The VM is unusable after it."""
    vm.qemu.drain_events()
    vm.serial.send_line(p.command)
    try:
        event = vm.qemu.wait_event(("SHUTDOWN", "RESET", "STOP"), FIRE_TIMEOUT)
    except LabTimeout:
        event = None
    if event is not None and event["event"] == "STOP":
        try:  # a reset's STOP comes just before its SHUTDOWN
            event = vm.qemu.wait_event(("SHUTDOWN", "RESET"), STOP_THEN_SHUTDOWN)
        except LabTimeout:
            event = None
    # Ask QEMU's state only with no SHUTDOWN: a QMP command sent while QEMU shuts down
    # deadlocks QEMU 7.2's monitor cleanup (lab/experiments/probe.py).
    status = vm.qemu.qmp_cmd("query-status")["status"] if event is None else None
    if event is not None and event["event"] == "SHUTDOWN":
        vm.qemu.wait_exit(FIRE_TIMEOUT)  # -no-reboot: the reset ends QEMU
    return classify_probe(event, status, vm.qemu.stderr_log.read_text(errors="replace"))


def measure(kernel: Path, profile: Profile, ready_timeout: float = 30.0,
            scenarios=CATALOG, probes=TRIPLE_FAULT_PROBES) -> ProbeResult:
    """Fires every scenario (default style) in plain QEMU, a fresh VM after each failure; then
    each triple-fault probe in a VM of its own."""
    result = ProbeResult(asdict(host_cpu()), qemu_version(), sha256_of(kernel))
    for p in probes:
        with _Vm(kernel, profile, ready_timeout) as vm:
            why = _probe(vm, p)
        if why is None:
            result.probe_runs.append(p.name)
        else:
            result.probe_fails[p.name] = why
    todo = list(scenarios)
    while todo:
        with _Vm(kernel, profile, ready_timeout) as vm:
            while todo:
                s = todo.pop(0)
                why = _fire(vm, s)
                if why is None:
                    result.runs.append(s.name)
                else:
                    result.fails[s.name] = why
                    break
    return result


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def probe(kernel: Path, profile: Profile, *, refresh: bool = False, ready_timeout: float = 30.0) -> ProbeResult:
    """The cached result for this host CPU + QEMU + kernel + profile, measured if there is none."""
    key = cache_key(host_cpu(), qemu_version(), sha256_of(kernel), profile)
    path = cache_dir() / f"{key}.json"
    if not refresh and path.is_file():
        try:
            data = json.loads(path.read_text())
            return ProbeResult(**{**data, "cached": True})
        except (OSError, ValueError, TypeError):
            pass  # unreadable: measure again
    result = measure(kernel, profile, ready_timeout)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.to_json(), indent=1))
        tmp.replace(path)
    except OSError as exc:
        raise LabError(f"cannot write the KVM probe's cache {path}: {exc}") from None
    return result
