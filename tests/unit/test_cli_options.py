"""The `lab` parser, without QEMU: every shared option on every command that takes it, and a
bad value is one line on stderr with exit status 2."""

from __future__ import annotations

import pytest

from lab.cli.commands import COMMANDS
from lab.cli.options import parser

PARSER = parser(COMMANDS)
SUB = next(a for a in PARSER._actions if a.dest == "command").choices  # name -> subparser


def flags(command: str) -> set[str]:
    return {s for a in SUB[command]._actions for s in a.option_strings}


#: Commands that start a VM of a kernel; those that may restore the saved ready state.
VM = {"inspect", "fire", "probe", "timer", "tasks", "ring3", "pcpu", "frame", "claims", "debug",
      "translate", "boot"}
RESTORING = VM - {"debug", "boot"} | {"matrix"}
#: Commands that produce a result: --json, --html and --log-dir on each.
RESULT = {"inspect", "fire", "probe", "timer", "tasks", "ring3", "pcpu", "frame", "claims", "translate"}
JSON = RESULT | {"scenarios", "probes", "profiles", "matrix", "qemus", "bisect"}
HTML = RESULT | {"matrix"}
LOG_DIR = RESULT | {"matrix"}  # the matrix: each backend's logs in DIR/<backend>
READY_TIMEOUT = RESULT | {"matrix"}
#: The command's own bound on its waits, always spelt --timeout.
TIMEOUT = {"fire", "probe", "frame"}
FOREIGN = {"inspect", "fire", "debug"}
STOPS = {"inspect", "fire"}


def test_every_command_has_a_function():
    assert set(SUB) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(SUB))
def test_shared_options_are_on_every_command_that_takes_them(command):
    f = flags(command)
    assert ({"--kernel", "--profile", "--boot", "--release", "--memory", "--cpus", "--initrd",
             "--qemu-arg", "--config"} <= f) == (command in VM)
    assert ("--fresh" in f) == (command in RESTORING)
    assert ("--json" in f) == (command in JSON)
    assert ("--ready-timeout" in f) == (command in READY_TIMEOUT)
    assert ("--html" in f) == (command in HTML)
    assert ("--log-dir" in f) == (command in LOG_DIR)
    assert ("--timeout" in f) == (command in TIMEOUT)
    assert not {o for o in f if o.endswith("timeout")} - {"--timeout", "--ready-timeout", "--handler-timeout"}
    assert {"-v", "--verbose"} <= f
    assert ({"--image", "--append", "--symbols"} <= f) == (command in FOREIGN)
    assert ({"--after", "--when"} <= f) == (command in STOPS)


@pytest.mark.parametrize("argv, needle", [
    (["inspect", "--ready-timeout", "nan"], "--ready-timeout: needs a positive, finite number"),
    (["inspect", "--ready-timeout", "inf"], "--ready-timeout: needs a positive, finite number"),
    (["inspect", "--ready-timeout", "0"], "--ready-timeout: needs a positive, finite number"),
    (["inspect", "--ready-timeout", "-5"], "--ready-timeout: needs a positive, finite number"),
    (["inspect", "--after", "1e999"], "--after: needs a positive, finite number"),
    (["inspect", "--after", "soon"], "--after: 'soon' is not a number of seconds"),
    (["fire", "int", "--vector", "300"], "--vector: vector 300 is outside 0-255"),
    (["fire", "int", "--vector", "x"], "--vector: 'x' is not a vector number"),
    (["fire", "ud", "--timeout", "0"], "--timeout/--handler-timeout: needs a positive"),
    (["inspect", "--vectors", "1-300"], "--vectors: '1-300' is outside 0-255"),
    (["inspect", "--vectors", "x"], "--vectors: 'x' is not a vector"),
    (["probe", "all", "--timeout", "nan"], "--timeout: needs a positive"),
    (["timer", "--rate", "0"], "--rate: needs a positive number, not 0"),
    (["inspect", "--cpus", "0"], "--cpus: needs a positive number, not 0"),
    (["inspect", "--cpus", "256"], "--cpus: at most 255 vCPUs, not 256"),
    (["inspect", "--cpus", "two"], "--cpus: 'two' is not a whole number"),
    (["timer", "--window", "-1"], "--window: needs a positive number"),
    (["inspect", "--boot", "floppy"], "--boot: invalid choice: 'floppy'"),
    (["inspect", "--at", "x", "--when", "y"], "not allowed with argument"),
    (["frame", "--at", "isr_gp"], "the following arguments are required: --shell"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_a_bad_value_is_one_line_and_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        PARSER.parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and needle in err, err
    assert err.startswith("lab")


@pytest.mark.parametrize("argv, dest, value", [
    (["inspect", "--ready-timeout", "2.5"], "ready_timeout", 2.5),
    (["fire", "ud", "--handler-timeout", "2"], "timeout", 2.0),  # the older spelling
    (["inspect", "--vectors", "0-3,0x80"], "vectors", {0, 1, 2, 3, 0x80}),
    (["inspect", "-v"], "verbose", True),  # after the command
    (["-v", "inspect"], "verbose", True),  # and before it
    (["inspect"], "verbose", False),
    (["report", "a.json", "b.json", "-o", "r.html"], "runs", ["a.json", "b.json"]),
    (["claims", "--all"], "all_claims", True),
    (["fire", "int", "--vector", "0x80"], "vector", 0x80),
    (["timer", "--rate", "100", "--rate", "250"], "rate", [100, 250]),
    (["inspect"], "ready_timeout", None),  # lab.toml's, else 10 s (lab/cli/commands.py)
    (["inspect", "--qemu-arg=-smp", "--qemu-arg", "2"], "qemu_args", ["-smp", "2"]),
    (["inspect"], "fresh", False),
    (["inspect", "--fresh"], "fresh", True),
])
def test_good_values_parse(argv, dest, value):
    assert getattr(PARSER.parse_args(argv), dest) == value


def test_lab_help_lists_every_command_once_under_a_group():
    import contextlib
    import io

    from lab.cli.commands import COMMANDS
    from lab.cli.options import GROUPS, parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        parser(COMMANDS).parse_args(["--help"])
    text = out.getvalue()
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("  ") and
              not line.startswith("   ") and line.split()[0] in COMMANDS]
    assert sorted(listed) == sorted(COMMANDS)           # each command exactly once
    for title, names in GROUPS:                           # under its group's title, in order
        block = text.split(f"\n{title}:\n", 1)[1]
        assert [line.split()[0] for line in block.splitlines()
                if line.startswith("  ") and not line.startswith("   ")][:len(names)] == list(names)
    assert max(map(len, text.splitlines())) <= 80


def test_a_command_missing_from_the_groups_is_caught():
    from lab.cli.options import _grouped

    with pytest.raises(AssertionError, match="nope"):
        _grouped({"inspect": "x", "nope": "y"}, 78)
