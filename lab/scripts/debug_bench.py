"""`just bench-debug`: the interactive path's figures, medians of several interleaved runs.

- `lab debug` from its start to gdb's first `(gdb) ` prompt (through a pty, as a person sees
  it: QEMU up, gdb attached, the kernel run to lab_ready);
- `lab probe df-no-ist` beside `lab probe df-no-ist --record` (what recording costs: a fresh
  boot under icount instead of the restored ready state);
- `lab debug --replay` of that recording from its start to the prompt at the end (QEMU
  replays the whole run, boot included), and with `lab-goto 1` (one reverse-continue).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.host.build import build_kernel

PROBE = "df-no-ist"


def _lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", *args]


def _timed(argv: list[str], timeout: float = 180) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench-debug: {' '.join(argv)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr}")
    return elapsed


def _to_prompt(argv: list[str]) -> float:
    import pexpect

    t0 = time.perf_counter()
    child = pexpect.spawn(argv[0], argv[1:], timeout=60)
    child.expect(rb"\(gdb\) ")
    elapsed = time.perf_counter() - t0
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    if child.exitstatus != 0:
        raise SystemExit(f"bench-debug: {' '.join(argv)} exited {child.exitstatus}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-debug", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    kernel = str(build_kernel(quiet=True))
    work = Path(tempfile.mkdtemp(prefix="lab-bench-debug-"))
    cases: dict[str, list[float]] = {k: [] for k in (
        "lab debug: start to (gdb) prompt", f"lab probe {PROBE}", f"lab probe {PROBE} --record",
        "lab debug --replay: start to prompt at the end", "lab debug --replay + lab-goto 1 (batch)")}
    names = list(cases)
    try:
        for i in range(args.runs):
            rec = work / f"r{i}"
            cases[names[0]].append(_to_prompt(_lab("debug", "--kernel", kernel)))
            cases[names[1]].append(_timed(_lab("probe", PROBE, "--kernel", kernel)))
            cases[names[2]].append(_timed(_lab("probe", PROBE, "--kernel", kernel, "--record", str(rec))))
            cases[names[3]].append(_to_prompt(_lab("debug", "--replay", str(rec / PROBE))))
            cases[names[4]].append(_timed(_lab("debug", "--replay", str(rec / PROBE), "--batch", "-ex", "lab-goto 1")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(cases[names[1]])
    print(f"medians of {args.runs} runs (TCG; python3 -m lab.scripts.debug_bench --runs {args.runs}):")
    for name, times in cases.items():
        med = statistics.median(times)
        ratio = f"  ({med / base:.2f}x lab probe)" if "probe" in name or "replay" in name else ""
        print(f"  {name:<50} {med:7.3f} s  (min {min(times):.3f}, max {max(times):.3f}){ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
