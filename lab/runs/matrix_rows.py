"""One row of the matrix per measured thing on one backend, as plain JSON: what `lab matrix`
prints, shards carry, and `--merge` joins. A fire's row says what the CPU delivered where it
differs from the manual, and the recorded deviations (upstream cause, fix) it was judged by."""

from __future__ import annotations

from lab.checks.deviation import OUTCOME_PASS, version_of
from lab.scenarios import deviations
from lab.x86.vectors import PF, mnemonic


def observed_text(obs) -> str:
    """What the CPU delivered, briefly: "#GP(0x0)", "#GP(0x0) CR2=0x8000000000000000",
    "no exception"."""
    d = obs.delivered
    if d is None:
        return "timeout" if obs.timeout else "no exception"
    text = mnemonic(d["vector"]) + (f"({d['error_code']:#x})" if d["error_code"] is not None else "")
    cr2 = (obs.entry or d).get("cr2")
    if d["vector"] != PF and cr2 is not None and cr2 != obs.before.get("cr2", cr2):
        text += f" CR2={cr2:#x}"
    return text


def fire_row(r) -> dict:
    obs = r.observation
    recorded = deviations.applicable(r.scenario.name, obs.accel, version_of(obs.qemu))
    return {"kind": "fire", "id": f"{r.scenario.name} {obs.style}", "outcome": r.outcome, "note": r.note,
            "observed": "" if r.outcome == OUTCOME_PASS else observed_text(obs),
            "recorded": [{"summary": d.summary, "cause": d.cause, "fixed_in": d.fixed_text,
                          "range": d.range_text} for d in recorded]}


def probe_row(r) -> dict:
    failing = [c.title for c in r.checks if c.verdict.value == "FAIL"]
    return {"kind": "probe", "id": r.probe.name, "outcome": r.verdict.value, "note": "; ".join(failing),
            "observed": "", "recorded": []}


def claim_rows(claims: list[dict]) -> list[dict]:
    return [{"kind": "claim", "id": c["id"], "outcome": c["verdict"],
             "note": "; ".join(c["evidence"])[:400], "observed": "", "recorded": []} for c in claims]


def skip_row(kind: str, ident: str, why: str) -> dict:
    return {"kind": kind, "id": ident, "outcome": "SKIP", "note": why, "observed": "", "recorded": []}
