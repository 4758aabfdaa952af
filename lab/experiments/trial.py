"""`trial <name>`: the kernel's experiments behind the tutorial texts' claims
(kernel/src/trial, one module each). The CPU measures in the kernel; each trial prints
`key=value` lines and `trial done name=<name>`. This module runs them in a VM and parses the
lines into one observation per backend: the accelerator, the QEMU version that ran them, and
what each trial saw.

| trial | kernel module | lines |
| --- | --- | --- |
| pairs | trial/pairs.rs | `trial pair first=… cause=… vector=… error=… rip=… cr2=… fault_at=…` |
| tlb | trial/tlb.rs | `trial tlb pge_was=… pcid=… <case>=stale\\|fresh\\|unsupported` |
| eoi | trial/eoi.rs | `trial eoi-state in_service=… pending=… ppr=…`, `trial eoi first=… …` |
| stacks | trial/rings.rs | `trial stack from=… ist=… entry_rsp=… rsp_before=… rsp0=… ist_top=…` |
| swapgs | trial/rings.rs | `trial swapgs gs=… kernel_gs=… ring0_handler_gs=… after_one_gs=… …` |
| tutorial | trial/tutorial.rs | `trial tutorial vector=… read_rip=… call_rsp=… returned=… …` |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lab.errors import GuestError
from lab.target import shell

TRIALS = ("pairs", "tlb", "eoi", "stacks", "swapgs", "tutorial")
#: Bound on one trial's reply (the slowest, eoi, spins a few windows with IF=1).
TRIAL_TIMEOUT = 30.0
NONE = -1


def _value(v: str):
    """A field's value: an int (decimal, 0x hex, -1 for none), a list of ints for a
    comma-separated list of vectors (`-` is the empty list), else the text."""
    if v == "-":
        return []
    if "," in v:
        return [int(x, 0) for x in v.split(",")]
    try:
        return int(v, 0)
    except ValueError:
        return v


def parse_line(line: str) -> dict:
    return {k: _value(v) for k, v in shell.fields(line).items()}


@dataclass
class TrialObservation:
    accel: str  # tcg | kvm
    qemu_version: str  # QMP query-version, e.g. "7.2.15"
    cpu: str  # the -cpu model
    pairs: list[dict] = field(default_factory=list)
    tlb: dict = field(default_factory=dict)
    eoi: dict = field(default_factory=dict)  # the eoi-state fields and the eoi line's
    stacks: list[dict] = field(default_factory=list)
    swapgs: dict = field(default_factory=dict)
    tutorial: list[dict] = field(default_factory=list)

    @property
    def backend(self) -> str:
        """E.g. `TCG (QEMU 7.2.22)`: how evidence names where it was measured (the version's
        number; `qemu_version` keeps the package string)."""
        return f"{self.accel.upper()} (QEMU {self.qemu_version.split()[0]})"

    def to_json(self) -> dict:
        return asdict(self)


def parse(name: str, text: str, obs: TrialObservation) -> None:
    """Adds one trial's reply to `obs`; a reply without its `trial done` line, or with an
    `error:` line, is the guest's failure."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if f"trial done name={name}" not in lines:
        raise GuestError(f"trial {name}: no 'trial done' line; the kernel said: {text[-300:]!r}")
    for ln in lines:
        if ln.startswith("error:"):
            raise GuestError(f"trial {name}: {ln}")
        if ln.startswith("trial pair "):
            obs.pairs.append(parse_line(ln))
        elif ln.startswith("trial tlb "):
            obs.tlb = parse_line(ln)
        elif ln.startswith("trial eoi"):
            obs.eoi.update(parse_line(ln))
        elif ln.startswith("trial stack "):
            obs.stacks.append(parse_line(ln))
        elif ln.startswith("trial swapgs "):
            obs.swapgs = parse_line(ln)
        elif ln.startswith("trial tutorial "):
            obs.tutorial.append(parse_line(ln))


def observe(session, trials=TRIALS) -> TrialObservation:
    """Runs `trials` in the kernel stopped at its ready point (the session's)."""
    from lab.machine.snapshot import qemu_version

    obs = TrialObservation(session.profile.accel, qemu_version(session.qemu) or "unknown", session.profile.cpu)
    session.gdb.cont()
    session.serial.wait_prompt(10)
    for name in trials:
        parse(name, session.serial.command(f"trial {name}", timeout=TRIAL_TIMEOUT), obs)
    return obs
