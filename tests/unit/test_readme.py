"""The README is a front page: at most 300 lines, every link it makes reaches a file of this
repository (the manual's pages under docs/), and it names the two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
LINKS = sorted(set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)))


def test_the_readme_is_a_front_page():
    assert len(README.splitlines()) <= 300


def test_it_names_the_two_set_up_commands():
    block = README.split("## Set-up: two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash lab/setup.sh", "just test"]
    assert "bash lab/setup.sh" in (ROOT / ".ci" / "run").read_text()
    assert "just test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("link", [l for l in LINKS if "://" not in l])
def test_every_link_reaches_a_file(link):
    assert (ROOT / link).is_file(), link


def test_every_docs_page_in_the_nav_is_reachable_from_the_readme():
    nav = set(re.findall(r":\s+(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    linked = {l.removeprefix("docs/") for l in LINKS}
    assert nav and nav <= linked, sorted(nav - linked)
