"""Waivers: findings the user expects, by check id, each with a reason (the `lab.toml` the CLI
reads holds them).

A waived FAIL or WARN becomes WAIVED, its evidence ending with the reason, and no longer fails
the run. A waiver that matched no FAIL or WARN is unused, and returned so the caller can say
so: the finding it was written for is gone, or the id is misspelt.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from lab.checks.base import Check, Verdict
from lab.errors import UserError

#: The verdicts a waiver can waive.
WAIVABLE = (Verdict.FAIL, Verdict.WARN)


def waived_evidence(reason: str) -> str:
    return f"waived: {reason}"


def apply_waivers(checks: Iterable[Check], waivers: Mapping[str, str]) -> tuple[list[Check], dict[str, str]]:
    """(the checks with every waived FAIL or WARN as WAIVED, the unused waivers as
    {check id: reason}, in the order given). A waiver needs a non-empty reason."""
    for id, reason in waivers.items():
        if not isinstance(id, str) or not id.strip():
            raise UserError(f"a waiver needs a check id, not {id!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise UserError(f"the waiver for {id} needs a reason (why this finding is expected)")
    used: set[str] = set()
    out = []
    for c in checks:
        reason = waivers.get(c.id)
        if reason is not None and c.verdict in WAIVABLE:
            used.add(c.id)
            c = dataclasses.replace(c, verdict=Verdict.WAIVED, waived_from=c.verdict,
                                    evidence=(*c.evidence, waived_evidence(reason.strip())))
        out.append(c)
    return out, {id: reason for id, reason in waivers.items() if id not in used}
