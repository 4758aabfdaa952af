"""The check record and its one constructor.

A check is a pure function from an observation to a `Check`: an id, the tier it belongs to,
what it asserts (the title), a verdict and the evidence. Every check module builds its
records through one `Checks(tier)` factory, so each record of a tier is made the same way.

Severities (docs/checks.md): FAIL is a promise that the CPU will misbehave when that
path is taken; WARN is legal but risky or unusual, and the evidence says why; INFO is noted.
Only FAIL fails a run. A waiver (`lab/checks/waivers.py`) turns an expected FAIL or WARN into
WAIVED, with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"  # the CPU will misbehave when this path is taken
    WARN = "WARN"  # legal, but risky or unusual; the evidence says why
    INFO = "INFO"  # noted: nothing the CPU will trip on
    SKIP = "SKIP"  # the check cannot be evaluated on this input; the evidence says why
    WAIVED = "WAIVED"  # an expected FAIL or WARN, waived with a reason (the evidence ends with it)


#: The graded verdicts, worst first: a check's verdict is its worst finding.
SEVERITY = (Verdict.FAIL, Verdict.WARN, Verdict.INFO)


@dataclass(frozen=True)
class Check:
    id: str
    tier: str
    title: str
    verdict: Verdict
    evidence: tuple[str, ...]
    #: for a WAIVED check: the verdict it had before the waiver
    waived_from: Verdict | None = None

    def to_json(self) -> dict:
        out = {"id": self.id, "tier": self.tier, "title": self.title,
               "verdict": self.verdict.value, "evidence": list(self.evidence)}
        if self.waived_from is not None:
            out["waived_from"] = self.waived_from.value
        return out


def verdict(ok: bool) -> Verdict:
    return Verdict.PASS if ok else Verdict.FAIL


def failed(checks: Iterable[Check], tolerated: Iterable[str] = ()) -> bool:
    """Whether any check FAILs, ignoring the ids in `tolerated` (recorded deviations). WARN,
    INFO, SKIP and WAIVED never fail a run."""
    skip = set(tolerated)
    return any(c.verdict is Verdict.FAIL and c.id not in skip for c in checks)


def summary(checks: Iterable[Check]) -> dict[str, int]:
    """How many checks have each verdict, every verdict named (zeros included)."""
    checks = list(checks)
    return {v.value: sum(1 for c in checks if c.verdict is v) for v in Verdict}


class Checks:
    """The constructor of one tier's `Check` records."""

    def __init__(self, tier: str) -> None:
        self.tier = tier

    def make(self, id: str, title: str, verdict_: Verdict, evidence: Iterable[str]) -> Check:
        return Check(id, self.tier, title, verdict_, tuple(evidence))

    def result(self, id: str, title: str, ok: bool, evidence: Iterable[str]) -> Check:
        """PASS when `ok`, FAIL otherwise."""
        return self.make(id, title, verdict(ok), evidence)

    def skip(self, id: str, title: str, why: str) -> Check:
        return self.make(id, title, Verdict.SKIP, (why,))

    def fail(self, id: str, title: str, evidence: Iterable[str]) -> Check:
        return self.make(id, title, Verdict.FAIL, evidence)

    def warn(self, id: str, title: str, evidence: Iterable[str]) -> Check:
        """Legal but risky or unusual: the evidence says why."""
        return self.make(id, title, Verdict.WARN, evidence)

    def info(self, id: str, title: str, evidence: Iterable[str]) -> Check:
        """Noted, not a problem."""
        return self.make(id, title, Verdict.INFO, evidence)

    def problems(self, id: str, title: str, problems: list[str], ok_evidence: str) -> Check:
        """FAIL with the problems as evidence when there are any; otherwise PASS with `ok_evidence`."""
        return self.make(id, title, verdict(not problems), problems or [ok_evidence])

    def findings(self, id: str, title: str, ok_evidence: str, *, fail: Iterable[str] = (),
                 warn: Iterable[str] = (), info: Iterable[str] = (), context: str = "") -> Check:
        """The worst severity with a finding (FAIL, then WARN, then INFO), or PASS with
        `ok_evidence`. The evidence lists every finding, worst first; when they are of more
        than one severity, each line starts with its own ("WARN: ..."). `context`, when
        given, ends the evidence of a check that does not FAIL (what was fine)."""
        graded = [(sev, list(lines)) for sev, lines in zip(SEVERITY, (fail, warn, info))]
        graded = [(sev, lines) for sev, lines in graded if lines]
        if not graded:
            return self.make(id, title, Verdict.PASS, (ok_evidence,))
        mixed = len(graded) > 1
        evidence = [f"{sev.value}: {line}" if mixed else line for sev, lines in graded for line in lines]
        worst = graded[0][0]
        if context and worst is not Verdict.FAIL:
            evidence.append(context)
        return self.make(id, title, worst, evidence)
