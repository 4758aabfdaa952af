"""Checks: pure functions from observations to `Check` records (`base.py`: the record and its
one constructor).

Inspect's two tiers are shown apart: `generic` checks hold for any correct x86-64 kernel;
`labkernel` checks compare the live state with what the lab's own kernel declares in its
ELF (the contract in kernel/CONTRACT.md) and run only when those declarations are present.
The other modules judge one experiment each (frame, inject, probe, timer, tasks, ring3,
pcpu); `claims` decides the tutorials' statements from their evidence.
"""
