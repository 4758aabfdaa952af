"""The compact terminal forms: IDT rows with identical neighbours grouped, `--vectors`
selections, one line per fire, and the catalogs as rows (for their tables and --json)."""

from __future__ import annotations

import re

from lab.x86.vectors import MAX_VECTOR

#: Gates are grouped when these agree and their handlers share a symbol (up to +offset).
SAME_GATE = ("type", "dpl", "ist", "selector", "present")


def vector_list(text: str) -> set[int]:
    """`0-31,0x80,255` -> the vectors; ValueError naming the bad part."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            lo, dash, hi = part.partition("-")
            a, b = int(lo, 0), int(hi, 0) if dash else int(lo, 0)
        except ValueError:
            raise ValueError(f"--vectors: {part!r} is not a vector or a range like 32-47") from None
        if not (0 <= a <= b <= MAX_VECTOR):
            raise ValueError(f"--vectors: {part!r} is outside 0-{MAX_VECTOR} or backwards")
        out.update(range(a, b + 1))
    return out


def _symbol_base(symbol: str) -> str:
    return re.sub(r"\+0x[0-9a-f]+$", "", symbol)


#: Handlers without symbols are grouped when they step by one stride at most this long: an
#: array of entry stubs (Linux's irq_entries_start is 8 bytes a vector).
MAX_STUB_STRIDE = 64


def _continues(prev: dict, r: dict) -> bool:
    """Whether gate row `r` extends the run that ends with `prev` (a row or a grouped row)."""
    if not (r["vector"] >= 32 and prev["vector"] >= 32 and r["vector"] == prev.get("last_vector", prev["vector"]) + 1
            and all(r[k] == prev[k] for k in SAME_GATE)):
        return False
    if r["symbol"] or prev["symbol"]:
        return _symbol_base(r["symbol"]) == _symbol_base(prev["symbol"]) != ""
    step = r["handler"] - prev.get("last_handler", prev["handler"])
    return step == prev.get("stride", step) and 0 < step <= MAX_STUB_STRIDE


def group_gates(rows: list[dict]) -> list[dict]:
    """Runs of consecutive vectors whose gates agree (SAME_GATE) and whose handlers share a
    symbol (up to +offset) or, without symbols, step by one stride (an array of stubs), as one
    row with `last_vector`, `last_handler` and `count`; a run of one stays as it is. The
    exception vectors (0-31) are never grouped: each has its own meaning."""
    out: list[dict] = []
    for r in rows:
        prev = out[-1] if out else None
        if prev is not None and _continues(prev, r):
            prev["stride"] = r["handler"] - prev.get("last_handler", prev["handler"])
            prev["last_vector"], prev["count"] = r["vector"], prev.get("count", 1) + 1
            prev["last_handler"] = r["handler"]
            continue
        out.append(dict(r))
    return out


def scenario_rows(catalog) -> list[dict]:
    return [{"name": s.name, "vector": s.vector, "summary": s.summary,
             "deviations": [f"{d.accel.upper()} {d.range_text}: {d.summary}" for d in s.deviations]}
            for s in catalog]


def probe_rows(catalog) -> list[dict]:
    return [{"name": p.name, "expected": p.expected, "chain": list(p.chain), "summary": p.summary}
            for p in catalog]


def profile_rows(profiles) -> list[dict]:
    return [{"name": p.name, "accel": p.accel, "description": p.description} for p in profiles]
