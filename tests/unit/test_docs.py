"""The documentation site (mkdocs.yml, docs/): the generated reference pages are what
docs/gen.py makes from the code now, every `lab` subcommand has a section, and
`mkdocs build --strict` passes, and fails on a broken link or a page left out of the nav."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _gen():
    spec = importlib.util.spec_from_file_location("docs_gen", DOCS / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _gen()


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("material", reason="mkdocs-material is in the test extras")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "-d", str(site)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, cwd=site.parent)


def _headings(markdown: str) -> list[str]:
    """The Markdown headings, not the shell comments in fenced code."""
    out, fence = [], False
    for line in markdown.splitlines():
        fence ^= line.startswith("```")
        if not fence and re.match(r"#{1,6} ", line):
            out.append(line)
    return out


def test_the_heading_reader_skips_code():
    assert _headings("# A\n```sh\n# lab boot here\n```\n## B `lab boot`\n") == ["# A", "## B `lab boot`"]


@pytest.mark.parametrize("name", sorted(gen.pages()))
def test_a_committed_generated_page_is_what_gen_makes_now(name):
    committed = (DOCS / "reference" / name).read_text()
    assert committed == gen.pages()[name], \
        f"docs/reference/{name} is stale: run `python3 docs/gen.py` and commit it"


def test_every_subcommand_is_in_the_cli_reference_and_has_a_manual_section():
    from lab.cli.commands import COMMANDS
    from lab.cli.options import parser

    names = set(gen._subparsers(parser(COMMANDS)))
    assert {"inspect", "fire", "matrix", "translate", "boot"} <= names
    cli = (DOCS / "reference" / "cli.md").read_text()
    headings = [h for p in DOCS.glob("*.md") for h in _headings(p.read_text())]
    for name in sorted(names):
        assert f"## `lab {name}`" in cli, name
        assert any(re.search(rf"`lab {name}\b", h) for h in headings), f"no docs section for lab {name}"


def test_the_cli_reference_shows_each_option_with_its_help():
    cli = (DOCS / "reference" / "cli.md").read_text()
    section = cli.split("## `lab fire`", 1)[1].split("\n## ", 1)[0]
    assert "usage: lab fire" in section
    assert re.search(r"\| `--observer` \| `\{[a-z,]*guest[a-z,]*\}` \|", section), section[:2000]


def test_the_check_catalog_lists_the_checks_the_modules_make():
    catalog = {e["id"]: e for e in gen.check_catalog()}
    # ids grepped from the source independently of the ast reading
    literal = set()
    for path in (ROOT / "lab" / "checks").glob("*.py"):
        literal |= set(re.findall(r"\bC\.(?:result|problems|fail|warn|info|skip|findings)\(\s*\"([a-z0-9_.-]+)\"",
                                  path.read_text()))
    assert len(literal) > 30
    assert literal <= set(catalog), sorted(literal - set(catalog))
    assert catalog["fire.cr2"]["tier"] == "frame" and {"PASS", "FAIL"} <= set(catalog["fire.cr2"]["verdicts"])
    page = (DOCS / "reference" / "checks.md").read_text()
    assert "| `fire.cr2` |" in page
    # a helper's id parameter is resolved to its callers' literal ids (generic.py's _no_tss)
    assert not [i for i in catalog if re.fullmatch(r"\{[a-z_]+\}", i)], sorted(catalog)
    assert any(s.startswith("lab/checks/generic.py") for s in catalog["tss.stacks-distinct"]["sources"])
    assert "SKIP" in catalog["tss.stacks-distinct"]["verdicts"]  # from _no_tss, not the check itself


def test_the_recipes_page_has_every_justfile_recipe():
    justfile = (ROOT / "justfile").read_text()
    names = set(re.findall(r"^([a-z][\w-]*)\b[^:\n]*:(?!=)", justfile, re.M))
    assert {"setup", "build", "fire"} <= names
    page = (DOCS / "reference" / "recipes.md").read_text()
    for name in names:
        assert re.search(rf"^## `just {re.escape(name)}[ `]", page, re.M), name
    assert gen._recipes_from_justfile(justfile)[0]["name"] == sorted(names)[0]


def test_the_scenario_catalog_has_every_scenario():
    from lab.scenarios.exceptions import CATALOG

    page = (DOCS / "reference" / "scenarios.md").read_text()
    assert len(CATALOG) > 10
    for s in CATALOG:
        assert f"| `{s.name}` |" in page, s.name


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert f": {page.relative_to(DOCS)}" in nav, page


def _copy(tmp_path: Path) -> Path:
    """The docs and mkdocs.yml in `tmp_path`, the hook still this tree's docs/gen.py: a build
    there refreshes the copy's reference pages, never the committed ones."""
    copy = tmp_path / "tree"
    shutil.copytree(DOCS, copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    config = (ROOT / "mkdocs.yml").read_text()
    assert "  - docs/gen.py\n" in config
    assert "base_path: [.]" in config  # the snippets (examples/) from this tree, wherever it is built
    config = config.replace("  - docs/gen.py\n", f"  - {DOCS / 'gen.py'}\n").replace(
        "base_path: [.]", f"base_path: [{ROOT}]")
    (copy / "mkdocs.yml").write_text(config)
    return copy


def test_the_build_hook_refreshes_the_built_tree_only(tmp_path):
    copy = _copy(tmp_path)
    (copy / "docs" / "reference" / "cli.md").write_text("# stale\n")
    before = (DOCS / "reference" / "cli.md").read_text()
    r = _mkdocs(copy / "mkdocs.yml", tmp_path / "site")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (copy / "docs" / "reference" / "cli.md").read_text() == gen.pages()["cli.md"]
    html = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "usage: lab fire" in html and "stale" not in html
    assert (DOCS / "reference" / "cli.md").read_text() == before


def test_mkdocs_build_strict_passes_and_fetches_no_font(tmp_path):
    r = _mkdocs(_copy(tmp_path) / "mkdocs.yml", tmp_path / "site")
    assert r.returncode == 0, r.stderr[-3000:]
    html = (tmp_path / "site" / "reference" / "checks" / "index.html").read_text()
    assert "fire.cr2" in html
    kernel_page = (tmp_path / "site" / "your-kernel" / "index.html").read_text()
    assert "kernel-lab.yml" in kernel_page and "--8&lt;--" not in kernel_page  # examples/ included
    for page in (tmp_path / "site").rglob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(), page


@pytest.mark.parametrize("damage, needle", [
    ("[the fire page](no-such-page.md)", "no-such-page.md"),
    ("[a section](fire.md#no-such-section)", "no-such-section"),
    ("[an absolute link](/setup/)", "absolute link '/setup/'"),
    (None, "orphan.md"),
])
def test_mkdocs_strict_fails_on_a_broken_link_or_an_orphan_page(tmp_path, damage, needle):
    copy = _copy(tmp_path)
    if damage:
        with (copy / "docs" / "index.md").open("a") as f:
            f.write(f"\n{damage}\n")
    else:
        (copy / "docs" / "orphan.md").write_text("# Not in the nav\n")
    r = _mkdocs(copy / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0 and needle in r.stderr, r.stderr[-3000:]


def test_no_prose_line_starts_with_a_hash():
    """Python-Markdown makes `#PF, and ...` at a line's start a heading (no space needed)."""
    bad = []
    for page in DOCS.rglob("*.md"):
        fence = False
        for n, line in enumerate(page.read_text().splitlines(), 1):
            fence ^= line.startswith("```")
            if not fence and re.match(r"#+[^#\s]", line):
                bad.append(f"{page.relative_to(DOCS)}:{n}: {line[:60]}")
    assert not bad, bad


def test_the_justfile_reader_agrees_with_just():
    """Without `just` the page comes from the justfile's text: the same recipes, parameters and
    bodies as `just --dump`, so the page is the same on a machine without just."""
    dumped = gen._recipes_from_just()
    if dumped is None:
        pytest.skip("no just on PATH")
    assert gen._recipes_from_justfile((ROOT / "justfile").read_text()) == dumped
    assert any(r["params"] == ['runs="7"'] for r in dumped)


def test_every_generic_check_states_its_rule_in_the_catalog():
    """docs/reference/checks.md's rule column: when each generic check FAILs and WARNs
    (lab/checks/rules.py), none left blank."""
    missing = [e["id"] for e in gen.check_catalog() if e["tier"] == "generic" and not e["rule"]]
    assert not missing, missing

