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
- bad exits: a status other than 143 (SIGTERM), 130 (SIGINT) or -9 (SIGKILL), or a traceback;
- swallowed: status 0 although the lab went on printing progress after the signal (a 0 with
  nothing after is a lab that had already exited at its last line: not a trial).

    python3 -m lab.scripts.signal_trials --trials 60 [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

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


def trial(lab: str, kernel: Path, rng: random.Random) -> dict:
    argv, lines = rng.choice(COMMANDS)
    point = rng.randrange(1, lines + 1)
    sig = rng.choice(list(EXPECTED))
    name, value = "LAB_SIGNAL_TRIAL", uuid.uuid4().hex
    proc = subprocess.Popen([lab, "-v", *argv, "--kernel", str(kernel)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, name: value},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, err, sent = 0, [], False
    if rng.random() < 0.5:  # a moment in time, not at a line: the windows between lines too
        delay = rng.uniform(0.0, 1.5)
        point = f"{delay:.3f}s"
        try:
            proc.wait(timeout=delay)  # the random moment itself; this is the trial, not a handshake
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
            sent = True
    else:
        for line in proc.stderr:
            err.append(line)
            if line.startswith("lab: "):
                seen += 1
                if seen == point:
                    proc.send_signal(sig)
                    sent = True
                    break
    if not sent:  # the command ended before the n-th line: no signal was tried
        proc.wait(timeout=60)
        return {"skipped": True}
    after = proc.stderr.read()
    err.append(after)
    status = proc.wait(timeout=60)
    text = "".join(err)
    went_on = any(line.startswith("lab: ") and not line.startswith(("lab: terminated", "lab: interrupted"))
                  for line in after.splitlines())
    if status == 0 and not went_on:
        return {"skipped": True}  # it had exited at that line already
    orphans = [pid for pid in marked(f"{name}={value}") if not pid_gone(pid, 10)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    kept = set(re.findall(r"logs: (\S+)", text))
    swallowed = status == 0
    bad = status not in (EXPECTED[sig], AFTER_EXIT[sig], 0) or "Traceback" in text
    return {"command": " ".join(argv), "point": point, "signal": sig.name, "status": status,
            "bad_exit": bad, "swallowed": swallowed, "orphans": len(orphans),
            "stderr_tail": text[-1500:] if bad or swallowed else "",
            "run_dirs": [m.group(3) for m in STARTED.finditer(text) if m.group(3) not in kept]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lab.scripts.signal_trials", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    lab = shutil.which("lab") or sys.exit("lab.scripts.signal_trials: no `lab` on PATH")
    kernel = build_kernel(quiet=True)
    results = [r for r in (trial(lab, kernel, rng) for _ in range(args.trials)) if not r.get("skipped")]
    # The next run sweeps what a SIGKILLed lab left; then count what is still there.
    subprocess.run([lab, "inspect", "--kernel", str(kernel)], capture_output=True, check=False)
    leftovers = sorted({d for r in results for d in r["run_dirs"] if Path(d).exists()})
    summary = {"trials": len(results),
               "by_signal": {s.name: sum(r["signal"] == s.name for r in results) for s in EXPECTED},
               "by_command": {c: sum(r["command"] == c for r in results) for c in sorted({r["command"] for r in results})},
               "orphans": sum(r["orphans"] for r in results), "leftover_run_dirs": leftovers,
               "swallowed": [r for r in results if r["swallowed"]],
               "bad_exits": [r for r in results if r["bad_exit"]]}
    print(json.dumps(summary, indent=2))
    return 1 if summary["orphans"] or leftovers or summary["bad_exits"] or summary["swallowed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
