"""What every runner returns: the observation, the checks on it, and how the run is judged.

A `RunResult` prints as JSON (`to_json`, the CLI's --json) and says whether it `failed` (the
CLI's exit status 1): a FAIL among its checks that is not a recorded deviation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.checks import base
from lab.checks.base import Check


@dataclass
class RunResult:
    name: str  # the command: timer, tasks, ...
    profile: str
    observation: Any
    checks: list[Check] = field(default_factory=list)
    tolerated: frozenset[str] = frozenset()  # check ids whose FAIL is a recorded deviation
    extra: dict = field(default_factory=dict)  # further JSON members (e.g. ring3's outcomes)

    @property
    def failed(self) -> bool:
        return base.failed(self.checks, self.tolerated)

    def to_json(self) -> dict:
        return {"observation": self.observation.to_json(), "checks": [c.to_json() for c in self.checks],
                **self.extra}
