"""The HTML report as a learner opens it: real runs of the real kernel (`lab fire`, `lab probe`,
`lab timer`, `lab inspect`, `lab translate` with --json and --html), the report rendered by
Debian's headless chromium into a screenshot that must not be blank, and the numbers in its
pictures read back from the SVG and compared with the run's JSON."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser import pixel_stats, screenshot
from labtest import lab_cli

pytestmark = pytest.mark.integration


class Groups(HTMLParser):
    """Each SVG <g> with a data-* attribute: its attributes and the texts inside it."""

    def __init__(self):
        super().__init__()
        self.groups: list[dict] = []
        self._open: list[dict | None] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self._in_title = 0  # hover texts are not the labels drawn

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self._in_title += tag == "title"
        self.urls += [v for k, v in attrs if k in ("href", "src", "xlink:href") and v and not v.startswith("#")]
        if tag == "g":
            g = {**a, "texts": []} if any(k.startswith("data-") for k in a) else None
            self._open.append(g)
            if g is not None:
                self.groups.append(g)

    def handle_endtag(self, tag):
        if tag == "g" and self._open:
            self._open.pop()
        self._in_title -= tag == "title"

    def handle_data(self, data):
        if self._in_title:
            return
        for g in reversed(self._open):
            if g is not None:
                g["texts"].append(data)
                break


def groups(html: str, cls: str) -> list[dict]:
    p = Groups()
    p.feed(html)
    return [g for g in p.groups if cls in g.get("class", "").split()]


def parsed(html: str) -> Groups:
    p = Groups()
    p.feed(html)
    return p


def run_json(*args: str, html: Path, timeout: float = 300) -> object:
    r = lab_cli(*args, "--json", "--html", str(html), timeout=timeout)
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    return json.loads(r.stdout)


def test_a_stub_frame_is_a_picture_whose_numbers_are_the_runs(kernel, tmp_path):
    out = tmp_path / "out.html"
    (result,) = run_json("fire", "pf-write", "--style", "stub", "--kernel", str(kernel), html=out)
    html = out.read_text()
    p = parsed(html)
    assert "script" not in p.tags and not p.urls  # self-contained: nothing to run or fetch
    slots = groups(html, "slot")
    by_address = {int(g["data-address"], 16): g for g in slots}
    # Every word the CPU pushed, at its address, with its value, as the JSON has it.
    for row in result["stack"]:
        g = by_address[row["address"]]
        assert (g["data-slot"], int(g["data-value"], 16)) == (row["slot"], row["value"])
        assert g["texts"][:3] == [f"{row['address']:#x}", row["slot"], f"{row['value']:#x}"]
    # The stub's TrapFrame below it: every GPR sentinel the lab planted, where the stub put it.
    trap = result["observation"]["trap_frame"]
    stub = {g["data-slot"]: int(g["data-value"], 16) for g in slots if "stub" in g["class"].split()}
    for reg, value in result["observation"]["sentinels"].items():
        assert stub[reg] == value == trap[reg]
    assert stub["vector"] == 14
    # The alignment gap is what the interrupted RSP and the frame's top measure.
    before = result["observation"]["before"]["rsp"]
    top = result["stack"][-1]["address"] + 8
    (gap,) = groups(html, "gap") or [{"data-bytes": "0"}]
    assert int(gap["data-bytes"]) == before - top and (before - top) < 16 and top % 16 == 0
    png = tmp_path / "out.png"
    screenshot(out, png, 1200, 1400)
    stats = pixel_stats(png)
    assert stats["drawn"] > 0.05 and stats["colours"] > 50, stats


def test_the_screenshot_check_sees_a_blank_page(tmp_path):
    """The control: a page with nothing on it is reported as blank."""
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    screenshot(page, tmp_path / "blank.png", 800, 600)
    stats = pixel_stats(tmp_path / "blank.png")
    assert stats["drawn"] == 0 and stats["variance"] == 0, stats


def test_an_ist_switch_is_drawn_from_the_tss(kernel, tmp_path):
    """NMI is delivered on IST2: the frame starts at TSS.IST2, not below the interrupted RSP."""
    (result,) = run_json("fire", "nmi", "--kernel", str(kernel), html=tmp_path / "nmi.html")
    html = (tmp_path / "nmi.html").read_text()
    obs = result["observation"]
    assert obs["gate"]["ist"] == 2 and obs["ist_top"]
    (origin,) = [g for g in re.findall(r'class="origin" data-address="(0x[0-9a-f]+)"', html)]
    assert int(origin, 16) == obs["ist_top"]
    (old,) = groups(html, "interrupted")
    assert int(old["data-address"], 16) == obs["before"]["rsp"]
    assert f"IST2: RSP := TSS.IST2 = {obs['ist_top']:#x}" in html


def test_lab_report_joins_runs_into_one_page(kernel, tmp_path):
    runs = {}
    for name, args in {"inspect": ["inspect"], "probe": ["probe", "df-no-ist"],
                       "timer": ["timer", "--rate", "100", "--window", "200"],
                       "translate": ["translate", "lab_ready"]}.items():
        runs[name] = run_json(*args, "--kernel", str(kernel), html=tmp_path / f"{name}.html")
        (tmp_path / f"{name}.json").write_text(json.dumps(runs[name]))
    out = tmp_path / "report.html"
    r = lab_cli("report", *(str(tmp_path / f"{n}.json") for n in runs), "-o", str(out))
    assert r.returncode == 0 and r.stdout.strip() == str(out), r.stderr
    html = out.read_text()
    assert [m for m in re.findall(r'data-kind="([a-z-]+)"', html)] == list(runs)
    # The IDT map: 256 cells; each present gate names its handler on hover.
    gates = groups(html, "gate")
    assert len(gates) == 256
    for row in runs["inspect"]["idt"]:
        (g,) = [g for g in gates if int(g["data-vector"]) == row["vector"]]
        assert int(g["data-handler"], 16) == row["handler"] and g["data-symbol"] == row["symbol"]
    # TSS fields with their values; the fatal path's steps in order, then the reset.
    fields = {g["data-field"]: int(g["data-value"], 16) for g in groups(html, "tss-field")}
    assert fields == {t["field"]: t["value"] for t in runs["inspect"]["tss"] if t["field"] != "iomap_base"}
    (probe,) = runs["probe"]
    steps = [g["data-name"] for g in groups(html, "event")]
    assert steps[:-1] == probe["observation"]["chain"][:-1] and steps[-1].startswith("reset")
    # The timer's histogram holds every recorded interval; the kernel recorded one per tick.
    pit = runs["timer"]["observation"]["rates"][0]
    assert len(pit["intervals_us"]) == pit["ticks"] - 1 > 0
    histogram = html.split('aria-label="pit at 100 Hz', 1)[1].split("</svg>", 1)[0]
    assert sum(int(c) for c in re.findall(r'data-count="(\d+)"', histogram.split("interval-stats")[0])) == pit["ticks"] - 1
    # The page walk: each level's entry, at its physical address.
    walk = [(int(g["data-entry-address"], 16), int(g["data-entry"], 16)) for g in groups(html, "walk-step")]
    assert walk == [(s["entry_address"], s["entry"]) for s in runs["translate"][0]["steps"]]
    png = tmp_path / "report.png"
    screenshot(out, png, 1200, 3000)
    assert pixel_stats(png)["drawn"] > 0.05


@pytest.mark.parametrize("content, needle", [
    (None, "No such file"),
    ("{not json", "not JSON"),
])
def test_lab_report_of_bad_input_is_one_line(tmp_path, content, needle):
    run = tmp_path / "run.json"
    if content is not None:
        run.write_text(content)
    r = lab_cli("report", str(run), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not (tmp_path / "r.html").exists()


def test_the_pytest_plugin_names_a_failing_tests_report(kernel, tmp_path):
    """A kernel developer's failing test: its failure output names an HTML report of what its
    VM produced (the inspection, the fires), and the file is there; a passing test writes none."""
    import os
    import subprocess
    import sys

    (tmp_path / "lab.toml").write_text(f'[kernel]\npath = "{kernel}"\n')
    (tmp_path / "test_k.py").write_text(
        "def test_fails(lab_vm):\n"
        "    lab_vm.fire('pf')\n"
        "    assert lab_vm.inspect().check('idt.declared').verdict.value == 'FAIL'\n\n"
        "def test_passes(lab_inspection):\n"
        "    assert not lab_inspection.failed\n")
    reports = tmp_path / "reports"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",  # the installed plugin (pytest11)
                        "-q", "-n", "0", f"--lab-report-dir={reports}", str(tmp_path / "test_k.py")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert r.returncode == 1 and "1 failed, 1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    (line,) = [l for l in r.stdout.splitlines() if "HTML report of this test's VM:" in l]
    path = Path(line.split(": ", 1)[1].strip())
    assert path.parent == reports and path.name == "test_k.py_test_fails.html"
    assert [p.name for p in reports.iterdir()] == [path.name]
    html = path.read_text()
    assert re.findall(r'data-kind="([a-z-]+)"', html) == ["fire-agnostic", "inspect"]
    assert len(groups(html, "gate")) == 256


def test_a_ring3_fault_is_drawn_from_tss_rsp0(kernel, tmp_path):
    """A #PF in ring 3: the CPU loaded RSP from TSS.RSP0; the picture starts there, with the
    user stack's RSP beside it, and the frame's top is RSP0 itself (16-byte aligned)."""
    frame = run_json("frame", "--at", "isr_pf", "--shell", "user run kread", "--kernel", str(kernel),
                     html=tmp_path / "frame.html")
    html = (tmp_path / "frame.html").read_text()
    switch = frame["stack_switch"]
    assert switch["field"] == "rsp0" and switch["rsp"] == frame["slots"][-1]["address"] + 8
    assert re.findall(r'class="origin" data-address="(0x[0-9a-f]+)"', html) == [f"{switch['rsp']:#x}"]
    saved_rsp = next(s["value"] for s in frame["slots"] if s["slot"] == "RSP")
    assert [g["data-address"] for g in groups(html, "interrupted")] == [f"{saved_rsp:#x}"]
    drawn = [(int(g["data-address"], 16), int(g["data-value"], 16)) for g in groups(html, "slot")]
    assert drawn == [(s["address"], s["value"]) for s in reversed(frame["slots"])]
