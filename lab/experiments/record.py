"""`lab probe NAME --record`: a probe's run under QEMU's record/replay (lab/machine/replay.py),
for `lab debug --replay`.

The recorded VM boots and runs without gdb: the lab waits for the shell's prompt on serial,
types the probe's command (serial input is recorded) and waits for QMP `SHUTDOWN`, the triple
fault's reset (`-action shutdown=pause` keeps QEMU alive to be asked its instruction count).
Only the triple-fault probes are recorded (lab/runs/probe.py): the others end asleep in `hlt`,
stopped through QMP, and replays of such runs stopped at different places. The chain and the
last state come from the recorded run's `-d int` log, as in `lab probe`.
"""

from __future__ import annotations

import time

from lab.errors import LabTimeout
from lab.experiments.probe import HUNG, ProbeObservation, _wait_reset
from lab.host.profiles import Profile
from lab.machine.qemu import QemuMachine
from lab.machine.replay import Recording, parse_info_replay
from lab.machine.rundir import RunDir
from lab.machine.serial import SerialConsole
from lab.scenarios.probes import TRIPLE_FAULT, Probe
from lab.target import qemu_log
from lab.x86.vectors import mnemonic


class _Shutdowns:
    """The part of a Session that _wait_reset reads: the QEMU it waits on."""

    def __init__(self, qemu: QemuMachine) -> None:
        self.qemu = qemu


def record_probe(profile: Profile, probe: Probe, recording: Recording, *,
                 timeout: float = 10.0) -> ProbeObservation:
    """Boots the recording's copy of the kernel: the replay must boot the same path, since
    QEMU's Multiboot loader hands the guest the kernel's file name in its command line."""
    t0 = time.monotonic()
    obs = ProbeObservation(probe.name, profile.name)
    run = RunDir(recording.path)
    qemu = QemuMachine(profile, run, kernel=recording.kernel, paused=False, debug_log="int,cpu_reset",
                       extra_args=recording.record_args(), append=recording.append)
    serial = None
    try:
        qemu.launch()
        serial = SerialConsole(qemu.serial, run)
        serial.wait_prompt(max(timeout, 10.0))
        qemu.drain_events()
        serial.send_line(probe.command)
        try:
            _wait_reset(_Shutdowns(qemu), obs, timeout)
        except LabTimeout as exc:
            obs.outcome = HUNG
            obs.evidence.append(f"{exc.message}; serial tail:\n{serial.tail(800).strip()}")
        if obs.outcome == TRIPLE_FAULT:
            # The reset ends the run at the instruction that raised it: the replay stops there.
            recording.end_icount = parse_info_replay(qemu.hmp("info replay"))
            recording.save()
    finally:
        if serial is not None:
            serial.close()
        qemu.shutdown()  # QMP quit: QEMU writes the rest of replay.bin and its log
        run.close(failed=False)
    text = recording.log.read_text(errors="replace") if recording.log.exists() else ""
    obs.chain = qemu_log.chain(qemu_log.parse(text), mnemonic)
    obs.last_state = qemu_log.state_at_last_event(text)
    obs.seconds = time.monotonic() - t0
    return obs
