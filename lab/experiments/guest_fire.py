"""`lab fire --observer guest`: fire scenarios with no breakpoint and no stop at all.

The lab kernel's in-guest observer (kernel/src/observer.rs) records what each delivered
exception pushed, and which fire it belongs to (the plant count). Per scenario the lab types
`fire <n> <style>` and reads the `fired` line; the records are read afterwards in one gdb
memory read of `LAB_OBSERVER` (the CPU stopped once, at the end, or every half ring), and
each fire becomes the same `FireObservation` the gdb observer builds (lab/experiments/fire.py),
so lab/checks/frame.py judges both alike. (The shell's `observed` prints the same records as
hex, but at about 30 µs a byte on TCG that costs more than the fires themselves.) What the guest cannot see is left
out and its checks are skipped: there are no planted sentinels (no TrapFrame or resume check).

The observer needs no debug registers and no stop, so it judges on KVM what gdb cannot (the
four-breakpoint limit, gdb's guest-debugging side effects), and it needs no stop per scenario.
For the NMI scenario the lab watches RIP through QEMU's monitor until the CPU is in the
harness's wait loop, then injects the NMI (QMP inject-nmi).

On an AP (`cpu` K: the shell's `on K fire`) each record names the CPU it was made on; the
fire's are CPU K's, any other CPU's record of the same fire goes to `elsewhere`. For `nmi` the
lab injects nothing: the boot CPU sends CPU K alone an NMI IPI once the harness waits, and
the lab reads every CPU's NMI count (`cpus`) before and after, and at the end every CPU's IST
tops (each TSS through each CPU's TR).
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from lab.errors import GuestError, LabTimeout, TimeoutTooShort, UserError
from lab.experiments.fire import STOP_TIMEOUT, FireObservation, Firer
from lab.labkernel.layouts import (OBSERVER_CAPACITY, OBSERVER_HEADER, OBSERVER_PLANT_SYMBOL, OBSERVER_SIZE,
                                   OBSERVER_SYMBOL, PLANT)
from lab.labkernel.observer import ObservedException, decode_buffer
from lab.machine.process import Deadline, patient
from lab.machine.session import Session
from lab.scenarios.exceptions import RIP_LOOP, ExceptionScenario
from lab.target.cpu import parse_info_registers
from lab.x86.idt import decode_gate
from lab.x86.vectors import pushes_error_code

NO_GATE = {"offset": 0, "type": "unobserved", "ist": 0, "dpl": 0, "present": False, "symbol": ""}


def has_observer(symbols) -> bool:
    return symbols.lookup(OBSERVER_SYMBOL) is not None


def entry_of(obs_vector: int, records) -> ObservedException | None:
    """The record gdb's entry breakpoint would have stopped at: the first of the vector fired."""
    return next((r for r in records if r.vector == obs_vector), None)


def fill_from_records(obs: FireObservation, records, symbols) -> None:
    """Sets what the records show: the delivered event (the first record), the handler entry
    (the first record of the expected vector), the interrupted context, the live gate."""
    if records:
        first = records[0]
        obs.delivered = {"vector": first.vector, "error_code": first.error_code, "frame": first.frame,
                         "style": first.style, "cr2": first.cr2}
        obs.before = dict(first.plant)
    entry = entry_of(obs.vector, records)
    if entry is not None:
        gate = decode_gate(entry.gate, entry.vector)
        obs.gate = {"offset": gate.offset, "type": gate.type_name, "ist": gate.ist, "dpl": gate.dpl,
                    "present": gate.present, "symbol": symbols.describe(gate.offset)}
        obs.ist_top = entry.ist_top if gate.ist else None
        obs.entry = {"rsp": entry.entry_rsp, "rflags": entry.rflags, "cr2": entry.cr2,
                     "pc": gate.offset, "stack": list(entry.words)}


class GuestFirer(Firer):
    """Fires scenarios in one booted session with the CPU running, stopping only to read the
    records: at the end, and whenever half the ring is unread."""

    def __init__(self, session: Session, cpu: int = 0) -> None:
        super().__init__(session, cpu)
        if not has_observer(self.symbols):
            raise UserError(f"{session.kernel}: no {OBSERVER_SYMBOL} symbol; use --observer gdb")
        self._buffer = self.symbols.lookup(OBSERVER_SYMBOL).address
        self._plant = self.symbols.lookup(OBSERVER_PLANT_SYMBOL).address
        self._running = False
        self._pending: list[FireObservation] = []  # fired, records not read yet
        self._read = 0  # records read (or dropped) so far
        self._fires = 0  # plant points passed so far
        self._prompt_due = False  # the last fire's prompt is not read yet

    def close(self) -> None:
        """Leaves the CPU stopped again, as a session is between fires (gdb's protocol)."""
        if self._running:
            self.gdb.interrupt()
            self._running = False

    def _run(self) -> None:
        if not self._running:
            if not self._pending:  # records and plants of earlier events are not this run's
                self._read = OBSERVER_HEADER.read_field(self.gdb.read_memory, self._buffer, "count")
                self._fires = PLANT.read_field(self.gdb.read_memory, self._plant, "fire")
            self.gdb.cont()
            self._running = True

    def _collect(self) -> None:
        """Stops the CPU, reads the ring and gives each pending fire its records."""
        if self._prompt_due:  # the shell is idle again: nothing of the last fire is still running
            self.s.serial.wait_prompt(STOP_TIMEOUT)
            self._prompt_due = False
        self.close()
        dump = decode_buffer(self.gdb.read_memory(self._buffer, OBSERVER_SIZE), after=self._read)
        if dump.lost:
            raise GuestError(f"the observer's ring overflowed: {dump.lost} records lost", logs=self.s.logs)
        self._read = dump.count
        for obs in self._pending:
            records = [r for r in dump.records if r.plant["fire"] == obs.plant_number]
            obs.elsewhere = [{"cpu": r.cpu, "what": f"recorded vector {r.vector}"} for r in records if r.cpu != obs.cpu]
            records = [r for r in records if r.cpu == obs.cpu]
            obs.guest = [r.to_json() for r in records]
            fill_from_records(obs, records, self.symbols)
            if self._cpus and obs.gate["ist"]:
                obs.ist_tops = self._ist_tops(obs.gate["ist"])
        self._pending.clear()

    def fire_all(self, plan, vector: int | None = None, *, inject_nmi: bool = True,
                 handler_timeout: float = STOP_TIMEOUT, on_fired=None) -> list[FireObservation]:
        """Fires `plan` ((scenario, style) pairs) in order; returns their observations, the
        records read. Stops at a fire that times out (the guest is then abandoned)."""
        done: list[FireObservation] = []
        for scenario, style in plan:
            logging.getLogger("lab").info("fire %s %s", scenario.name, style)
            obs = self._fire_one(scenario, style, vector, inject_nmi, handler_timeout)
            if on_fired is not None:
                on_fired(obs)
            done.append(obs)
            if obs.timeout:
                return done
            self._pending.append(obs)
            if len(self._pending) * 2 >= OBSERVER_CAPACITY:
                self._collect()
        if self._pending:
            self._collect()
        return done

    def fire(self, scenario: ExceptionScenario, style: str, vector: int | None = None,
             seed: int | None = None, *, inject_nmi: bool = True,
             handler_timeout: float = STOP_TIMEOUT) -> FireObservation:
        [obs] = self.fire_all([(scenario, style)], vector, inject_nmi=inject_nmi,
                              handler_timeout=handler_timeout)
        return obs

    def _wait_in_loop(self, labels, what: str) -> None:
        """Until RIP is inside [fault, resume] (the wait loop), read through QEMU's monitor. Not
        from the plant point: an NMI there lands before the harness counts its plant, and its
        record would name the previous fire."""
        deadline = Deadline(STOP_TIMEOUT, what)
        while True:
            rip = parse_info_registers(self.s.qemu.hmp("info registers")).values["RIP"]
            if labels.fault <= rip <= labels.resume:
                return
            if deadline.expired():
                raise deadline.error(logs=self.s.logs)

    def _fire_one(self, scenario, style, vector, inject_nmi, handler_timeout) -> FireObservation:
        vector = scenario.vector if vector is None else vector
        if vector != scenario.vector and scenario.name != "int":
            raise UserError("--vector applies to the 'int' scenario only")
        if scenario.name == "int" and pushes_error_code(vector):
            raise UserError(f"int {vector}: the CPU pushes an error code for this vector and `int` "
                            f"does not, so the handler would take RIP for the error code; pick another vector")
        labels = self.labels(scenario)
        if scenario.name == "int":
            labels.fault = self.symbols.lookup("lab_int_table").address + vector * 8
            labels.fault_end = labels.fault + 2
        if not self._running:
            self._log_tail()  # QEMU's log lines from before this run are not its
        self._run()
        serial = self.s.serial
        kernel_nmi = self._kernel_sends_nmi(scenario)
        nmis_before = self._nmi_counts(stopped=False) if kernel_nmi else None
        on = f"on {self.cpu} " if self.cpu else ""
        serial.send_line(f"{on}fire {scenario.name} {style}" + (f" {vector}" if scenario.name == "int" else ""))
        self._fires += 1
        obs = FireObservation(
            scenario=scenario.name, style=style, vector=vector, accel=self.s.profile.accel,
            labels=asdict(labels), sentinels={}, before={}, gate=dict(NO_GATE), ist_top=None,
            expected_cr2=self.test_pages[scenario.cr2_page] if scenario.cr2_page is not None else None,
            observer="guest", plant_number=self._fires,
            qemu=self.s.profile.qemu_build.version_str, cpu=self.cpu, nmis_before=nmis_before)
        if kernel_nmi:
            obs.nmi_source = "ipi"
        elif scenario.rip == RIP_LOOP and inject_nmi:
            self._wait_in_loop(labels, f"{scenario.name}: the CPU in the wait loop")
            self.s.qemu.qmp_cmd("inject-nmi")
            obs.nmi_source = "inject-nmi"
        try:
            what = f"the kernel's report of {scenario.name}"
            m = patient(lambda t: serial.expect(rb"(fired|error:) ([^\r\n]*)\r?\n", t, what),
                        handler_timeout, STOP_TIMEOUT, what)
        except TimeoutTooShort:
            raise  # the lab's timeout (exit 3), not the guest's
        except LabTimeout as exc:  # the VM may have stopped (a KVM internal error)
            status = self.s.qemu.qmp_cmd("query-status")["status"]
            obs.timeout = f"{exc}; QEMU status: {status}"
            obs.qemu_log = self._log_tail()
            for earlier in self._pending:  # their records are in a guest that cannot be read now
                earlier.timeout = f"not read: a later fire ({scenario.name}) lost the VM: {obs.timeout}"
            self._pending.clear()
            return obs
        # The prompt that follows is not waited for: the next expect (or _collect's) skips it,
        # and the shell reads the next line only once it has printed it.
        self._prompt_due = True
        if m.group(1) == b"error:":
            serial.wait_prompt(STOP_TIMEOUT)
            raise UserError(f"the kernel refused `fire {scenario.name}`: {m.group(2).decode().strip()}")
        obs.kernel_report = dict(kv.split("=", 1) for kv in m.group(2).decode().split())
        if kernel_nmi:
            serial.wait_prompt(STOP_TIMEOUT)
            self._prompt_due = False
            obs.nmis_after = self._nmi_counts(stopped=False)
        obs.qemu_log = self._log_tail()
        return obs
