"""One step of `lab bisect`: what `git bisect run` runs at each commit it checks out
(`python -m lab.runs.bisect_step STATE_DIR`; lab/runs/bisect.py drives it).

At the checked-out commit it reads that commit's lab.toml, runs its `[kernel]` build command,
then the lab command (by default `lab inspect --baseline FILE --json`), and answers git:

- 0 good: the lab command passed (exit 0);
- 1 bad: it failed a check (exit 1);
- 125 skip: the kernel did not build (or that commit's lab.toml cannot be read), so the
  commit cannot be judged;
- 128 abort: the lab itself could not judge it (exit 2 bad input, 3 the lab failed, a signal):
  that is no verdict on the commit, and read as "bad" it would blame the wrong commit.

Each step appends one JSON line to STATE_DIR/steps.jsonl and keeps the lab's output in
STATE_DIR/<commit>.out, for the driver's report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128
SPEC = "spec.json"
STEPS = "steps.jsonl"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _record(state: Path, entry: dict) -> None:
    with open(state / STEPS, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _say(spec: dict, commit: str, subject: str, what: str) -> None:
    """One progress line, on the stderr of `lab bisect` (the fd it passed down through git,
    whose own stderr it keeps), else on this process's."""
    line = f"lab bisect: {commit[:12]} {what}  {subject}\n"
    try:
        os.write(spec["progress_fd"], line.encode())
    except (KeyError, TypeError, OSError):
        sys.stderr.write(line)


def step(state: Path) -> int:
    """Judges the checked-out commit; the status `git bisect run` reads (see the module)."""
    from lab.errors import LabError
    from lab.host import config

    spec = json.loads((state / SPEC).read_text(encoding="utf-8"))
    repo = Path(spec["repo"])
    commit = _git(repo, "rev-parse", "HEAD")
    subject = _git(repo, "log", "-1", "--format=%s", "HEAD")
    entry = {"commit": commit, "subject": subject}
    toml = repo / spec["config"]
    try:
        cfg = config.load(toml if toml.is_file() else None)
        if not cfg.build:
            raise LabError(f"{spec['config']}: no [kernel] build command at this commit")
        cfg.build_kernel()
    except LabError as exc:  # no verdict possible: skip the commit
        reason = str(exc).splitlines()[0]
        _record(state, {**entry, "outcome": "skip", "status": SKIP, "reason": reason})
        _say(spec, commit, subject, f"skip ({reason})")
        return SKIP
    argv = [sys.executable, "-m", "lab", *spec["command"]]
    done = subprocess.run(argv, cwd=toml.parent, capture_output=True, text=True)
    (state / f"{commit}.out").write_text(done.stdout, encoding="utf-8")
    outcome = {0: "good", 1: "bad"}.get(done.returncode, "error")
    last = (done.stderr.strip().splitlines() or [""])[-1].removeprefix("lab: error: ") if outcome == "error" else ""
    _record(state, {**entry, "outcome": outcome, "status": done.returncode, "reason": last})
    _say(spec, commit, subject, outcome if outcome != "error" else f"error (lab exit {done.returncode}: {last})")
    return {"good": GOOD, "bad": BAD}.get(outcome, ABORT)


if __name__ == "__main__":
    raise SystemExit(step(Path(sys.argv[1])))
