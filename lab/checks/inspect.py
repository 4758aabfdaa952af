"""Every check `lab inspect` runs: the tables not set yet (lab/checks/unset.py), the generic
tier and the lab-kernel tier (SKIP where a table is missing), then, on a machine
with several CPUs, the cross-CPU checks (lab/checks/smp.py)."""

from __future__ import annotations

from lab.checks import generic, labkernel, smp, smp_labkernel, unset
from lab.checks.base import Check
from lab.checks.view import View


def run_all(view: View, cpus: list[smp.CpuView] = ()) -> list[Check]:
    """`view`: the boot CPU's; `cpus`: every CPU's (lab/checks/smp.py views), or none."""
    cpus = list(cpus)
    own = generic.run(view) + labkernel.run(view)
    return unset.judge(view, own) + smp.run(cpus) + smp_labkernel.run(cpus, view.symbols)
