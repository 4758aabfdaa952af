"""Security: the lab never hands text to a shell (every subprocess gets an argv list)."""

import ast
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "lab"
SOURCES = sorted(LAB.rglob("*.py"))


def test_sources_found():
    assert len(SOURCES) > 20


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(LAB)))
def test_no_shell_execution(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                assert not (kw.arg == "shell" and isinstance(kw.value, ast.Constant) and kw.value.value is True), \
                    f"{path}:{node.lineno}: shell=True"
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            assert not (owner == "os" and name in ("system", "popen")), f"{path}:{node.lineno}: os.{name}"
