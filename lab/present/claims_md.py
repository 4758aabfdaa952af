"""`lab claims --markdown`: one Markdown table per tutorial text (docs/reference/claims.md is this
output, pasted from a run): the claim, its verdict (holds / holds only if … / refuted) and its
evidence in one line, under the backends the kernel trials ran on."""

from __future__ import annotations

from lab.checks.claim_evidence import HOLDS, HOLDS_IF, REFUTED, UNMEASURED
from lab.checks.seedclaims import SEEDS

GENERAL = "general"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def condition(evidence: list[str]) -> str | None:
    """The condition a conditional verdict's evidence names: the backends it holds on (a first
    line `only on ...`), else what follows `condition: `, else an `only ...` clause, else the
    last line."""
    if evidence and evidence[0].startswith("only on "):
        return evidence[0]
    for e in evidence:
        if "condition: " in e:
            return e.split("condition: ", 1)[1]
    for e in evidence:
        for part in e.split("; "):
            if part.startswith("only"):
                return part
    return evidence[-1] if evidence else None


def verdict_words(claim: dict) -> str:
    """holds / holds only if <the condition the evidence names> / refuted / not measured."""
    v = claim["verdict"]
    if v != HOLDS_IF:
        return {HOLDS: "holds", REFUTED: "refuted", UNMEASURED: "not measured"}.get(v, v)
    cond = condition(claim["evidence"])
    return f"holds only if: {cond}" if cond else "holds only under a condition"


def _table(claims: list[dict], with_section: bool) -> list[str]:
    head = "| claim | section | statement | verdict | evidence |" if with_section else "| claim | statement | verdict | evidence |"
    rows = [head, "|" + " --- |" * head.count(" | ")]
    rows[1] = "|" + " --- |" * (5 if with_section else 4)
    for c in claims:
        cells = [c["id"]] + ([c["section"]] if with_section else []) + [
            c["statement"], verdict_words(c), " · ".join(c["evidence"])]
        rows.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return rows


def counts(claims: list[dict]) -> str:
    n = {v: sum(1 for c in claims if c["verdict"] == v) for v in (HOLDS, HOLDS_IF, REFUTED, UNMEASURED)}
    return (f"{len(claims)} claims: {n[HOLDS]} hold, {n[HOLDS_IF]} hold only under a condition, "
            f"{n[REFUTED]} refuted" + (f", {n[UNMEASURED]} not measured" if n[UNMEASURED] else ""))


def markdown(result) -> str:
    by: dict[str, list[dict]] = {}
    for c in result.claims:
        by.setdefault(c.get("seed", GENERAL), []).append(c)
    out = [f"Kernel trials on: {', '.join(result.backends) or 'none'}; the other experiments on profile "
           f"{result.profile}.", ""]
    for seed, claims in by.items():
        title = SEEDS[seed][0] if seed in SEEDS else "general claims"
        out += [f"#### `{seed}`: {title}", "", counts(claims), ""]
        out += _table(claims, seed in SEEDS) + [""]
    return "\n".join(out)
