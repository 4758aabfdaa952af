"""Observations recorded on the real lab kernel (tests/unit/data), and the fire results the
claims' judges read, rebuilt from them; `mutate(key, raw)` alters a recorded fire first."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from lab.checks.frame import outcome, run as frame_checks
from lab.experiments.fire import FireObservation
from lab.runs.fire import FireResult
from lab.scenarios.exceptions import get

DATA = Path(__file__).parent / "data"
FIRES = json.loads((DATA / "fire_observations_tcg.json").read_text())
TASKS = json.loads((DATA / "tasks_observation_tcg.json").read_text())
RING3 = json.loads((DATA / "ring3_observation_tcg.json").read_text())


def fires(mutate=None) -> list[FireResult]:
    out = []
    for key, raw in FIRES.items():
        raw = copy.deepcopy(raw)
        if mutate:
            mutate(key, raw)
        obs = FireObservation(**raw)
        s = get(obs.scenario)
        checks = frame_checks(obs, s)
        out.append(FireResult(s, obs, checks, *outcome(obs, s, checks), 0.04))
    return out
