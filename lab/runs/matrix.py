"""`lab matrix`: the catalog (both handler styles), the probes and the claims on every backend
the host has (each QEMU with TCG; KVM where /dev/kvm is usable), the backends in parallel (one
process each, its own VMs), joined into one table: scenario x backend -> verdict.

A backend's part is measured by `measure()` in a process of its own (multiprocessing, spawn:
nothing of the parent's state, a SIGTERM unwinds its sessions). Each backend's result is plain
JSON, so `--shard K/N` runs every N-th backend from the K-th (the order of `backends()`), and
`--merge` joins shards' JSON files into the one table, on any machine.

Outcomes per row: fires as lab/checks/deviation.py decides (PASS, STALE, DEVIATION, FAIL);
probes PASS/FAIL; claims their verdict (HOLDS, HOLDS_IF, REFUTED, UNMEASURED: information, not a
failure of the CPU); SKIP where the backend is known not to run it (scenarios.kvm_excluded: on KVM, measured on
the host by lab/experiments/kvm_probe.py, with the reason). The run fails (exit 1) on a FAIL only; a part that could not be measured is
listed among the errors.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from lab.errors import LabError, UserError
from lab.host import profiles, qemus
from lab.host.profiles import Profile
from lab.present.console import progress
from lab.runs.matrix_rows import claim_rows, fire_row, probe_row, skip_row
from lab.scenarios import kvm_excluded

FORMAT = 1
#: The bound on one backend's whole part (catalog, probes, claims): about 10x what it takes.
BACKEND_TIMEOUT = 1200.0
#: The least bound on reaching lab_ready under KVM: a nested host's boot took 18 s here under load
#: (the soak waits 30 s for KVM too).
KVM_READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Backend:
    name: str  # "tcg/10.0.2", "kvm/7.2.22"
    profile: Profile

    @property
    def accel(self) -> str:
        return self.profile.accel


def backends(*, kvm: bool = True) -> tuple[list[Backend], list[dict]]:
    """(the backends this host can run, in a fixed order: TCG on each QEMU by version, then KVM
    on the default QEMU; the ones it cannot, each with why)."""
    tcg = profiles.load("tcg")
    out = [Backend(f"tcg/{q.version_str}", tcg.with_qemu(q.name)) for q in qemus.found()]
    unavailable = []
    if kvm:
        prof = profiles.load("kvm")
        try:
            prof.check_usable()
            out.append(Backend(f"kvm/{prof.qemu_build.version_str}", prof))
        except UserError as exc:
            unavailable.append({"backend": "kvm", "why": str(exc)})
    return out, unavailable


@dataclass
class QemusResult:
    """`lab qemus`: every QEMU found; failed when there is none."""

    qemus: list

    @property
    def failed(self) -> bool:
        return not self.qemus

    def to_json(self) -> list:
        return [q.to_json() for q in self.qemus]


def find_qemus() -> QemusResult:
    return QemusResult(qemus.found())


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" with 1 <= K <= N; ValueError otherwise."""
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: K/N, e.g. 1/3") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: needs 1 <= K <= N")
    return k, n


def split(items: list, k: int, n: int) -> list:
    """Shard K of N: every N-th item from the K-th (1-based). The N shards partition `items`."""
    return items[k - 1::n]


def measure(backend: Backend, kernel: Path, *, ready_timeout: float = 10.0, restore: bool = True,
            log_dir: Path | None = None) -> dict:
    """Every part of the matrix on one backend, in this process; plain JSON. `log_dir`: keep
    the backend's logs in LOG_DIR/<backend> (`tcg-10.0.2`, ...)."""
    from lab.checks.claims import Evidence, evaluate
    from lab.runs import experiments
    from lab.runs.claims import PROBES
    from lab.runs.fire import fire_to_judge
    from lab.runs.probe import host_probe_exclusions, probe
    from lab.runs.vm import VmSpec
    from lab.scenarios import probes
    from lab.scenarios.exceptions import CATALOG, STYLES

    t0 = time.monotonic()
    prof = backend.profile
    if prof.accel == "kvm":
        ready_timeout = max(ready_timeout, KVM_READY_TIMEOUT)
    logs = None if log_dir is None else log_dir / backend.name.replace("/", "-")
    vm = VmSpec(kernel, prof, ready_timeout=ready_timeout, restore=restore, log_dir=logs)
    rows, errors = [], []
    plan = [(s, st) for s in CATALOG for st in STYLES]
    ev = Evidence()
    try:
        ev.fires, not_run = fire_to_judge(vm, plan, None if logs is None else logs / "fire")
    except LabError as exc:
        errors.append({"part": "fire", "message": str(exc)})
        not_run = {}
    fired = {(r.scenario.name, r.observation.style): r for r in ev.fires}
    for s, st in plan:  # in catalog order, each either judged or skipped with its reason
        if (s.name, st) in not_run:
            rows.append(skip_row("fire", f"{s.name} {st}", not_run[s.name, st]))
        elif (s.name, st) in fired:
            rows.append(fire_row(fired[s.name, st]))
    try:
        host_probes = host_probe_exclusions(kernel, prof)
        judged_probes = probes.CATALOG
    except LabError as exc:  # not knowing what this host runs, judge no probe on it
        errors.append({"part": "probe exclusions", "message": str(exc)})
        judged_probes = ()
    for p in judged_probes:
        why = kvm_excluded(p, prof.accel, host_probes)
        if why:
            rows.append(skip_row("probe", p.name, why))
            continue
        try:
            r = probe(vm, p)
        except LabError as exc:
            errors.append({"part": f"probe {p.name}", "message": str(exc)})
            continue
        rows.append(probe_row(r))
        if p.name in PROBES:
            ev.probes[p.name] = (r.observation, r.checks)
    for part in ("tasks", "ring3", "timer"):
        try:
            if part == "timer":
                res = experiments.timer(vm, rates=(100,), window_ms=200)
            else:
                res = getattr(experiments, part)(vm)
        except LabError as exc:
            errors.append({"part": f"claims: {part}", "message": str(exc)})
            continue
        setattr(ev, part, (res.observation, res.checks, res.extra["outcomes"]) if part == "ring3"
                else (res.observation, res.checks))
    rows += claim_rows(evaluate(ev))
    return {"backend": backend.name, "accel": prof.accel, "qemu": prof.qemu_build.version_str,
            "qemu_name": prof.qemu_build.name, "seconds": round(time.monotonic() - t0, 2),
            "rows": rows, "errors": errors}


class _Stopped(BaseException):
    """The parent ended this backend (SIGTERM): unwind, reap, report nothing."""


def _worker(conn, backend: Backend, kernel: Path, options: dict) -> None:
    """A backend's process: SIGTERM unwinds its sessions (their `finally` reaps QEMU and gdb)."""
    def on_term(signum, frame):
        raise _Stopped()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    level = options.pop("log_level", logging.WARNING)
    for name in ("asyncio", "qemu.qmp"):  # as the CLI does (lab/cli/main.py)
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if level <= logging.INFO:  # `lab -v matrix`: each backend's progress, named
        logging.basicConfig(level=level, format=f"lab [{backend.name}]: %(message)s", stream=sys.stderr)
    try:
        result = measure(backend, kernel, **options)
    except (_Stopped, KeyboardInterrupt):
        conn.close()  # the parent is stopping: it reads nothing more
        return
    except BaseException as exc:  # reported by the parent, with the backend's name
        result = {"backend": backend.name, "accel": backend.accel, "rows": [], "seconds": 0,
                  "qemu": "", "errors": [{"part": "backend", "message": f"{type(exc).__name__}: {exc}"}]}
    # Its VMs are reaped: a SIGTERM from here on (the parent's clean-up racing this process's
    # exit) just ends it, rather than raising _Stopped inside conn.send (a traceback printed
    # by multiprocessing on a run that succeeded).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        conn.send(result)
    except OSError:
        pass  # the parent is gone: nothing to report to
    conn.close()


def run_parallel(chosen: list[Backend], kernel: Path, *, timeout: float = BACKEND_TIMEOUT,
                 **options) -> list[dict]:
    """Each backend in its own process, all at once; their results in `chosen`'s order."""
    ctx = multiprocessing.get_context("spawn")
    options["log_level"] = logging.getLogger("lab").getEffectiveLevel()
    procs = []
    results: dict[str, dict] = {}
    try:
        for b in chosen:
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(child, b, kernel, options), name=f"lab-matrix {b.name}")
            p.start()
            child.close()
            procs.append((b, p, parent))
        deadline = time.monotonic() + timeout
        pending = {conn: b for b, _, conn in procs}
        with progress(f"lab matrix: {len(chosen)} backends in parallel", total=len(chosen)) as bar:
            _collect(pending, results, deadline, timeout, bar)
        return [results[b.name] for b in chosen]
    finally:
        for b, p, conn in procs:
            if b.name in results:  # it has sent its result and is exiting on its own
                p.join(10)
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker unwinds and reaps its VMs
            p.join(10)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join()
            conn.close()


def _collect(pending: dict, results: dict, deadline: float, timeout: float, bar) -> None:
    """Each backend's result as its process sends it, within the deadline."""
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LabError(f"lab matrix: {', '.join(b.name for b in pending.values())} not done "
                           f"within {timeout:g} s")
        for conn in wait(list(pending), timeout=left):
            b = pending.pop(conn)
            try:
                results[b.name] = conn.recv()
            except EOFError:
                results[b.name] = {"backend": b.name, "accel": b.accel, "rows": [], "seconds": 0, "qemu": "",
                                   "errors": [{"part": "backend", "message": "its process died"}]}
            bar.advance(description=f"lab matrix: {b.name} done")


@dataclass
class MatrixResult:
    backends: list[dict]  # measure()'s results
    all_backends: list[str] = field(default_factory=list)  # every backend of the whole matrix
    unavailable: list[dict] = field(default_factory=list)
    shard: tuple[int, int] | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(r["outcome"] == "FAIL" for b in self.backends for r in b["rows"])

    @property
    def missing(self) -> list[str]:
        """Backends of the matrix whose results are not here (a shard not merged)."""
        have = {b["backend"] for b in self.backends}
        return [n for n in self.all_backends if n not in have]

    def to_json(self) -> dict:
        return {"format": FORMAT, "shard": list(self.shard) if self.shard else None,
                "all_backends": self.all_backends, "unavailable": self.unavailable,
                "seconds": self.seconds, "backends": self.backends}


def run_matrix(kernel: Path, *, shard: tuple[int, int] | None = None, kvm: bool = True,
               ready_timeout: float = 10.0, restore: bool = True, log_dir: Path | None = None) -> MatrixResult:
    every, unavailable = backends(kvm=kvm)
    chosen = split(every, *shard) if shard else every
    t0 = time.monotonic()
    results = (run_parallel(chosen, kernel, ready_timeout=ready_timeout, restore=restore, log_dir=log_dir)
               if chosen else [])
    return MatrixResult(results, [b.name for b in every], unavailable, shard, round(time.monotonic() - t0, 2))


def merge(parts: list[dict]) -> MatrixResult:
    """Shards' JSON (MatrixResult.to_json) joined into one matrix; a backend in two shards, or
    files of another format, are a UserError."""
    backends_, seen, every, unavailable = [], set(), [], []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("format") != FORMAT:
            raise UserError(f"--merge: part {i + 1} is not a `lab matrix --json` result (format {FORMAT})")
        for b in part["backends"]:
            if b["backend"] in seen:
                raise UserError(f"--merge: backend {b['backend']} is in two parts")
            seen.add(b["backend"])
            backends_.append(b)
        every += [n for n in part.get("all_backends", []) if n not in every]
        unavailable += [u for u in part.get("unavailable", []) if u not in unavailable]
    order = {n: i for i, n in enumerate(every)}
    backends_.sort(key=lambda b: order.get(b["backend"], len(order)))
    return MatrixResult(backends_, every, unavailable, None,
                        max((p.get("seconds", 0) for p in parts), default=0))
