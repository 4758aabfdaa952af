"""A table of bad inputs through the real CLI (issue 32): each case is an argv and the exit
status it must give, with the rule every bad input follows: exactly one line on stderr, no
traceback. Nearly all are refused before anything boots (the option layer, lab.toml and
profile loading, the kernel file's checks, the kernel's own limits), so the table is fast."""

from __future__ import annotations

import pytest

from labtest import lab_cli

LONG = "/tmp/" + "a" * 256  # a path component past NAME_MAX (ENAMETOOLONG)
#: The commands that boot a VM, each with the arguments it needs besides the bad one.
VM_COMMANDS = {
    "inspect": ("inspect",), "pcpu": ("pcpu",), "translate": ("translate", "lab_ready"),
    "fire": ("fire", "de"), "probe": ("probe", "double-fault"), "timer": ("timer",), "tasks": ("tasks",),
    "ring3": ("ring3",), "claims": ("claims",), "frame": ("frame", "--at", "isr_de", "--shell", "fire de"),
    "debug": ("debug",),
}
#: Bad values of the options every VM command takes (lab/cli/options.py vm_options).
VM_OPTION_CASES = [
    ("--cpus", "0"), ("--cpus", "-1"), ("--cpus", "x"), ("--cpus", "9"), ("--cpus", "256"),
    ("--memory", "0"), ("--memory", "lots"), ("--memory", "1X"), ("--memory", "-5M"),
    ("--profile", "no-such-profile"), ("--profile", "/tmp"), ("--profile", LONG),
    ("--config", "/no/such/lab.toml"), ("--config", "/tmp"),
    ("--boot", "floppy"), ("--qemu", "no-such-qemu"), ("--initrd", "/no/such/initrd"),
    ("--kernel", "/no/such/kernel"), ("--kernel", LONG), ("--bogus-option",),
]
#: Bad values of the result options (--html, --log-dir, --ready-timeout) on the commands that take them.
RESULT_OPTION_CASES = [
    ("--ready-timeout", "nan"), ("--ready-timeout", "inf"), ("--ready-timeout", "-1"), ("--ready-timeout", "0"),
    ("--ready-timeout", "1e12"), ("--html", "/"), ("--html", "/dev/null"), ("--log-dir", "/proc/no-such-dir"),
]
RESULT_COMMANDS = ("inspect", "pcpu", "translate", "fire", "probe", "timer", "tasks", "ring3", "claims", "frame")
#: Command-specific cases; a first element with a space is a command and its argument.
SPECIFIC = [
    # stops (inspect, fire take --at/--after/--when)
    *((c, *a) for c in ("inspect", "fire de") for a in (
        ("--at", "0x8000000000000000"), ("--at", "0x0123456789abcdef"), ("--at", "0x10000000000000000"),
        ("--after", "0"), ("--after", "inf"), ("--after", "1e12"), ("--when", "("), ("--when", "\udcff"),
        ("--at", "isr_de", "--after", "1"), ("--image", "/no/such/disk.img"), ("--image", LONG),
        ("--symbols", "/no/such/System.map"), ("--symbols", LONG))),
    ("inspect", "--kernel", "/tmp"), ("inspect", "--kernel", "/proc/self/mem"),
    ("inspect", "--uefi"), ("debug", "--at", "0x8000000000000000"), ("debug", "--at", "no_such_symbol_here"),
    ("debug", "--replay", "/no/such/recording"), ("debug", "--replay", LONG),
    # fire
    ("fire", "no-such-scenario"), ("fire", "int", "--vector", "300"), ("fire", "int", "--vector", "x"),
    ("fire", "de", "--style", "no-such-style"), ("fire", "de", "--observer", "eyes"), ("fire", "de", "--cpu", "x"),
    ("fire", "de", "--timeout", "0"), ("fire", "de", "--timeout", "nan"), ("fire",),
    # probe
    ("probe", "no-such-probe"), ("probe", "double-fault", "--timeout", "-1"), ("probe",),
    # timer
    ("timer", "--rate", "0"), ("timer", "--rate", "18"), ("timer", "--rate", "99999999"), ("timer", "--rate", "x"),
    ("timer", "--window", "0"), ("timer", "--window", "20000"), ("timer", "--cpu", "0", "--cpus", "2"),
    ("timer", "--cpu", "1", "--rate", "100001", "--cpus", "2"), ("timer", "--cpu", "x"),
    # tasks, translate, frame
    ("tasks", "--cpu", "x"), ("translate",), ("translate", "0x10000000000000000"), ("frame", "--shell", "x"),
    ("frame", "--at", "0x8000000000000000", "--shell", "fire de"), ("frame", "--at", "isr_de"),
    # claims
    ("claims", "--seed", "/no/such/seed.toml"), ("claims", "--seed", LONG),
    # not VM commands
    ("no-such-command",), ("report",), ("report", "/no/such/run.json", "-o", "/tmp/r.html"),
    ("report", LONG, "-o", "/tmp/r.html"), ("report", "/etc/hostname"),
    ("attach", "/no/such/gdb.sock"), ("matrix", "--shard", "0/0"), ("matrix", "--shard", "3/2"),
    ("matrix", "--shard", "x"), ("matrix", "--merge", "/no/such/shard.json"),
    ("build", "--boot", "floppy"), ("scenarios", "--bogus"), ("probes", "extra-arg"),
    ("profiles", "--bogus"), ("qemus", "--bogus"),
]

#: (argv, exit status): every case here is the user's mistake, so 2 (UserError, argparse).
CASES = [(argv, 2) for argv in (
    *((*VM_COMMANDS[c], *bad) for c in VM_COMMANDS for bad in VM_OPTION_CASES),
    *((*VM_COMMANDS[c], *bad) for c in RESULT_COMMANDS for bad in RESULT_OPTION_CASES),
    *((*case[0].split(), *case[1:]) for case in SPECIFIC),
)]


@pytest.mark.parametrize("argv, status", CASES, ids=[" ".join(c)[:60] for c, _ in CASES])
def test_a_bad_input_is_one_line(kernel, argv, status):
    needs_kernel = argv[0] in VM_COMMANDS and "--kernel" not in argv
    r = lab_cli(*argv, *(("--kernel", str(kernel)) if needs_kernel else ()), timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert r.returncode == status, r.stderr


def test_the_corpus_is_large():
    argvs = [argv for argv, _ in CASES]
    assert len(set(argvs)) == len(argvs) >= 200
