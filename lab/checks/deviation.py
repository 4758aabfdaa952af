"""One fire's outcome: the manual, or the deviations recorded for its accelerator and QEMU
version (lab/scenarios/deviations.py), or neither.

PASS       every check passes, and nothing is recorded against this version;
STALE      every check passes, but a deviation is recorded for this version: the CPU now
           follows the manual and the record is wrong here (said in the note; not a failure);
DEVIATION  a check fails exactly as this version's recorded deviations say (the note names the
           measured version, the upstream cause and the fix);
FAIL       anything else, among them a deviation that is not recorded for this version (the
           note says so, and names the versions the record has it for).
"""

from __future__ import annotations

from itertools import combinations

from lab.checks.base import Verdict
from lab.host.qemus import parse_version_text
from lab.scenarios.deviations import AS_MANUAL, NO_EXCEPTION, Deviation, applicable
from lab.x86.vectors import pushes_error_code

OUTCOME_PASS, OUTCOME_FAIL, OUTCOME_DEVIATION, OUTCOME_STALE = "PASS", "FAIL", "DEVIATION", "STALE"
OUTCOMES = (OUTCOME_PASS, OUTCOME_STALE, OUTCOME_DEVIATION, OUTCOME_FAIL)
_ANY = object()


def version_of(text: str | None):
    """"10.0.2" as (10, 0, 2); None for an unknown version."""
    try:
        return parse_version_text(text) if text else None
    except ValueError:
        return None


def backend_name(obs) -> str:
    return f"{obs.accel.upper()} QEMU {obs.qemu or '(version unknown)'}"


def expected(obs, s, devs: tuple[Deviation, ...] = ()) -> dict:
    """What the CPU delivers by the manual, with `devs` applied: vector, error code, CR2."""
    exp = {"vector": s.vector,
           "error_code": s.error_code if pushes_error_code(s.vector) and not s.software else None,
           "cr2": obs.expected_cr2 if obs.expected_cr2 is not None else obs.before.get("cr2", _ANY)}
    for d in devs:
        if d.vector is not AS_MANUAL and d.vector != exp["vector"]:
            exp["vector"] = d.vector
            exp["error_code"] = _ANY  # unless the deviation names it too
        for key in ("error_code", "cr2"):
            value = getattr(d, key)
            if value != AS_MANUAL:
                exp[key] = value
    return exp


def observed(obs) -> dict | None:
    """What the CPU delivered (None: nothing at all)."""
    if obs.delivered is None:
        return None
    cr2 = obs.entry["cr2"] if obs.entry else obs.delivered.get("cr2", _ANY)
    return {"vector": obs.delivered["vector"], "error_code": obs.delivered["error_code"], "cr2": cr2}


def matches(obs, s, devs: tuple[Deviation, ...]) -> bool:
    exp, got = expected(obs, s, devs), observed(obs)
    if exp["vector"] is NO_EXCEPTION:
        return got is None
    if got is None:
        return False
    return all(exp[k] is _ANY or got[k] is _ANY or exp[k] == got[k] for k in exp)


def observable(obs, s, d: Deviation) -> bool:
    """Whether this run could show `d`: a deviation in CR2 alone needs CR2 from before the
    event (the gdb observer's sentinel), which the guest observer does not have."""
    only_cr2 = d.vector == AS_MANUAL and d.error_code == AS_MANUAL and d.cr2 != AS_MANUAL
    return not (only_cr2 and expected(obs, s)["cr2"] is _ANY)


def outcome(obs, s, checks) -> tuple[str, str]:
    """(outcome, note) of one fire: see the module's docstring."""
    version = version_of(getattr(obs, "qemu", ""))
    recorded = applicable(s.name, obs.accel, version)
    where = backend_name(obs)
    if not any(c.verdict is Verdict.FAIL for c in checks):
        seeable = [d for d in recorded if observable(obs, s, d)]
        if seeable and not obs.timeout:
            return OUTCOME_STALE, "; ".join(
                f"recorded deviation not seen on {where}: {d.summary} (recorded for {d.range_text}; "
                f"{d.cause})" for d in seeable)
        return OUTCOME_PASS, "; ".join(
            f"recorded deviation not measurable in this run ({obs.observer} observer: CR2 before the "
            f"event unknown): {d.summary}" for d in recorded if d not in seeable)
    if obs.timeout:
        return OUTCOME_FAIL, ""
    for n in range(len(recorded), 0, -1):
        for seen in combinations(recorded, n):
            if matches(obs, s, seen):
                note = "; ".join(d.note(obs.qemu or "?") for d in seen)
                unseen = [d.summary for d in recorded if d not in seen]
                return OUTCOME_DEVIATION, note + "".join(f"; recorded but not seen on {where}: {u}" for u in unseen)
    others = [d for d in s.deviations if d not in recorded and matches(obs, s, (d,))]
    if others:
        return OUTCOME_FAIL, "; ".join(
            f"unrecorded deviation on {where}: {d.summary}, recorded only for {d.accel.upper()} "
            f"{d.range_text} ({d.cause})" for d in others)
    if not matches(obs, s, ()):
        got, exp = observed(obs), expected(obs, s)
        return OUTCOME_FAIL, f"unrecorded deviation on {where}: delivered {_describe(got)}, the manual {_describe(exp)}"
    return OUTCOME_FAIL, ""


def _describe(event: dict | None) -> str:
    if event is None:
        return "no exception"
    parts = [f"vector {event['vector']}"]
    for key in ("error_code", "cr2"):
        if event[key] is not _ANY and event[key] is not None:
            parts.append(f"{key.replace('_', ' ')} {event[key]:#x}")
    return ", ".join(parts)
