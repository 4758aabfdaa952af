"""Judging one claim on every backend the kernel trials ran on (TCG, KVM) and folding the
verdicts into one: the same verdict everywhere stands; backends that disagree make the claim
hold only where it was seen to; a backend whose observation cannot decide the claim (its
judge returns UNMEASURED) is named and left out."""

from __future__ import annotations

from typing import Callable

from lab.checks.claim_evidence import HOLDS, HOLDS_IF, REFUTED, UNMEASURED

Verdict = tuple[str, list[str]]


def fold(per: list[tuple[str, str, list[str]]]) -> Verdict:
    """`per`: (backend name, verdict, evidence) for each backend measured. Backends with the
    same verdict and evidence share one line."""
    decided = [(b, v, e) for b, v, e in per if v != UNMEASURED]
    notes = [f"{b}: cannot decide: {'; '.join(e)}" for b, v, e in per if v == UNMEASURED]
    if not decided:
        return UNMEASURED, notes or ["no kernel trial ran"]
    groups: dict[tuple, list[str]] = {}
    for b, v, e in decided:
        groups.setdefault((v, tuple(e)), []).append(b)
    lines = [f"{', '.join(bs)}: {'; '.join(e)}" for (_, e), bs in groups.items()]
    verdicts = {v for _, v, _ in decided}
    if len(verdicts) == 1:
        return verdicts.pop(), lines + notes
    holding = [b for b, v, _ in decided if v in (HOLDS, HOLDS_IF)]
    other = [b for b, v, _ in decided if v == REFUTED]
    if holding and other:
        return HOLDS_IF, [f"only on {', '.join(holding)}; refuted on {', '.join(other)}"] + lines + notes
    return HOLDS_IF, lines + notes


def on_trials(judge: Callable[[object], Verdict]) -> Callable[[object], Verdict]:
    """A claim judge (of the Evidence) from a judge of one backend's TrialObservation."""
    def run(ev) -> Verdict:
        trials = getattr(ev, "trials", None) or {}
        if not trials:
            return UNMEASURED, ["no kernel trial ran"]
        return fold([(obs.backend, *judge(obs)) for obs in trials.values()])
    run.__doc__ = judge.__doc__
    run.needs = frozenset({"trials"})
    return run


def measured_on(ev) -> str:
    """The backend the VM's own experiments ran on, named as the trials name theirs (the
    accelerator and the QEMU version; the trials ran with the same QEMU)."""
    obs = (getattr(ev, "trials", None) or {}).get(getattr(ev, "accel", ""))
    return obs.backend if obs else (getattr(ev, "accel", "") or "").upper()


def needs(*kinds: str):
    """Marks an Evidence judge with the experiments it weighs (fires, probes, tasks, ring3,
    timer, trials), so `lab claims --seed` runs only those. Its evidence is prefixed with the
    backend it was measured on."""
    def mark(judge):
        def run(ev):
            verdict, evidence = judge(ev)
            where = measured_on(ev)
            if where and evidence:
                evidence = [f"{where}: {evidence[0]}", *evidence[1:]]
            return verdict, evidence
        run.__doc__ = judge.__doc__
        run.needs = frozenset(kinds)
        return run
    return mark


def invert(judge, why: str = ""):
    """The judge of the opposite statement: HOLDS and REFUTED swap; a conditional verdict and
    an unmeasured one stay as they are."""
    def run(ev):
        v, e = judge(ev)
        swapped = {HOLDS: REFUTED, REFUTED: HOLDS}.get(v, v)
        return swapped, e + ([why] if why else [])
    run.needs = getattr(judge, "needs", frozenset())
    return run
