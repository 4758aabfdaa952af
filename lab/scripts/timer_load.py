"""`lab timer` with every core busy: the pass rate of N runs while one busy loop per core
spins beside them. Not part of the test suite (tests/integration/test_timer.py has a one-run
version).

Each busy loop is a Python process that spins until its deadline (bounded: it ends by itself
even if this script is killed) and is reaped in a `finally`. Runs are consecutive; each is
`python3 -m lab timer --json` with this interpreter, so PYTHONPATH chooses whose `lab` runs.

    python3 -m lab.scripts.timer_load --runs 20
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

#: A busy loop that ends by itself at its deadline (seconds from its start).
SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def busy_cores(count: int, seconds: float):
    """`count` busy loops, each bounded by `seconds`, killed and reaped on the way out."""
    procs = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()


def run_timer(args: list[str], timeout: float) -> tuple[int, dict | None, str]:
    """One `lab timer --json`: its exit status, its JSON (None if it printed none) and stderr."""
    try:
        r = subprocess.run([sys.executable, "-m", "lab", "timer", "--json", *args], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return -1, None, f"timed out after {timeout:g} s"
    try:
        return r.returncode, json.loads(r.stdout), r.stderr
    except ValueError:
        return r.returncode, None, r.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lab.scripts.timer_load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy loops (default: one per core)")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound on one `lab timer` run, seconds")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("lab_args", nargs=argparse.REMAINDER, help="after `--`: options for `lab timer`")
    a = ap.parse_args(argv)
    lab_args = a.lab_args[1:] if a.lab_args[:1] == ["--"] else a.lab_args
    passed, failures, errors, seconds = 0, collections.Counter(), [], []
    examples: dict[str, str] = {}
    with busy_cores(a.busy, a.runs * a.timeout):
        for i in range(a.runs):
            t0 = time.perf_counter()
            code, out, stderr = run_timer(lab_args, a.timeout)
            seconds.append(time.perf_counter() - t0)
            failed = [c for c in out["checks"] if c["verdict"] == "FAIL"] if out else []
            for c in failed:
                failures[c["id"]] += 1
                examples.setdefault(c["id"], "; ".join(c["evidence"]))
            if code == 0 and out is not None and not failed:
                passed += 1
            elif out is None:
                errors.append(f"run {i + 1}: exit {code}: {stderr.strip()[-300:]}")
            print(f"run {i + 1}/{a.runs}: exit {code}, {seconds[-1]:.1f} s"
                  + (f", FAIL {', '.join(c['id'] for c in failed)}" if failed else ""), file=sys.stderr)
    summary = {"runs": a.runs, "passed": passed, "busy_loops": a.busy, "lab_args": lab_args,
               "failed_checks": dict(failures), "examples": examples, "errors": errors,
               "seconds_per_run": sorted(seconds)[len(seconds) // 2] if seconds else None}
    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{passed}/{a.runs} runs passed with {a.busy} busy loops; median {summary['seconds_per_run']:.1f} s a run")
        for cid, n in failures.most_common():
            print(f"  {cid}: failed in {n} run(s), e.g. {examples[cid]}")
        for e in errors:
            print(f"  {e}")
    return 0 if passed == a.runs else 1


if __name__ == "__main__":
    sys.exit(main())
