"""`lab tasks` on the live kernel (TCG): task table, switch frames, traced switches, rates."""

from __future__ import annotations

import json

from lab.checks.base import Verdict
from lab.checks.tasks import run
from lab.experiments.tasks import observe

from labtest import lab_cli


def test_tasks_switches_and_rates(session):
    o = observe(session)
    checks = run(o)
    assert not [c for c in checks if c.verdict is Verdict.FAIL], [(c.id, c.evidence) for c in checks if c.verdict is Verdict.FAIL]
    assert [t.name for t in o.tasks] == ["shell", "alpha", "beta", "gamma"]
    kinds = [t.prev["cr3"] != t.next["cr3"] for t in o.traces]
    assert kinds == [False, False, True, True]  # two thread switches, then into and out of the process
    assert o.rates["cooperative_per_s"] > 1000


def test_cli_tasks_json(kernel):
    r = lab_cli("tasks", "--kernel", str(kernel), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {c["verdict"] for c in out["checks"]} == {"PASS"}
