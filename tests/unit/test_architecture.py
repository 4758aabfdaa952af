"""The shape of lab/: no import cycle (imports inside functions count), every import goes to
the same layer or one below, no module over 400 lines, and a CLI that only parses,
dispatches and prints. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "lab"

#: lab/'s layers, lowest first: a module may import its own layer and the ones before it.
LAYERS = ("errors", "x86", "host", "target", "labkernel", "machine", "scenarios", "experiments",
          "checks", "present", "runs", "api", "cli", "scripts")
TOP_LEVEL = {"__init__", "__main__", "errors"}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(LAB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(LAB.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every lab module `path` imports, anywhere in the file (functions and TYPE_CHECKING
    blocks included); `from a import b` names a.b when that is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "lab"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lab":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            out |= subs or {target}
            if subs and len(subs) < len(node.names):
                out.add(target)
    return out - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(p, known) & known for m, p in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `g` as [a, b, ..., a], or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {m: WHITE for m in g}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = GREY
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if colour.get(n, BLACK) == GREY:
                return stack[stack.index(n):] + [n]
            if colour.get(n) == WHITE and (found := visit(n)):
                return found
        stack.pop()
        colour[m] = BLACK
        return None

    for m in sorted(g):
        if colour[m] == WHITE and (found := visit(m)):
            return found
    return None


def layer(module: str) -> int:
    if module == "lab.__main__":  # `python -m lab`: the CLI's entry point
        return LAYERS.index("cli")
    part = module.split(".")[1] if "." in module else "errors"
    return LAYERS.index(part) if part in LAYERS else LAYERS.index("errors")


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[layer(m)]}) imports {n} ({LAYERS[layer(n)]})"
            for m, targets in sorted(g.items()) for n in sorted(targets) if layer(n) > layer(m)]


@pytest.mark.parametrize("g, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ({"a": {"a"}}, ["a", "a"]),
])
def test_the_cycle_finder(g, cycle):
    assert find_cycle(g) == cycle


def test_the_import_reader_sees_every_kind_of_import():
    g = graph()
    assert "lab.machine.terminal" in g["lab.runs.interactive"]  # from lab.machine.terminal import X
    assert "lab.runs.inspect" in g["lab.cli.commands"]  # inside a function
    assert "lab.x86.bits" in g["lab.x86.idt"]  # relative: from .bits import ...
    assert "lab.checks.generic" in g["lab.checks.inspect"]  # from lab.checks import generic


def test_no_import_cycle_in_lab():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_every_import_goes_down_the_layers():
    assert layer_violations(graph()) == []


def test_the_layer_rule_fails_on_an_upward_import():
    assert layer_violations({"lab.x86.idt": {"lab.machine.gdb"}, "lab.machine.gdb": set()}) == [
        "lab.x86.idt (x86) imports lab.machine.gdb (machine)"]


def test_every_package_is_a_layer_and_the_top_level_is_small():
    packages = {p.name for p in LAB.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS) - {"errors"}
    assert {p.stem for p in LAB.glob("*.py")} == TOP_LEVEL


@pytest.mark.parametrize("path", sorted(LAB.rglob("*.py")), ids=lambda p: str(p.relative_to(LAB)))
def test_no_module_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_cli_only_parses_dispatches_and_prints():
    for path in (LAB / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        names = {n.func.id for n in calls if isinstance(n.func, ast.Name)}
        attrs = {n.func.attr for n in calls if isinstance(n.func, ast.Attribute)}
        assert "Check" not in names, f"{path.name} builds Check records"
        assert not attrs & {"hbreak", "cont", "wait_stopped", "read_memory", "registers", "monitor"}, \
            f"{path.name} drives gdb"
        dicts = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and n.func.attr == "dump" and n.args and isinstance(n.args[0], (ast.Dict, ast.List, ast.ListComp))]
        assert not dicts, f"{path.name} builds JSON by hand"


def test_pyproject_lists_every_package():
    import tomllib

    pyproject = tomllib.loads((LAB.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {module_name(p) for p in LAB.rglob("__init__.py")}
    assert listed == on_disk | {"lab.qemu_configs"}
    assert pyproject["tool"]["setuptools"]["package-dir"] == {"lab.qemu_configs": "qemu-configs"}


def test_test_files_have_unique_basenames():
    """pytest imports test files without packages by basename (rootdir-relative "rootdir"
    mode): two test_x.py in tests/unit and tests/integration break the collection in CI."""
    from collections import Counter

    root = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in root.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1]
