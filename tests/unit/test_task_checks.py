"""Task and context-switch checks, on an observation recorded from the real kernel (TCG):
everything passes as recorded, and each check FAILs when one fact is made wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.checks.base import Verdict
from lab.checks.tasks import run
from lab.experiments.tasks import SwitchTrace, TasksObservation, TaskView

RECORDED = json.loads((Path(__file__).parent / "data" / "tasks_observation_tcg.json").read_text())


def load(mutate=None) -> TasksObservation:
    d = copy.deepcopy(RECORDED)
    if mutate:
        mutate(d)
    return TasksObservation(
        profile=d["profile"], layouts=d["layouts"], current=d["current"], rsp0=d["rsp0"],
        tasks=[TaskView(**t) for t in d["tasks"]],
        traces=[SwitchTrace(**{**t, "steps": [tuple(s) for s in t["steps"]]}) for t in d["traces"]],
        rates=d["rates"])


def verdicts(mutate=None):
    return {c.id: c.verdict for c in run(load(mutate))}


def test_recorded_observation_passes():
    v = verdicts()
    assert set(v.values()) == {Verdict.PASS}, {k: x for k, x in v.items() if x is not Verdict.PASS}
    assert len([k for k in v if k.startswith("tasks.switch")]) == 12


def _task(d, name):
    return next(t for t in d["tasks"] if TaskView(**t).name == name)


def _trace(d, n):
    return d["traces"][n - 1]


def _process_trace(d):
    return next(i + 1 for i, t in enumerate(d["traces"]) if t["prev"]["cr3"] != t["next"]["cr3"])


def _thread_trace(d):
    return next(i + 1 for i, t in enumerate(d["traces"]) if t["prev"]["cr3"] == t["next"]["cr3"])


def set_in(path, value):
    def mutate(d):
        target = d
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value
    return mutate


def shift_trace_step(d, n=1):
    t = _trace(d, n)
    i = next(i for i, (pc, _) in enumerate(t["steps"]) if pc == t["stack_pc"])
    t["steps"][i + 3][1] += 0x40  # a second jump of RSP after the switch


WRONG = [
    ("declared-size-differs", set_in(("layouts", "Task", "dwarf", "size"), 0x50), "tasks.layout-Task"),
    ("member-moved", set_in(("layouts", "SwitchFrame", "dwarf", "members", "ret"), 0x28), "tasks.layout-SwitchFrame"),
    ("percpu-member-moved", set_in(("layouts", "PerCpu", "dwarf", "members", "current"), 8), "tasks.layout-PerCpu"),
    ("current-points-elsewhere", set_in(("current",), lambda v: v + 0x48), "tasks.current"),
    ("rsp0-not-current-stack", set_in(("rsp0",), lambda v: v - 0x1000), "tasks.rsp0"),
    ("frame-returns-elsewhere", lambda d: _task(d, "alpha").update(ret_symbol="isr_de+0x4"), "tasks.frame-alpha"),
    ("saved-rsp-off-stack", lambda d: _task(d, "beta")["fields"].update(rsp=0x100000), "tasks.frame-beta"),
    ("rsp-jumps-twice", shift_trace_step, "tasks.switch1-rsp"),
    ("rsp-lands-elsewhere", lambda d: _trace(d, 2)["next"].update(rsp=0x1234), "tasks.switch2-rsp"),
    ("current-not-updated", lambda d: _trace(d, 1).update(current_after=_trace(d, 1)["prev"]["address"]),
     "tasks.switch1-current"),
    ("rsp0-not-updated", lambda d: _trace(d, 2).update(rsp0_after=0x145000 - 0x10), "tasks.switch2-current"),
    ("cr3-changed-on-thread-switch", lambda d: _trace(d, _thread_trace(d)).update(cr3_after=0x99000),
     "tasks.switch1-cr3"),
    ("cr3-kept-on-process-switch", lambda d: _trace(d, _process_trace(d)).update(
        cr3_after=_trace(d, _process_trace(d))["cr3_before"]), "tasks.switch3-cr3"),
    ("ticks-without-switches", set_in(("rates", "preempt_switches"), 0), "tasks.preemption"),
]


@pytest.mark.parametrize("case, mutate, check", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_observation_fails(case, mutate, check):
    assert verdicts(mutate)[check] is Verdict.FAIL


def _kind(check_id: str) -> str:
    """tasks.switch3-cr3 -> tasks.switch-cr3; tasks.frame-alpha -> tasks.frame."""
    import re
    check_id = re.sub(r"^tasks\.switch\d+-", "tasks.switch-", check_id)
    return "tasks.frame" if check_id.startswith("tasks.frame-") else check_id


def test_every_check_kind_has_a_failing_case():
    assert {_kind(c) for c in verdicts()} == {_kind(w[2]) for w in WRONG}
