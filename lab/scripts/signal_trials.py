"""Signal trials: `lab` commands stopped by SIGTERM, SIGINT or SIGKILL at random points, and
what they leave behind.

Each trial runs one command (`lab -v fire all`, `probe all`, `inspect`, `inspect --fresh`,
`claims`) with a marker in its environment and sends the signal either at the n-th progress
line on stderr (a handshake) or at a random moment in its first 1.5 s (the windows between
lines), then waits for the lab to end. Then it counts:
- orphans: QEMU or gdb processes carrying the trial's marker still alive 10 s later;
- leftovers: the trial's run directories still on disk after the next `lab` run (which sweeps
  what a SIGKILLed lab left; a run stopped by SIGTERM or SIGINT keeps its logs on purpose and
  says where, so those are not counted);
- bad exits, by class: a traceback through the lab's code, or a status other than 143
  (SIGTERM), 130 (SIGINT) or -9 (SIGKILL) (-15/-2: the default action, once the run is over);
- before lab start: a traceback (or CPython's fatal start-up error) with no frame of the lab's
  code: the signal came while CPython itself started (its `site` imports) or while the console
  script imported the lab, before the lab's first line, so outside its reach; counted apart;
- swallowed: status 0 although the lab went on printing progress after the signal; a 0 with
  nothing after it is a lab that was ending as the signal came (`ended_at_send`, listed);
- skipped: the lab had exited before the moment (poll() right before the kill) or the line.

    python3 -m lab.scripts.signal_trials --trials 60 [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import lab
from lab.host.build import build_kernel
from lab.machine.process import pid_gone

#: Each command with its number of `-v` progress lines (measured), so every line is a possible moment.
COMMANDS = ((["fire", "all"], 23), (["probe", "all"], 14), (["inspect", "--fresh"], 2), (["inspect"], 2),
            (["claims"], 71))
#: Also accepted: the status of a lab the signal's default action ended after it had finished
#: (CPython restores the default handlers as it exits).
AFTER_EXIT = {signal.SIGTERM: -15, signal.SIGINT: -2, signal.SIGKILL: -9}
EXPECTED = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -9}
STARTED = re.compile(r"started qemu pid (\d+), gdb pid (\d+); run dir (\S+);")


def marked(marker: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                out.append(int(pid))
        except OSError:
            continue
    return out


#: The lab's own code: a traceback with no frame here comes from before the lab's first line.
LAB_CODE = str(Path(lab.__file__).resolve().parent) + "/"
FRAME = re.compile(r'^\s*File "([^"]+)"', re.M)
#: What CPython prints for a signal in its own start-up (a traceback, or a fatal init error).
STARTUP_SIGNS = ("Traceback", "KeyboardInterrupt", "Fatal Python error")


def where_it_broke(text: str) -> str | None:
    """None for clean output; 'lab code' for a traceback through the lab's code; 'before lab
    start' for one with no frame of the lab's (CPython's start-up, its `site`, the console
    script's own import of the lab: outside the lab's reach, reported apart, not hidden)."""
    if not any(sign in text for sign in STARTUP_SIGNS):
        return None
    if any(Path(f).resolve().as_posix().startswith(LAB_CODE) for f in FRAME.findall(text) if f.startswith("/")):
        return "lab code"
    return "before lab start"


def _read(stream, lines: list, seen: queue.Queue) -> None:
    """Every stderr line, stamped with when it was read (the main thread may be waiting)."""
    for line in stream:
        lines.append((time.monotonic(), line))
        seen.put(line)
    seen.put(None)


def _send(proc: subprocess.Popen, sig: signal.Signals) -> float | None:
    """The signal, if the lab is still running: poll() right before kill (a lab that already
    exited is a trial too late, not a swallowed signal). When it was sent, or None."""
    if proc.poll() is not None:
        return None
    os.kill(proc.pid, sig)
    return time.monotonic()


def trial(lab_exe: str, kernel: Path, rng: random.Random) -> dict:
    argv, lines = rng.choice(COMMANDS)
    point = rng.randrange(1, lines + 1)
    sig = rng.choice(list(EXPECTED))
    name, value = "LAB_SIGNAL_TRIAL", uuid.uuid4().hex
    proc = subprocess.Popen([lab_exe, "-v", *argv, "--kernel", str(kernel)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, name: value},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stamped, seen = [], queue.Queue()
    reader = threading.Thread(target=_read, args=(proc.stderr, stamped, seen), daemon=True)
    reader.start()
    sent, count = None, 0
    if rng.random() < 0.5:  # a moment in time, not at a line: the windows between lines too
        delay = rng.uniform(0.0, 1.5)
        point = f"{delay:.3f}s"
        try:
            proc.wait(timeout=delay)  # the random moment itself; this is the trial, not a handshake
        except subprocess.TimeoutExpired:
            sent = _send(proc, sig)
    else:
        while (line := seen.get()) is not None:
            if line.startswith("lab: "):
                count += 1
                if count == point:
                    sent = _send(proc, sig)
                    break
    status = proc.wait(timeout=60)
    ended = time.monotonic()
    reader.join(timeout=60)
    if sent is None:  # it ended before the moment or the n-th line: no signal was tried
        return {"skipped": "ended before the signal"}
    text = "".join(line for _, line in stamped)
    went_on = any(t > sent and line.startswith("lab: ")
                  and not line.startswith(("lab: terminated", "lab: interrupted")) for t, line in stamped)
    orphans = [pid for pid in marked(f"{name}={value}") if not pid_gone(pid, 10)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    kept = set(re.findall(r"logs: (\S+)", text))
    broke = where_it_broke(text)
    if broke == "before lab start":
        bad = None  # counted apart: the lab had not run a line yet
    elif broke == "lab code":
        bad = "traceback in lab code"
    elif status not in (EXPECTED[sig], AFTER_EXIT[sig], 0):
        bad = f"status {status}"
    else:
        bad = None
    # 0 though it went on printing progress after the signal: swallowed. 0 with nothing after
    # it: it was ending as the signal came (alive at the poll, gone before it could act).
    swallowed = status == 0 and went_on and broke != "before lab start"
    return {"command": " ".join(argv), "point": point, "signal": sig.name, "status": status,
            "bad_exit": bad, "before_lab_start": broke == "before lab start", "swallowed": swallowed,
            "ended_at_send": status == 0 and not went_on, "ms_to_end": round((ended - sent) * 1000, 1),
            "orphans": len(orphans),
            "stderr_tail": text[-1500:] if bad or swallowed or broke else "",
            "run_dirs": [m.group(3) for m in STARTED.finditer(text) if m.group(3) not in kept]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lab.scripts.signal_trials", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    lab_exe = shutil.which("lab") or sys.exit("lab.scripts.signal_trials: no `lab` on PATH")
    kernel = build_kernel(quiet=True)
    every = [trial(lab_exe, kernel, rng) for _ in range(args.trials)]
    results = [r for r in every if not r.get("skipped")]
    # The next run sweeps what a SIGKILLed lab left; then count what is still there.
    subprocess.run([lab_exe, "inspect", "--kernel", str(kernel)], capture_output=True, check=False)
    leftovers = sorted({d for r in results for d in r["run_dirs"] if Path(d).exists()})
    bad = [r for r in results if r["bad_exit"]]
    summary = {"attempted": len(every), "trials": len(results),
               "skipped_ended_before_the_signal": len(every) - len(results),
               "by_signal": {s.name: sum(r["signal"] == s.name for r in results) for s in EXPECTED},
               "by_command": {c: sum(r["command"] == c for r in results) for c in sorted({r["command"] for r in results})},
               "orphans": sum(r["orphans"] for r in results), "leftover_run_dirs": leftovers,
               "swallowed": [r for r in results if r["swallowed"]],
               "ended_at_send": [{k: r[k] for k in ("command", "point", "signal", "ms_to_end")}
                                 for r in results if r["ended_at_send"]],
               "before_lab_start": {"count": sum(r["before_lab_start"] for r in results),
                                    "by_status": {str(st): sum(r["before_lab_start"] and r["status"] == st for r in results)
                                                  for st in sorted({r["status"] for r in results if r["before_lab_start"]})}},
               "bad_exits_by_class": {c: sum(r["bad_exit"] == c for r in bad) for c in sorted({r["bad_exit"] for r in bad})},
               "bad_exits": bad}
    print(json.dumps(summary, indent=2))
    return 1 if summary["orphans"] or leftovers or bad or summary["swallowed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
