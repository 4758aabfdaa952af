"""`lab fire`: raise one exception in the running lab kernel and record what the CPU did.

For one scenario (lab/scenarios/exceptions.py): stop at `lab_plant_<n>` (the shell runs `fire
<n> <style>`), write fresh random sentinels into the GPRs and CR2, then break at the handler the
live IDT names (RSP, RFLAGS, CR2, the CPU's frame; the DWARF type the handler reads it through,
lab/experiments/frame_type.py), at `lab_on_exception` (the delivered vector; the stub's
TrapFrame) and at `lab_resume_<n>` (the registers after iretq). The NMI scenario gets QMP
`inject-nmi` (on an AP, the boot CPU's NMI IPI). Stops on other CPUs are kept as `elsewhere`.
The result is a `FireObservation`, raw facts; lab/checks/frame.py judges them.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from lab.errors import GuestError, LabError, LabTimeout, TimeoutTooShort, UserError
from lab.experiments import frame_type
from lab.labkernel.layouts import OBSERVER_HEADER, OBSERVER_SIZE, OBSERVER_SYMBOL
from lab.labkernel.observer import STYLES as OBSERVER_STYLES, decode_buffer
from lab.machine.process import Deadline, patient
from lab.machine.session import Session
from lab.scenarios.exceptions import RIP_LOOP, ExceptionScenario
from lab.target.cpus import thread_cpu
from lab.target.shell import cpus_reply
from lab.x86.frames import GPRS, QWORD, TRAP_FRAME, qwords
from lab.x86.idt import read_gate
from lab.x86.tss import TSS
from lab.x86.vectors import pushes_error_code

STOP_TIMEOUT = 5.0
MAX_REENTRY = 4  # a handler entered more often than this in one fire is re-raising
ON_EXCEPTION = "lab_on_exception"
INT_TABLE = "lab_int_table"
INT_TABLE_STRIDE = 8
TEST_PAGES = "LAB_TEST_PAGES"
CR2_SENTINEL = 0x00C2_0000_0000_0000  # | random page bits: no address any scenario touches
#: lab_on_exception's RCX (kernel/CONTRACT.md): the style of the handler that called it.
HANDLER_STYLES = dict(enumerate(OBSERVER_STYLES))


@dataclass
class Labels:
    entry: int
    plant: int
    fault: int
    fault_end: int
    resume: int


@dataclass
class FireObservation:
    scenario: str
    style: str
    vector: int  # the vector the scenario targets
    accel: str  # tcg | kvm: which recorded deviations apply
    labels: dict
    sentinels: dict[str, int]
    before: dict[str, int]  # rsp, rflags, cs, ss, cr2 at the plant point
    gate: dict  # the live IDT gate for `vector` at fire time
    ist_top: int | None  # the TSS IST slot the gate names, if any
    expected_cr2: int | None
    entry: dict | None = None  # rsp, rflags, cr2, stack (list of qwords), pc
    delivered: dict | None = None  # vector, error_code, frame address, style
    trap_frame: dict | None = None  # decoded TrapFrame (stub style)
    frame_type: dict | None = None  # the DWARF type the handler reads its frame through (frame_type.py)
    after: dict[str, int] | None = None  # registers at resume
    kernel_report: dict = field(default_factory=dict)
    qemu_log: list[str] = field(default_factory=list)
    timeout: str | None = None  # set when the handler/resume point was not reached in time
    qemu: str = ""  # the QEMU's version ("10.0.2"): which recorded deviations apply
    observer: str = "gdb"  # gdb: breakpoints and stops; guest: the kernel's own records
    guest: list[dict] | None = None  # the in-guest observer's records of this fire, if it has one
    plant_number: int | None = None  # guest observer: the kernel's plant count of this fire
    cpu: int = 0  # the CPU the harness ran on (`on <cpu> fire`); every stop recorded above is its
    nmi_source: str | None = None  # nmi: "inject-nmi" (QMP, every CPU) or "ipi" (the boot CPU's, to `cpu`)
    ist_tops: list[int | None] | None = None  # on an AP: every CPU's top of the gate's IST slot, by index
    nmis_before: list[int] | None = None  # nmi on an AP: each CPU's NMI count (`cpus`), by index
    nmis_after: list[int] | None = None
    elsewhere: list[dict] = field(default_factory=list)  # other CPUs' stops (gdb) or records (guest): cpu, what

    def to_json(self) -> dict:
        return asdict(self)


class FireTimeout(LabError):
    """The handler or the resume point was not reached within the bound. The guest's state
    is unknown afterwards: the session must not be reused."""

    def __init__(self, obs: FireObservation, message: str, logs) -> None:
        super().__init__(message, logs=logs)
        self.observation = obs


class Firer:
    """Fires scenarios in one booted session.

    Protocol: between fires the CPU is stopped (at `lab_ready` after boot, then wherever
    `-exec-interrupt` caught the idle shell), because gdb arms breakpoints only on a stopped
    target. Shell input sent while the CPU is stopped waits in the serial socket: QEMU's 16550
    takes only what its FIFO can hold."""

    def __init__(self, session: Session, cpu: int = 0) -> None:
        """`cpu`: the CPU that runs the scenarios (the kernel's `on <cpu> fire`; 0: the boot
        CPU, `fire`); its own TSS gives the IST tops."""
        self.s = session
        self.cpu = cpu
        self.gdb = session.gdb
        self.symbols = session.symbols
        for needed in (ON_EXCEPTION, TEST_PAGES, INT_TABLE):
            if self.symbols.lookup(needed) is None:
                raise UserError(f"{session.kernel}: no {needed} symbol; `lab fire` needs the lab kernel")
        self._cpu = None
        self._cpus: dict = {}  # on an AP: every CPU's registers, by index
        self._threads: dict[str, int] = {}  # gdb thread id -> CPU index
        if cpu:
            self._live_cpu()  # an AP that does not exist is one line now, not a timeout later
        pages = self.symbols.read(TEST_PAGES)
        self.test_pages = qwords(pages)
        self._log_offset = 0
        self._observer = self.symbols.lookup(OBSERVER_SYMBOL)

    def _live_cpu(self):
        """IDTR and TR of the CPU the fires run on, from QEMU's monitor, read once, at the
        first gdb fire."""
        if self._cpu is None:
            from lab.target.cpu import parse_info_registers

            if self.cpu:
                from lab.target.cpus import split_all_registers

                blocks = split_all_registers(self.s.qemu.hmp("info registers -a"))
                if self.cpu not in blocks:
                    raise UserError(f"the machine has no CPU {self.cpu}")
                self._cpus = {i: parse_info_registers(t) for i, t in blocks.items()}
                self._cpu = self._cpus[self.cpu]
            else:
                self._cpu = parse_info_registers(self.s.qemu.hmp("info registers"))
        return self._cpu

    @property
    def idtr(self):
        return self._live_cpu().idtr

    @property
    def tss_base(self) -> int:
        return self._live_cpu().tr.base

    def close(self) -> None:
        """Between and after fires the CPU is stopped already (see the class's protocol)."""

    def labels(self, scenario: ExceptionScenario) -> Labels:
        raw = self.symbols.read(f"lab_labels_{scenario.symbol}")
        if raw is None or len(raw) != 40:
            raise UserError(f"the kernel has no harness for {scenario.name!r}")
        return Labels(*qwords(raw))

    def _gate(self, vector: int):
        return read_gate(self.gdb.read_memory, self.idtr.base, vector)

    def _regs(self, names) -> dict[str, int]:
        alias = {"rflags": "eflags", "pc": "rip"}
        regs = self.gdb.registers(tuple(alias.get(n, n) for n in names))
        return {n: regs[alias.get(n, n)] for n in names}

    def _log_tail(self) -> list[str]:
        path = self.s.run.log("qemu.log") if self.s.run else None
        if path is None or not path.exists():
            return []
        with open(path, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        self._log_offset += len(data)
        from lab.target import qemu_log
        return [e.line for e in qemu_log.parse(data.decode(errors="replace"))]

    def fire(self, scenario: ExceptionScenario, style: str, vector: int | None = None,
             seed: int | None = None, *, inject_nmi: bool = True,
             handler_timeout: float = STOP_TIMEOUT) -> FireObservation:
        gdb, serial = self.gdb, self.s.serial
        vector = scenario.vector if vector is None else vector
        if vector != scenario.vector and scenario.name != "int":
            raise UserError("--vector applies to the 'int' scenario only")
        if scenario.name == "int":
            gate = self._gate(vector)
            if not gate.present or pushes_error_code(vector):
                raise UserError(f"int {vector}: " + ("its gate is not present" if not gate.present else
                                "the CPU pushes an error code for this vector and `int` does not, so "
                                "the handler would take RIP for the error code; pick another vector"))
        labels = self.labels(scenario)
        self._current = scenario
        if scenario.name == "int":
            table = self.symbols.lookup(INT_TABLE).address
            labels.fault = table + vector * INT_TABLE_STRIDE
            labels.fault_end = labels.fault + 2  # `int imm8` is two bytes
        self._log_tail()  # skip log lines from before this fire
        rng = random.Random(seed)
        sentinels = {r: 0x5E00_0000_0000_0000 | (i << 40) | rng.getrandbits(32)
                     for i, r in enumerate(GPRS) if r not in scenario.operands}

        guest_count = self._guest_count()
        # On an AP the kernel sends the NMI (to that CPU alone): each CPU's count shows who took one.
        kernel_nmi = self._kernel_sends_nmi(scenario)
        nmis_before = self._nmi_counts(stopped=True) if kernel_nmi else None
        bp = gdb.hbreak(f"*{labels.plant:#x}")
        on = f"on {self.cpu} " if self.cpu else ""
        serial.send_line(f"{on}fire {scenario.name} {style}" + (f" {vector}" if scenario.name == "int" else ""))
        gdb.cont()
        self._expect_stop(labels.plant, f"the plant point of {scenario.name}")
        gdb.delete_breakpoint(bp)
        # CR2 too: a sentinel of this fire, so a CR2 written by an earlier fire (or by this
        # one, where only #PF may write it) is told apart (lab/checks/frame.py check_cr2).
        gdb.write_registers({**sentinels, "cr2": CR2_SENTINEL | rng.getrandbits(32) << 12})
        before = self._regs(("rsp", "rflags", "cs", "ss", "cr2"))
        gate = self._gate(vector)
        ist_top = None
        ist_tops = None
        if gate.ist and self._cpus:
            ist_tops = self._ist_tops(gate.ist)
            ist_top = ist_tops[self.cpu]
        elif gate.ist:
            ist_top = TSS.read_field(self.gdb.read_memory, self.tss_base, f"ist{gate.ist}")
        obs = FireObservation(
            scenario=scenario.name, style=style, vector=vector, accel=self.s.profile.accel,
            labels=asdict(labels), sentinels=sentinels, before=before,
            gate={"offset": gate.offset, "type": gate.type_name, "ist": gate.ist, "dpl": gate.dpl,
                  "present": gate.present, "symbol": self.symbols.describe(gate.offset)},
            ist_top=ist_top,
            expected_cr2=self.test_pages[scenario.cr2_page] if scenario.cr2_page is not None else None,
            qemu=self.s.profile.qemu_build.version_str, cpu=self.cpu, ist_tops=ist_tops,
            nmis_before=nmis_before)

        inject = scenario.rip == RIP_LOOP and inject_nmi and not kernel_nmi
        if inject:
            # Into the loop first: an NMI injected as the CPU leaves the plant stop could land
            # before the plant's own record is written (the kernel then reports an older one).
            loop = gdb.hbreak(f"*{labels.fault:#x}")
            gdb.cont()
            self._expect_stop(labels.fault, f"the loop of {scenario.name}")
            gdb.delete_breakpoint(loop)
        # Its first instruction (a function-name breakpoint would land after the prologue).
        at = {"entry": gate.offset if gate.present else None, "resume": labels.resume,
              "delivered": self.symbols.lookup(ON_EXCEPTION).address}
        stops = {gdb.hbreak(f"*{a:#x}"): w for w, a in at.items() if a is not None}
        pending = None  # a stop the frame-type probe stepped onto (a breakpoint there is not hit)
        gdb.cont()
        if kernel_nmi:
            obs.nmi_source = "ipi"
        elif inject:
            self.s.qemu.qmp_cmd("inject-nmi")
            obs.nmi_source = "inject-nmi"
        # One bound for the whole exchange (not per stop), and a guard against a handler
        # that is entered again and again (e.g. an event re-raised forever).
        deadline = Deadline(handler_timeout, f"{scenario.name}: the handler and the resume point")
        hits: dict[str, int] = {}
        try:
            while True:
                left = max(deadline.remaining(), 0.001)
                try:  # a bound under the usual one that the stop then beats is the lab's timeout
                    stop, pending = pending or patient(lambda t: gdb.wait_stopped(t, deadline.what), left,
                                                       left + max(0.0, STOP_TIMEOUT - handler_timeout),
                                                       deadline.what, handler_timeout), None
                except TimeoutTooShort:
                    raise
                except LabTimeout:
                    self._give_up(obs, deadline.error())
                what = stops.get(int(stop.get("bkptno", 0))) if stop.get("reason") == "breakpoint-hit" else None
                if what is None:
                    raise self._unexpected_stop(scenario, stop)
                where = self._stop_cpu(stop)
                if where != self.cpu:  # e.g. another CPU's NMI: not this fire's, but evidence
                    obs.elsewhere.append({"cpu": where, "what": f"stopped at the {what} breakpoint"})
                    gdb.cont()
                    continue
                hits[what] = hits.get(what, 0) + 1
                if hits[what] > MAX_REENTRY:
                    self._give_up(obs, LabTimeout(
                        f"{scenario.name}: the {what} breakpoint was hit {hits[what]} times: the "
                        f"event is being raised again and again", logs=self.s.logs))
                if what == "entry" and obs.entry is None and obs.delivered is None:
                    regs = self._regs(("rsp", "rflags", "cr2", "pc"))
                    # The frame, no further: above an AP's IST stack lies the next one's guard page.
                    ec = pushes_error_code(vector) and not scenario.software
                    stack = gdb.read_memory(regs["rsp"], (6 if ec else 5) * QWORD)
                    obs.entry = {"rsp": regs["rsp"], "rflags": regs["rflags"], "cr2": regs["cr2"],
                                 "pc": regs["pc"],
                                 "stack": qwords(stack)}
                    obs.frame_type = frame_type.probe(self, regs, ec, at)
                    number = next((n for n, w in stops.items() if at[w] == obs.frame_type.get("pc")), None)
                    if number is not None and obs.frame_type.get("steps"):
                        pending = {"reason": "breakpoint-hit", "bkptno": str(number),
                                   "thread-id": stop.get("thread-id")}
                        continue
                elif what == "delivered" and obs.delivered is None:
                    regs = self._regs(("rdi", "rsi", "rdx", "rcx", "cr2"))
                    obs.delivered = {"vector": regs["rdi"] & 0xFF, "frame": regs["rsi"],
                                     "error_code": None if regs["rdx"] == 2**64 - 1 else regs["rdx"],
                                     "style": HANDLER_STYLES.get(regs["rcx"], "x86-interrupt"),
                                     "cr2": regs["cr2"]}
                    if regs["rcx"] == 1:
                        base = regs["rsi"] - TRAP_FRAME.offset("rip")
                        obs.trap_frame = {"address": base, **TRAP_FRAME.decode(gdb.read_memory(base, TRAP_FRAME.size))}
                elif what == "resume":
                    obs.after = self._regs(GPRS + ("rsp",))
                    break
                gdb.cont()
        finally:
            for number in stops:
                gdb.delete_breakpoint(number)
        gdb.cont()
        m = serial.expect(rb"fired ([^\r\n]*)\r?\n", STOP_TIMEOUT, f"the kernel's report of {scenario.name}")
        obs.kernel_report = dict(kv.split("=", 1) for kv in m.group(1).decode().split())
        serial.wait_prompt(STOP_TIMEOUT)
        if kernel_nmi:
            obs.nmis_after = self._nmi_counts(stopped=False)
        gdb.interrupt()
        obs.qemu_log = self._log_tail()
        if self._observer is not None:  # what the kernel itself recorded of the same fire
            raw = gdb.read_memory(self._observer.address, OBSERVER_SIZE)
            obs.guest = [r.to_json() for r in decode_buffer(raw, after=guest_count).records if r.cpu == self.cpu]
        return obs

    def _stop_cpu(self, stop: dict) -> int | None:
        """The CPU index of the gdb thread that stopped (thread ids are fixed: read once)."""
        tid = stop.get("thread-id")
        if tid not in self._threads:
            self._threads = {t: thread_cpu(d, i) for i, (t, d) in enumerate(self.gdb.threads())}
        return self._threads.get(tid, self.cpu if tid is None else None)

    def _kernel_sends_nmi(self, scenario: ExceptionScenario) -> bool:
        """`nmi` on an AP: the boot CPU sends that AP alone an NMI IPI (the lab injects none)."""
        return bool(self.cpu) and scenario.rip == RIP_LOOP

    def _ist_tops(self, slot: int) -> list[int | None]:
        """Every CPU's top of IST `slot`, by index, each from the TSS its own TR names (None for
        a CPU with no TR): whose stack a handler ran on (needs the every-CPU read of an AP fire)."""
        return [TSS.read_field(self.gdb.read_memory, c.tr.base, f"ist{slot}") if c.tr.selector else None
                for _, c in sorted(self._cpus.items())]

    def _nmi_counts(self, stopped: bool) -> list[int]:
        """Each CPU's NMI count from the kernel's `cpus` lines, by index (a stopped CPU is
        let run for the command, and stopped again)."""
        if stopped:
            self.gdb.cont()
        try:
            text = self.s.serial.command("cpus", STOP_TIMEOUT)
        finally:
            if stopped:
                self.gdb.interrupt()
        rows = cpus_reply(text)
        if sorted(rows) != list(range(len(rows))) or not rows:
            raise GuestError(f"`cpus` did not list every CPU by index: {text.strip()[:300]!r}", logs=self.s.logs)
        return [rows[i]["nmis"] for i in range(len(rows))]

    def _guest_count(self) -> int:
        """The in-guest observer's record count now (CPU stopped), 0 without an observer."""
        if self._observer is None:
            return 0
        return OBSERVER_HEADER.read_field(self.gdb.read_memory, self._observer.address, "count")

    def _give_up(self, obs: FireObservation, exc: LabTimeout) -> None:
        """Records the evidence of a fire that never reached its handler, stops the CPU and
        raises FireTimeout."""
        try:
            self.gdb.interrupt()
        except LabError:
            pass  # the guest is being abandoned; the timeout below is what gets reported
        obs.qemu_log = self._log_tail()
        obs.timeout = f"{exc.message}; serial tail:\n{self.s.serial.tail(600).strip()}"
        raise FireTimeout(obs, obs.timeout, self.s.logs)

    def _unexpected_stop(self, scenario, stop: dict) -> GuestError:
        status = self.s.qemu.qmp_cmd("query-status")["status"]
        why = (" QEMU reports status internal-error: the accelerator could not handle the guest "
               "(under KVM: an instruction KVM had to emulate and could not)"
               if status == "internal-error" else f" (QEMU status: {status})")
        return GuestError(f"{scenario.name}: the VM stopped unexpectedly ({stop.get('reason')} "
                          f"{stop.get('signal-name', '')} at {stop.get('frame', {}).get('addr')});{why}",
                          logs=self.s.logs)

    def _expect_stop(self, address: int, what: str) -> None:
        stop = self.gdb.wait_stopped(STOP_TIMEOUT, what)
        pc = int(stop.get("frame", {}).get("addr", "0"), 16)
        if stop.get("reason") == "signal-received" and stop.get("signal-name") != "SIGINT":
            raise self._unexpected_stop(self._current, stop)
        if pc != address:
            raise GuestError(f"stopped at {pc:#x} ({stop.get('reason')}) instead of {what} "
                             f"({address:#x}); serial tail:\n{self.s.serial.tail()}", logs=self.s.logs)
