"""`lab bisect` over throw-away git repositories of tiny kernels (tests/integration/
tinykernels.py) under real QEMU and gdb: each commit's spec.json says what its kernel is, its
build.py (the lab.toml's [kernel] build command) assembles it. The bisect finds exactly the
commit that took #DF off its IST (past a commit that only moves code and one that does not
build), a range with no bad commit says so, and a lab that cannot judge a commit stops the
bisect instead of blaming it; the repository is back on its branch every time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from labtest import lab_cli
from tinykernels import STOP

HERE = Path(__file__).resolve().parent
BUILD = f"""import json, sys
from pathlib import Path
sys.path.insert(0, {str(HERE)!r})
from tinykernels import Gate, TinySpec, tiny_kernel

spec = json.loads(Path("spec.json").read_text())
if spec.get("broken"):
    sys.exit("build.py: this commit does not build")
base = TinySpec(pad=spec.get("pad", 0))
Path("build").mkdir(exist_ok=True)
tiny_kernel(Path("build"), "kernel", base.with_gates(v8=Gate(ist=spec.get("df_ist", 1))))
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, subject: str, spec: dict | None = None, stop: str = STOP) -> str:
    if spec is not None:
        (repo / "spec.json").write_text(json.dumps(spec) + "\n")
    (repo / "lab.toml").write_text(f'[kernel]\npath = "build/kernel.elf"\nbuild = [{json.dumps(sys.executable)}, '
                                   f'"build.py"]\n[stop]\nat = "{stop}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", subject)
    return git(repo, "rev-parse", "HEAD")


def new_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "kernel"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.org")
    git(repo, "config", "user.name", "dev")
    (repo / "build.py").write_text(BUILD)
    (repo / ".gitignore").write_text("build/\n")
    return repo


def assert_restored(repo: Path) -> None:
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".git" / "BISECT_START").exists()


def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = new_repo(tmp_path)
    c = {"base": commit(repo, "base: #DF on IST1", {"df_ist": 1})}
    c["moved"] = commit(repo, "only moves code", {"df_ist": 1, "pad": 0x400})
    c["broken"] = commit(repo, "does not build", {"broken": True})
    c["fixed"] = commit(repo, "builds again, moved further", {"df_ist": 1, "pad": 0x800})
    c["df"] = commit(repo, "#DF on the kernel stack", {"df_ist": 0, "pad": 0x800})
    c["later"] = commit(repo, "moves code again", {"df_ist": 0, "pad": 0x100})
    (repo / "README").write_text("a tiny kernel\n")
    c["readme"] = commit(repo, "a README")
    return repo, c


def test_bisect_finds_the_commit_that_took_df_off_its_ist(tmp_path):
    repo, c = history(tmp_path)
    git(repo, "checkout", "-q", c["base"])
    arch = tmp_path / "arch.json"
    r = lab_cli("inspect", "--update-baseline", str(arch), cwd=repo, timeout=120)
    assert r.returncode == 0, r.stderr
    git(repo, "checkout", "-q", "main")
    r = lab_cli("bisect", "--good", c["base"], "--bad", "main", "--baseline", str(arch), cwd=repo, timeout=600)
    print(r.stdout, r.stderr)
    assert r.returncode == 1, r.stderr
    assert f"first bad commit: {c['df']} #DF on the kernel stack" in r.stdout
    assert "  vector 8 #DF: IST 1 -> 0 (tiny_isr)" in r.stdout
    assert_restored(repo)
    r = lab_cli("bisect", "--good", c["base"], "--bad", "main", "--baseline", str(arch), "--json", cwd=repo,
                timeout=600)
    data = json.loads(r.stdout)
    assert data["first_bad"]["commit"] == c["df"]
    assert data["diff"] == ["vector 8 #DF: IST 1 -> 0 (tiny_isr)", "IST map IST1: removed (was vectors 8, stack df_stack)"]
    outcomes = {s["commit"]: s["outcome"] for s in data["steps"]}
    assert outcomes[c["df"]] == "bad" and outcomes[c["readme"]] == "bad" and outcomes[c["base"]] == "good"
    assert outcomes.get(c["broken"], "skip") == "skip"
    assert all(outcomes[x] == "good" for x in ("moved", "fixed") if x in outcomes)
    assert_restored(repo)


def test_a_range_with_no_bad_commit_says_so(tmp_path):
    repo, c = history(tmp_path)
    git(repo, "checkout", "-q", c["base"])
    arch = tmp_path / "arch.json"
    assert lab_cli("inspect", "--update-baseline", str(arch), cwd=repo, timeout=120).returncode == 0
    git(repo, "checkout", "-q", "main")
    r = lab_cli("bisect", "--good", c["base"], "--bad", c["fixed"], "--baseline", str(arch), cwd=repo, timeout=600)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    assert f"no commit is bad: --bad {c['fixed'][:12]} passes" in r.stdout
    assert "first bad commit" not in r.stdout
    assert_restored(repo)


def test_a_lab_error_stops_the_bisect_instead_of_blaming_the_commit(tmp_path):
    """The middle commit's lab.toml stops at a symbol its kernel lacks: `lab inspect` exits 2
    there, which is no verdict: the bisect stops naming it (not "first bad commit")."""
    repo = new_repo(tmp_path)
    good = commit(repo, "base", {"df_ist": 1})
    odd = commit(repo, "stops at a symbol that is not there", {"df_ist": 1}, stop="no_such_symbol")
    commit(repo, "#DF on the kernel stack", {"df_ist": 0})
    git(repo, "checkout", "-q", good)
    arch = tmp_path / "arch.json"
    assert lab_cli("inspect", "--update-baseline", str(arch), cwd=repo, timeout=120).returncode == 0
    git(repo, "checkout", "-q", "main")
    r = lab_cli("bisect", "--good", good, "--bad", "main", "--", "inspect", "--baseline", str(arch), cwd=repo,
                timeout=600)
    print(r.stdout, r.stderr)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lab: error: at {odd[:12]} (stops at a symbol that is not there): `lab inspect --baseline {arch}` exited 2:"), last
    assert "the bisect was stopped" in last and "first bad commit" not in r.stdout
    assert_restored(repo)
