"""`just bench`: wall-clock medians measured side by side in one run, with ratios to the floor.

The floor is QEMU booting the lab kernel straight to isa-debug-exit (`lab.exit_at_ready` on
the kernel command line), with no lab, no gdb and the same profile. The same boot from the BIOS
disk image (`cargo bootimage`) is measured beside it. Runs are interleaved (floor, inspect,
floor, inspect, ...) so every case sees the same machine load; the whole test suite, which
takes a minute, runs `--suite-runs` times after them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from lab.present.console import console, progress
from lab.host import profiles
from lab.host.bootpath import BIOS
from lab.host.build import build_kernel
from lab.machine.qemu import base_argv
from lab.host.toolchain import REPO_ROOT, gdb_binary

EXIT_AT_READY = "lab.exit_at_ready"
INSPECT_COLD = "lab inspect (cold: new QEMU + gdb, restored ready state)"
FIRE_GUEST = "lab fire all --observer guest (cold, one style, no stop per scenario)"
#: `lab inspect --cpus N` side by side: what reading every vCPU costs.
SMP_CPUS = (1, 4, 8)


def _timed(argv: list[str], expect: int, timeout: float = 120, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    elapsed = time.perf_counter() - t0
    if r.returncode != expect:
        raise SystemExit(f"bench: {' '.join(argv)} exited {r.returncode}, expected {expect}:\n"
                         f"{r.stdout.decode(errors='replace')[-4000:]}\n{r.stderr.decode(errors='replace')}")
    return elapsed


def _fire_in_running_vm(kernel, profile, runs: int) -> list[float]:
    """Per-fire wall time in one booted session: `pf-write` with the stub style, `runs`
    times after one warm-up fire, each including the checks."""
    from lab.checks.frame import run
    from lab.experiments.fire import Firer
    from lab.machine.session import Session
    from lab.scenarios.exceptions import get

    scenario = get("pf-write")
    times = []
    with Session(kernel, profile, debug_log="int" if profile.is_tcg else None) as s:
        s.boot_to_ready()
        firer = Firer(s)
        firer.fire(scenario, "stub")
        for _ in range(runs):
            t0 = time.perf_counter()
            run(firer.fire(scenario, "stub"), scenario)
            times.append(time.perf_counter() - t0)
    return times


def _smp_in_guest(kernel, profile, runs: int, cpus: int = 4) -> dict[str, list[float]]:
    """In-guest figures on `cpus` CPUs, in microseconds of guest TSC time: the AP start-up (the
    kernel's `smp ... start_cycles=`: first STARTUP IPI to the last AP online), one per boot,
    `runs` boots; the fixed-IPI round trip (`ipi <cpu> fixed`), `runs` per boot to CPU 1; and,
    beside it, a context switch on CPU 1 asked for by the boot CPU (`on 1 switch`: the post,
    the wake-up IPI, the switch, the incoming task's report), `runs` per boot."""
    from lab.machine.session import Session, Stop
    from lab.target.shell import numbers

    out: dict[str, list[float]] = {f"AP start-up, {cpus} CPUs (SIPI to last AP online)": [],
                                   "fixed IPI round trip, CPU 0 -> CPU 1 -> CPU 0": [],
                                   "context switch on CPU 1, asked by CPU 0 (on 1 switch)": []}
    startup, ipi, switch = out.keys()
    for _ in range(runs):
        with Session(kernel, profile.customized(cpus=cpus), restore=False) as s:
            s.boot_to(Stop())
            line = next(l for l in s.serial.tail(1 << 16).splitlines() if l.startswith("smp cpus="))
            f = numbers(line, "smp")
            out[startup].append(f["start_cycles"] * 1e6 / f["tsc_hz"])
            s.gdb.cont()
            s.serial.wait_prompt(5)
            for _ in range(runs):
                r = numbers(s.serial.command("ipi 1 fixed"), "ipi")
                out[ipi].append(r["round_trip_cycles"] * 1e6 / r["tsc_hz"])
                r = numbers(s.serial.command("on 1 switch"), "switch")
                out[switch].append(r["cycles"] * 1e6 / r["tsc_hz"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lab.scripts.bench", description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--suite-runs", type=int, default=3, metavar="N",
                    help="runs of the whole test suite (0 leaves it out; default: %(default)s)")
    ap.add_argument("--profile", default="tcg")
    ap.add_argument("--machines", nargs="*", default=["tcg-q35", "tcg-microvm"], metavar="PROFILE",
                    help="other machine types to boot beside the floor (default: %(default)s)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--cases", "--only", nargs="+", metavar="TEXT",
                    help="only the cases whose name contains one of these (the floor always runs)")
    ap.add_argument("--lab", metavar="PATH", help="the lab command to time (default: the console script)")
    args = ap.parse_args(argv)

    profile = profiles.load(args.profile)
    bios = profile.with_boot(BIOS)
    machines = [profiles.load(name) for name in args.machines]
    kernel = build_kernel(quiet=True, boot=BIOS)  # the ELF, and the BIOS image beside it
    # The console script itself: a version manager's shim in front of it (pyenv's costs about
    # 0.1 s a call here) is the machine's overhead, not the lab's; `lab --help` shows both.
    lab = str(Path(sysconfig.get_path("scripts")) / "lab")
    if not Path(lab).is_file():
        lab = shutil.which("lab") or sys.exit("bench: the `lab` command is not installed")
    shim = shutil.which("lab")
    if args.lab:
        lab, shim = args.lab, None
    on = ["--profile", profile.name, "--json"]
    cases = {
        "floor: bare QEMU boot to isa-debug-exit": (base_argv(profile, kernel, EXIT_AT_READY) + ["-serial", "null"], 1),
        "BIOS image: bare QEMU boot to isa-debug-exit (SeaBIOS + bootloader 0.9)":
            (base_argv(bios, kernel, EXIT_AT_READY) + ["-serial", "null"], 1),
        **{f"machine {m.machine.split(',')[0]}: bare QEMU boot to isa-debug-exit":
           (base_argv(m, kernel, EXIT_AT_READY) + ["-serial", "null"], 1) for m in machines},
        "gdb start (gdb --batch, no target)": ([gdb_binary(), "--nx", "--batch"], 0),
        "lab --help (Python start and the CLI's imports)": ([lab, "--help"], 0),
        **({"lab --help through the `lab` on PATH (pyenv's shim)": ([shim, "--help"], 0)}
           if shim and Path(shim).resolve() != Path(lab).resolve() else {}),
        "lab build (no-op)": ([lab, "build"], 0),
        "lab build --boot bios (no-op: image fresh, bootimage skipped)": ([lab, "build", "--boot", "bios"], 0),
        INSPECT_COLD: ([lab, "inspect", *on], 0),
        "lab inspect --fresh (cold: new QEMU + gdb, booted)": ([lab, "inspect", "--fresh", *on], 0),
        "lab inspect, first run of a build (boot, park, save, then restore)": ([lab, "inspect", *on], 0, "new-states"),
        "lab inspect --boot bios (cold, restored)": ([lab, "inspect", "--boot", "bios", *on], 0),
        "lab inspect --boot bios --fresh (cold, booted)": ([lab, "inspect", "--boot", "bios", "--fresh", *on], 0),
        **{f"lab inspect --profile {m.name} (cold, restored)": ([lab, "inspect", "--profile", m.name, "--json"], 0)
           for m in machines},
        **{f"lab inspect --cpus {n} (cold, restored)": ([lab, "inspect", "--cpus", str(n), *on], 0)
           for n in SMP_CPUS},
        **{f"lab inspect --cpus {n} --fresh (cold, booted)": ([lab, "inspect", "--cpus", str(n), "--fresh", *on], 0)
           for n in SMP_CPUS},
        "lab fire pf-write (cold)": ([lab, "fire", "pf-write", *on], 0),
        "lab fire all (cold, one style)": ([lab, "fire", "all", *on], 0),
        FIRE_GUEST: ([lab, "fire", "all", "--observer", "guest", *on], 0),
        "lab fire all --observer gdb (cold, one style, a stop per event)":
            ([lab, "fire", "all", "--observer", "gdb", *on], 0),
        "lab fire all --style both (cold)": ([lab, "fire", "all", "--style", "both", *on], 0),
        # Every backend (TCG on each QEMU `lab qemus` finds, KVM where usable), in parallel.
        "lab matrix (catalog both styles + probes + claims, every backend)": ([lab, "matrix", "--json"], 0),
        "lab probe df-no-ist (one triple-fault probe)": ([lab, "probe", "df-no-ist", *on], 0),
        "lab probe all (7 probes, a restored VM each)": ([lab, "probe", "all", *on], 0),
        "lab probe all --fresh (7 probes, a booted VM each)": ([lab, "probe", "all", "--fresh", *on], 0),
        "lab probe all --boot bios (restored)": ([lab, "probe", "all", "--boot", "bios", *on], 0),
        "lab probe all --boot bios --fresh (booted)": ([lab, "probe", "all", "--boot", "bios", "--fresh", *on], 0),
    }
    if args.cases:
        first = next(iter(cases))
        cases = {n: c for n, c in cases.items() if n == first or any(t in n for t in args.cases)}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as scratch:
        def env(case: tuple) -> dict | None:
            """A case marked "new-states" gets an empty state directory each run."""
            if len(case) < 3:
                return None
            return {**os.environ, "LAB_STATE_DIR": tempfile.mkdtemp(dir=scratch)}

        with progress("lab bench", total=len(cases) * (args.runs + 1)) as bar:
            for name, case in cases.items():  # warm-up, untimed: makes the saved states
                bar.advance(description=f"warm-up: {name}")
                _timed(case[0], case[1], env=env(case))
            for run in range(args.runs):
                for name, case in cases.items():
                    bar.advance(description=f"run {run + 1}/{args.runs}: {name}")
                    samples[name].append(_timed(case[0], case[1], env=env(case)))

    if not args.cases:
        samples["one fired exception in a running VM (fire+stop+decode+checks)"] = _fire_in_running_vm(
            kernel, profile, args.runs)
    if args.suite_runs and not args.cases:
        suite = [sys.executable, "-m", "pytest", str(REPO_ROOT / "tests"), "-q", "-p", "no:cacheprovider"]
        parallel, serial = [], []
        for _ in range(args.suite_runs):  # interleaved, like the cases above
            parallel.append(_timed(suite + ["-n", "auto"], 0, timeout=900))
            serial.append(_timed(suite + ["-n", "0"], 0, timeout=900))
        samples["the whole test suite, `just test` (pytest -n auto, warm build)"] = parallel
        samples["the whole test suite, one worker (pytest -n 0)"] = serial
    floor = statistics.median(samples[next(iter(cases))])
    results = [{"case": name, "median_s": statistics.median(s), "min_s": min(s), "max_s": max(s),
                "runs": len(s), "ratio_to_floor": statistics.median(s) / floor}
               for name, s in samples.items()]
    from rich.table import Table

    from lab.present.console import console

    t = Table(title=f"lab bench: profile {profile.name}, {args.runs} runs each, interleaved",
              title_justify="left")
    for col in ("case", "median", "min", "max", "x floor"):
        t.add_column(col, justify="left" if col == "case" else "right")
    for r in results:
        t.add_row(r["case"], f"{r['median_s'] * 1000:.0f} ms", f"{r['min_s'] * 1000:.0f} ms",
                  f"{r['max_s'] * 1000:.0f} ms", f"{r['ratio_to_floor']:.1f}")
    out = console()
    out.print(t)
    medians = {r["case"]: r["median_s"] for r in results}
    if FIRE_GUEST in medians and INSPECT_COLD in medians:
        out.print(f"lab fire all with the in-guest observer / lab inspect, both cold: "
                  f"{medians[FIRE_GUEST] / medians[INSPECT_COLD]:.2f}x "
                  f"({medians[FIRE_GUEST] * 1000:.0f} ms / {medians[INSPECT_COLD] * 1000:.0f} ms, "
                  f"medians of {args.runs}, same run)")
    guest = {}
    if not args.cases or any(t in "--cpus in-guest" for t in args.cases):
        guest = {name: {"median_us": statistics.median(v), "min_us": min(v), "max_us": max(v), "runs": len(v)}
                 for name, v in _smp_in_guest(kernel, profile, args.runs).items()}
        g = Table(title="in the guest (TSC), microseconds", title_justify="left")
        for col in ("figure", "median", "min", "max", "runs"):
            g.add_column(col, justify="left" if col == "figure" else "right")
        for name, r in guest.items():
            g.add_row(name, f"{r['median_us']:.0f} us", f"{r['min_us']:.0f} us", f"{r['max_us']:.0f} us", str(r["runs"]))
        out.print(g)
    if args.json:
        Path(args.json).write_text(json.dumps({"profile": profile.name, "results": results, "in_guest": guest},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
