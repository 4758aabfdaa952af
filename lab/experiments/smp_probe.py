"""A triple fault on one application processor, and what QEMU does to the whole machine.

The lab kernel on N CPUs; `ipi <cpu> triple` makes CPU k alone load an IDTR of limit 0 and
execute int3: no gate for #BP (#GP), none for the #GP (#DF), none for the #DF: CPU k shuts down
(SDM vol. 3A §6.15). On real hardware a shutdown is a special bus cycle the chipset usually
answers with a reset; QEMU decides for itself. The lab runs QEMU with -no-reboot, so a reset
request ends QEMU with the QMP event SHUTDOWN (reason guest-reset): if one AP's triple fault
takes every CPU down, that event comes; if it stopped only that CPU, the boot CPU would go on
answering the shell. Both are measured: the event, QEMU's `-d cpu_reset` log (TCG), and
whether the boot CPU still answers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.errors import LabError, LabTimeout
from lab.host.profiles import Profile
from lab.experiments.probe import reset_or_stop
from lab.machine.session import Session
from lab.target import qemu_log
from lab.x86.vectors import mnemonic


@dataclass
class ApTripleFault:
    cpu: int
    cpus: int
    profile: str
    whole_machine_down: bool | None = None  # None: neither a shutdown nor an answer came
    shutdown: dict | None = None  # QMP SHUTDOWN's data
    stopped: str | None = None  # QEMU's run state when it stopped without a reset (internal-error)
    chain: list[str] | None = None  # TCG: the exception chain QEMU logged
    kernel_line: str = ""  # the shell's `ipi ... kind=triple` line
    boot_cpu_answered: bool | None = None  # the shell answered after the fault
    evidence: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def ap_triple_fault(kernel: Path, profile: Profile, *, cpu: int = 1, timeout: float = 10.0,
                    log_dir: Path | None = None, ready_timeout: float = 10.0) -> ApTripleFault:
    """`profile` must give the VM more than `cpu` CPUs (Profile.customized(cpus=N))."""
    t0 = time.monotonic()
    cpus = profile.cpus
    obs = ApTripleFault(cpu, cpus, profile.name)
    debug_log = "int,cpu_reset" if profile.is_tcg else None
    with Session(kernel, profile, log_dir=log_dir, debug_log=debug_log, restore=False,
                 ready_timeout=max(timeout, ready_timeout)) as s:
        s.boot_to_ready()
        s.gdb.cont()
        s.serial.wait_prompt(timeout)
        log = s.run.log("qemu.log")
        start = log.stat().st_size if log.exists() else 0
        s.qemu.drain_events()
        s.serial.send_line(f"ipi {cpu} triple")
        obs.kernel_line = s.serial.expect(rb"ipi cpu=\d+ kind=triple[^\r\n]*\r?\n", timeout,
                                          "the kernel to send the IPI").group(0).decode().strip()
        try:
            obs.shutdown, obs.stopped = reset_or_stop(s, timeout)
            if obs.shutdown is not None:
                obs.whole_machine_down = True
                obs.evidence.append(f"QMP SHUTDOWN {obs.shutdown} after CPU {cpu}'s triple fault: QEMU ended "
                                    f"the whole machine ({cpus} CPUs)")
            else:
                # Not the triple fault's answer: the accelerator gave up before it (this host's
                # nested KVM cannot emulate the IDT-limit-0 path: its idt-limit0 probe too).
                obs.evidence.append(f"QMP STOP, status {obs.stopped}: QEMU stopped every CPU because the "
                                    f"accelerator could not go on (see qemu.stderr.log), before any triple "
                                    f"fault; what a triple fault on CPU {cpu} does is not measured here")
        except LabTimeout:
            try:
                obs.boot_cpu_answered = s.serial.command("info", timeout).startswith("info version=")
            except LabError as exc:
                obs.evidence.append(f"no shutdown, and the shell did not answer: {exc.message}")
            if obs.boot_cpu_answered:
                obs.whole_machine_down = False
                obs.evidence.append(f"no shutdown within {timeout} s; the boot CPU still answers `info`")
        if obs.whole_machine_down and s.qemu.proc.poll() is None:
            s.qemu.wait_exit(timeout)
        if profile.is_tcg and log.exists():
            with open(log, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
            obs.chain = qemu_log.chain(qemu_log.parse(text), mnemonic)
            obs.evidence.append(f"QEMU's log after the IPI: {' -> '.join(obs.chain) or '(nothing)'}")
    obs.seconds = time.monotonic() - t0
    return obs

