"""`lab inspect`: boot, stop at ready, read and decode the tables, run the checks."""

from __future__ import annotations

import time
from pathlib import Path

from lab.checks import decode, run_all
from lab.machine.session import Session
from lab.profiles import Profile
from lab.report import InspectReport
from lab.target import read_state


def inspect(kernel: Path, profile: Profile, *, log_dir: Path | None = None,
            ready_timeout: float = 10.0) -> InspectReport:
    t0 = time.monotonic()
    with Session(kernel, profile, log_dir=log_dir, ready_timeout=ready_timeout) as s:
        t_started = time.monotonic()
        ready = s.boot_to_ready()
        t_ready = time.monotonic()
        state = read_state(s.gdb)
        t_read = time.monotonic()
    view = decode(state, s.symbols)
    checks = run_all(view)
    t_done = time.monotonic()
    timings = {"start": t_started - t0, "boot_to_ready": t_ready - t_started,
               "read": t_read - t_ready, "teardown_decode_check": t_done - t_read,
               "total": t_done - t0}
    return InspectReport(kernel, profile.name, ready, view, checks, timings)
