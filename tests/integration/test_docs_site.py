"""The documentation site in a browser: `mkdocs build` of this tree, the check catalog's page
opened in Debian's headless chromium, its screenshot not blank and its DOM the page's own
(the title and a check id the code makes), with no request for a web font."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from browser import CHROMIUM_FLAGS, chromium, pixel_stats, screenshot

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("material", reason="mkdocs-material is in the test extras")
    out, tree = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("tree")
    # a copy, so the build's hook refreshes the copy's generated pages, not the committed ones
    shutil.copytree(ROOT / "docs", tree / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    config = (ROOT / "mkdocs.yml").read_text().replace("  - docs/gen.py\n", f"  - {ROOT / 'docs' / 'gen.py'}\n")
    config = config.replace("base_path: [.]", f"base_path: [{ROOT}]")
    (tree / "mkdocs.yml").write_text(config)
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tree / "mkdocs.yml"),
                        "-d", str(out)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def dump_dom(html: Path, timeout: float = 60) -> str:
    with tempfile.TemporaryDirectory(prefix="lab-chromium-") as profile:
        r = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                            html.resolve().as_uri()], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_the_check_catalog_page_renders_with_its_checks(site, tmp_path):
    page = site / "reference" / "checks" / "index.html"
    dom = dump_dom(page)
    assert "<title>Check catalog - x86-64 kernel test lab</title>" in dom
    assert "fire.cr2" in dom and "Tier <code>frame</code>" in dom
    assert "fonts.googleapis.com" not in dom and "fonts.gstatic.com" not in dom
    png = tmp_path / "checks.png"
    screenshot(page, png, 1280, 1000)
    stats = pixel_stats(png)
    assert stats["drawn"] > 0.05 and stats["colours"] > 20, stats


def test_the_front_page_links_into_the_nav(site, tmp_path):
    page = site / "index.html"
    dom = dump_dom(page)
    for target in ("setup/", "fire/", "reference/cli/", "your-kernel/"):
        assert f'href="{target}"' in dom, target
    png = tmp_path / "index.png"
    screenshot(page, png, 1280, 1000)
    assert pixel_stats(png)["drawn"] > 0.05
