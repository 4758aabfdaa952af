"""Every check `lab inspect` runs: the generic tier, then the lab-kernel tier."""

from __future__ import annotations

from lab.checks import generic, labkernel
from lab.checks.base import Check
from lab.checks.view import View


def run_all(view: View) -> list[Check]:
    return generic.run(view) + labkernel.run(view)
