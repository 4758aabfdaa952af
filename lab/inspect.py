"""`lab inspect`: boot, stop at ready, read and decode the tables, run the checks."""

from __future__ import annotations

import time
from pathlib import Path

from lab.checks import decode, run_all
from lab.machine.session import Session, Stop
from lab.profiles import Profile
from lab.report import InspectReport
from lab.target import read_state, require_long_mode


def inspect(kernel: Path | None, profile: Profile, *, log_dir: Path | None = None,
            ready_timeout: float = 10.0, stop: Stop = Stop(), append: str | None = None,
            image: Path | None = None, symbols: Path | None = None,
            restore: bool | None = None) -> InspectReport:
    """Boots, stops (at the lab kernel's ready point, or `stop`), reads and checks the tables.
    Any x86-64 kernel: symbols are optional, and only the generic tier needs none. `restore`
    as Session's (a stop other than the ready point always boots)."""
    t0 = time.monotonic()
    with Session(kernel, profile, log_dir=log_dir, ready_timeout=ready_timeout, append=append,
                 image=image, symbols=symbols, restore=restore if stop.is_ready else False) as s:
        t_started = time.monotonic()
        ready = s.boot_to(stop)
        t_ready = time.monotonic()
        state = read_state(s.gdb)
        require_long_mode(state.cpu, ready)
        t_read = time.monotonic()
    view = decode(state, s.symbols)
    checks = run_all(view)
    t_done = time.monotonic()
    timings = {"restored": s.restored is not None, "start": t_started - t0, "boot_to_ready": t_ready - t_started,
               "read": t_read - t_ready, "teardown_decode_check": t_done - t_read,
               "total": t_done - t0}
    return InspectReport(kernel or image, profile.name, ready, view, checks, timings)
