"""`lab bisect --good REV --bad REV [-- lab command ...]`: the first commit of a kernel's
repository whose architectural state drifted from the reviewed baseline (or that fails any lab
command), found with `git bisect run` and the lab as its predicate (docs/baselines.md).

Each commit is judged by lab/runs/bisect_step.py: that commit's lab.toml `[kernel]` build
command, then the lab command (default `lab inspect --baseline FILE --json`): 0 good, 1 bad,
a kernel that does not build is skipped (125), and a lab that cannot judge (exit 2, 3, a
signal) aborts the bisect: that is no verdict on the commit.

Both ends are judged first, so a --bad that passes is reported as "no commit is bad" rather
than blamed, and a --good that fails is refused. The repository goes back to the branch (or
commit) it was on at the end, also after an error or Ctrl-C (`git bisect reset`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import LabError, UserError
from lab.runs import bisect_step
from lab.runs.bisect_step import ABORT, BAD, GOOD, SKIP


@dataclass
class Commit:
    sha: str
    subject: str

    def to_json(self) -> dict:
        return {"commit": self.sha, "subject": self.subject}


@dataclass
class BisectResult:
    """The outcome: the first bad commit (or none: --bad passes), every commit judged, and
    the first bad commit's failing findings (the baseline drift lines)."""

    good: Commit
    bad: Commit
    command: list[str]
    first_bad: Commit | None = None
    candidates: list[Commit] = field(default_factory=list)  # skipped commits left: any of these
    steps: list[dict] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.first_bad is not None or bool(self.candidates)

    def to_json(self) -> dict:
        return {"good": self.good.to_json(), "bad": self.bad.to_json(), "command": ["lab", *self.command],
                "first_bad": self.first_bad.to_json() if self.first_bad else None,
                "candidates": [c.to_json() for c in self.candidates], "steps": self.steps, "diff": self.diff}

    def lines(self) -> list[str]:
        head = f"lab bisect {self.good.sha[:12]}..{self.bad.sha[:12]}: `{shlex.join(['lab', *self.command])}`"
        out = [head] + [f"  {s['commit'][:12]} {s['outcome']:<5} {s['subject']}" for s in self.steps]
        if self.first_bad:
            out.append(f"first bad commit: {self.first_bad.sha} {self.first_bad.subject}")
        elif self.candidates:
            out.append("the first bad commit is one of (the others did not build):")
            out += [f"  {c.sha} {c.subject}" for c in self.candidates]
        else:
            out.append(f"no commit is bad: --bad {self.bad.sha[:12]} passes")
        if self.diff:
            out.append(f"what changed between {self.good.sha[:12]} and it:")
            out += [f"  {line}" for line in self.diff]
        return out


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"git {' '.join(args)} failed: {(done.stderr.strip().splitlines() or [''])[-1]}",
                       command=["git", *args], status=done.returncode)
    return done


def _commit(repo: Path, rev: str, flag: str) -> Commit:
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise UserError(f"{flag} {rev}: not a commit of {repo}")
    sha = done.stdout.strip()
    return Commit(sha, _git(repo, "log", "-1", "--format=%s", sha).stdout.strip())


def _repository(cwd: Path) -> Path:
    if shutil.which("git") is None:
        raise UserError("lab bisect needs git (apt-get install git)")
    done = _git(cwd, "rev-parse", "--show-toplevel", check=False)
    if done.returncode != 0:
        raise UserError(f"{cwd}: not in a git repository (lab bisect runs in the kernel's repository)")
    return Path(done.stdout.strip())


def _checked(repo: Path, cfg, good: str, bad: str) -> tuple[Commit, Commit, str]:
    """The two ends and lab.toml's path in the repository; UserError for what cannot work."""
    if cfg.path is None:
        raise UserError("lab bisect needs a lab.toml with a [kernel] build command (none found from here upwards)")
    if not cfg.build:
        raise UserError(f"{cfg.path}: lab bisect needs a [kernel] build command (build = \"make ...\")")
    try:
        rel = cfg.path.relative_to(repo.resolve())
    except ValueError:
        raise UserError(f"{cfg.path}: not inside the repository {repo}") from None
    started = Path(_git(repo, "rev-parse", "--git-path", "BISECT_START").stdout.strip())
    if (repo / started).exists():  # an absolute path stays itself
        raise UserError(f"{repo}: a git bisect is already in progress (git bisect reset ends it)")
    if _git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise UserError(f"{repo}: the working tree has changes; commit or stash them first")
    g, b = _commit(repo, good, "--good"), _commit(repo, bad, "--bad")
    if g.sha == b.sha or _git(repo, "merge-base", "--is-ancestor", g.sha, b.sha, check=False).returncode != 0:
        raise UserError(f"--good {good} is not an ancestor of --bad {bad}")
    return g, b, str(rel)


def _step_argv(state: Path) -> list[str]:
    return [sys.executable, "-m", "lab.runs.bisect_step", str(state)]


def _progress_fd(state: Path) -> tuple[int, ...]:
    return (json.loads((state / bisect_step.SPEC).read_text())["progress_fd"],)


def _step(state: Path, repo: Path) -> int:
    return subprocess.run(_step_argv(state), cwd=repo, pass_fds=_progress_fd(state)).returncode


def _steps(state: Path) -> list[dict]:
    path = state / bisect_step.STEPS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _abort(state: Path, command: list[str]):
    """The error for a step the lab could not judge: the lab's own status and last line."""
    last = _steps(state)[-1]
    message = (f"at {last['commit'][:12]} ({last['subject']}): `{shlex.join(['lab', *command])}` "
               f"exited {last['status']}: {last['reason'] or 'no message'}; the bisect was stopped")
    return UserError(message) if last["status"] == UserError.exit_code else LabError(message)


def findings(output: str) -> list[str]:
    """What a failing lab run found, from its output: the baseline drift lines and every other
    FAIL of a --json result, else the output's last lines."""
    try:
        data = json.loads(output)
    except ValueError:
        return output.strip().splitlines()[-10:]
    out = []
    for c in data.get("checks", []) if isinstance(data, dict) else []:
        if c.get("verdict") != "FAIL":
            continue
        if c.get("id") == "baseline.drift":
            out += c["evidence"][1:]
        else:
            out.append(f"FAIL {c.get('id')}: {(c.get('evidence') or [c.get('title', '')])[0]}")
    return out


def bisect(cwd: Path, cfg, good: str, bad: str, command: list[str], baseline: Path | None) -> BisectResult:
    """Bisects the repository holding `cwd` between `good` and `bad` (see the module);
    `cfg` is the lab.toml read from there, `command` the lab command (without `lab`), else
    `lab inspect --baseline BASELINE --json`."""
    repo = _repository(cwd)
    if command and baseline is not None:
        raise UserError("--baseline is the default predicate's; with a lab command after --, give it there")
    if not command and baseline is None:
        raise UserError("lab bisect needs --baseline FILE or a lab command after -- (e.g. -- inspect --baseline arch.json)")
    if baseline is not None and not baseline.is_file():
        raise UserError(f"--baseline {baseline}: no such file")
    g, b, rel = _checked(repo, cfg, good, bad)
    state = Path(tempfile.mkdtemp(prefix="lab-bisect-"))
    progress = os.dup(sys.stderr.fileno())  # the steps' progress lines, through git
    try:
        shown = command or ["inspect", "--baseline", str(baseline)]
        if baseline is not None:  # a copy: the checkouts must not change the reference
            shutil.copyfile(baseline, state / "baseline.json")
            command = ["inspect", "--baseline", str(state / "baseline.json"), "--json"]
        (state / bisect_step.SPEC).write_text(json.dumps({"repo": str(repo), "config": rel, "command": command,
                                                             "progress_fd": progress}))
        result = BisectResult(g, b, shown)
        _run(repo, state, result)
        result.steps = _steps(state)
        if result.first_bad is not None:
            out = state / f"{result.first_bad.sha}.out"
            result.diff = findings(out.read_text(encoding="utf-8")) if out.exists() else []
        return result
    finally:
        os.close(progress)
        shutil.rmtree(state, ignore_errors=True)


def _run(repo: Path, state: Path, result: BisectResult) -> None:
    """Judges both ends, then lets `git bisect run` judge the commits between; always ends with
    `git bisect reset` (back to the branch the repository was on)."""
    _git(repo, "bisect", "start")
    try:
        for end, flag in ((result.bad, "--bad"), (result.good, "--good")):
            _git(repo, "checkout", "-q", end.sha)
            status = _step(state, repo)
            if status == ABORT:
                raise _abort(state, result.command)
            if status == SKIP:
                raise UserError(f"{flag} {end.sha[:12]}: {_steps(state)[-1]['reason']}")
            if end is result.bad and status == GOOD:
                return  # no commit is bad
            if end is result.good and status == BAD:
                raise UserError(f"--good {end.sha[:12]} fails `{shlex.join(['lab', *result.command])}` too: "
                                "nothing to bisect (pick an older --good)")
            said = _git(repo, "bisect", "bad" if status == BAD else "good").stdout
        if "is the first bad commit" not in said:
            run = subprocess.run(["git", "-C", str(repo), "bisect", "run", *_step_argv(state)], capture_output=True,
                                 text=True, pass_fds=_progress_fd(state))
            said = run.stdout
            if _steps(state) and _steps(state)[-1]["outcome"] == "error":
                raise _abort(state, result.command)
            if run.returncode != 0 and "first bad commit" not in said:
                raise LabError(f"git bisect run failed: {((run.stderr + said).strip().splitlines() or [''])[-1]}",
                               command=["git", "bisect", "run", "..."], status=run.returncode)
        _conclude(repo, said, result)
    finally:
        done = _git(repo, "bisect", "reset", check=False)
        if done.returncode != 0:
            print(f"lab bisect: git bisect reset failed: {done.stderr.strip()}", file=sys.stderr)


def _conclude(repo: Path, said: str, result: BisectResult) -> None:
    if "is the first bad commit" in said:
        sha = _git(repo, "rev-parse", "refs/bisect/bad").stdout.strip()
        result.first_bad = _commit(repo, sha, "first bad")
        return
    # "There are only 'skip'ped commits left to test. The first bad commit could be any of:"
    shas = [line.split()[0] for line in said.splitlines() if len(line.split()) == 1 and len(line) == 40]
    result.candidates = [_commit(repo, s, "candidate") for s in shas]
