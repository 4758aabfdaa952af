"""The check record and its one constructor.

A check is a pure function from an observation to a `Check`: an id, the tier it belongs to,
what it asserts (the title), a verdict and the evidence. Every check module builds its
records through one `Checks(tier)` factory, so each record of a tier is made the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"  # the check cannot be evaluated on this input; the evidence says why


@dataclass(frozen=True)
class Check:
    id: str
    tier: str
    title: str
    verdict: Verdict
    evidence: tuple[str, ...]

    def to_json(self) -> dict:
        return {"id": self.id, "tier": self.tier, "title": self.title,
                "verdict": self.verdict.value, "evidence": list(self.evidence)}


def verdict(ok: bool) -> Verdict:
    return Verdict.PASS if ok else Verdict.FAIL


def failed(checks: Iterable[Check], tolerated: Iterable[str] = ()) -> bool:
    """Whether any check FAILs, ignoring the ids in `tolerated` (recorded deviations)."""
    skip = set(tolerated)
    return any(c.verdict is Verdict.FAIL and c.id not in skip for c in checks)


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

    def problems(self, id: str, title: str, problems: list[str], ok_evidence: str) -> Check:
        """FAIL with the problems as evidence when there are any; otherwise PASS with `ok_evidence`."""
        return self.make(id, title, verdict(not problems), problems or [ok_evidence])
