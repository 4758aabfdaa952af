"""What the claims are decided on: the evidence of one run of the lab's experiments, the
verdict names, and the small look-ups every judge shares (lab/checks/claims.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.errors import LabError

HOLDS, HOLDS_IF, REFUTED, UNMEASURED = "holds", "holds only under a condition", "refuted", "not measured"


@dataclass
class Evidence:
    fires: list = field(default_factory=list)  # FireResult
    probes: dict = field(default_factory=dict)  # name -> (ProbeObservation, checks)
    tasks: object = None  # (TasksObservation, checks)
    ring3: object = None  # (Ring3Observation, checks, outcomes)
    timer: object = None  # (TimerObservation, checks)
    trials: dict = field(default_factory=dict)  # accel -> TrialObservation (lab/experiments/trial.py)
    accel: str = ""  # the accelerator the other experiments ran on (tcg | kvm)
    smp: object = None  # (list of CpuView on several CPUs, ApTripleFault) (lab/checks/claim_judges_smp.py)
    cpu_switch: object = None  # (CpuSwitchObservation, its checks) (lab/experiments/cpu_switch.py)


def judged(claim, ev: Evidence) -> tuple[str, list[str]]:
    """`claim.judge(ev)`: its verdict and its evidence lines (empty ones left out). A judge that
    raises is a bug in the judge, not missing evidence (missing evidence is UNMEASURED, which
    each judge returns itself): LabError naming the claim."""
    try:
        verdict, evidence = claim.judge(ev)
    except Exception as exc:
        raise LabError(f"claim {claim.id}: its judge failed: {type(exc).__name__}: {exc}") from exc
    return verdict, [e for e in evidence if e]


def _fires(ev: Evidence, pred=lambda r: True):
    return [r for r in ev.fires if r.observation.entry is not None and pred(r)]


def _check(r, check_id):
    return next(c for c in r.checks if c.id == check_id)


def _delivered_as_expected(r) -> bool:
    """The expected vector arrived (whatever the frame checks said): the evidence a claim
    about that vector must weigh, including evidence against it."""
    d = r.observation.delivered
    return d is not None and d["vector"] == r.observation.vector


def _name(r):
    return f"{r.scenario.name}/{r.observation.style}"
