"""Evidence wording shared by the generic checks: vectors as ranges, handlers grouped."""

from __future__ import annotations

from lab.x86.vectors import mnemonic


def ranges(vectors: list[int]) -> str:
    """"vector 6 (#UD)" or "vectors 32-47, 50"."""
    vs = sorted(set(vectors))
    if len(vs) == 1:
        return f"vector {vs[0]} ({mnemonic(vs[0])})"
    runs, start = [], vs[0]
    for a, b in zip(vs, vs[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return "vectors " + ", ".join(runs)


def by_handler(gates) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for g in gates:
        out.setdefault(g.offset, []).append(g.vector)
    return out


def handlers_line(found: list[tuple[int, list[int]]], what: str) -> str:
    """One line for the handlers in `found` [(offset, vectors)] that share `what` (a phrase
    that follows "is"/"are")."""
    offsets = sorted(o for o, _ in found)
    vectors = [n for _, vs in found for n in vs]
    where = (f"handler {offsets[0]:#x} is" if len(offsets) == 1 else
             f"{len(offsets)} handlers at {offsets[0]:#x}-{offsets[-1]:#x} are")
    return f"{ranges(vectors)}: {where} {what}"


def grouped(found: list[tuple[int, list[int], str]], tail: str) -> list[str]:
    """[(offset, vectors, problem)] -> one line per problem, each ending with `tail`."""
    by: dict[str, list[tuple[int, list[int]]]] = {}
    for offset, vectors, problem in found:
        by.setdefault(problem, []).append((offset, vectors))
    return [handlers_line(items, problem + tail) for problem, items in by.items()]
