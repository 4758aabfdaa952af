"""The tutorial texts on trial: every statement of the five seed texts (shared/seeds/) that the
CPU can decide, in the lab's own words, tagged with its text and section, each decided by
measurement like the general claims (lab/checks/claims.py).

One module per text (s000 ... s004) lists its claims; a claim's judge is a function of the
run's Evidence, marked with the experiments it weighs (`needs`), so `lab claims --seed FILE`
runs only those. Judges of the kernel trials are folded over every backend that ran them
(backends.py): each claim's evidence names the accelerator and the QEMU version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lab.checks.claim_evidence import judged
from lab.errors import UserError

from . import s000, s001, s002, s003, s004

#: Every kind of evidence a judge can need (lab/runs/claims.py collects each).
KINDS = frozenset({"fires", "probes", "tasks", "ring3", "timer", "trials"})


@dataclass(frozen=True)
class SeedClaim:
    id: str
    seed: str  # the text's file name in shared/seeds/
    section: str  # where in the text the statement is
    statement: str  # the lab's wording
    judge: Callable

    @property
    def needs(self) -> frozenset:
        return getattr(self.judge, "needs", KINDS)


def _claims(module) -> tuple[SeedClaim, ...]:
    return tuple(SeedClaim(f"{module.PREFIX}-{cid}", module.SEED, section, statement, judge)
                 for cid, section, statement, judge in module.CLAIMS)


#: seed file name -> (its title, its claims)
SEEDS: dict[str, tuple[str, tuple[SeedClaim, ...]]] = {
    m.SEED: (m.TITLE, _claims(m)) for m in (s000, s001, s002, s003, s004)}

ALL: tuple[SeedClaim, ...] = tuple(c for _, cs in SEEDS.values() for c in cs)
assert len({c.id for c in ALL}) == len(ALL), "seed claim ids must be unique"


def resolve(name: str) -> str:
    """A seed text named by its file name, a path to it, or its number (`002`)."""
    base = name.rsplit("/", 1)[-1]
    hits = [s for s in SEEDS if s == base or s.split("_", 1)[0] == base or s.startswith(base)]
    if len(hits) != 1:
        raise UserError(f"unknown seed text {name!r}; seeds: {', '.join(SEEDS)}")
    return hits[0]


def needs(claims) -> frozenset:
    return frozenset().union(*(c.needs for c in claims)) if claims else frozenset()


def evaluate(ev, claims) -> list[dict]:
    out = []
    for c in claims:
        verdict, evidence = judged(c, ev)
        out.append({"id": c.id, "topic": f"{c.seed} · {c.section}", "seed": c.seed, "section": c.section,
                    "statement": c.statement, "verdict": verdict, "evidence": evidence})
    return out
