"""How `lab` maps what ended a run to its exit status (lab/cli/main.py), on raised exceptions:
a signal's status survives a clean-up that fails while the signal unwinds."""

from __future__ import annotations

import pytest

from lab.cli.main import Terminated, _report
from lab.errors import GdbError, GuestError, UserError


def raised_during(first: BaseException, then: BaseException) -> BaseException:
    """`then`, raised while `first` was being handled (as a failing `finally` does)."""
    try:
        try:
            raise first
        finally:
            raise then
    except BaseException as exc:  # noqa: BLE001 - the point is to catch exactly this
        return exc


@pytest.mark.parametrize("exc, status, line", [
    (Terminated(), 143, "lab: terminated"),
    (KeyboardInterrupt(), 130, "lab: interrupted"),
    (raised_during(Terminated(), GdbError("gdb: -break-delete 3: Cannot execute this command while the target is running")),
     143, "lab: terminated"),
    (raised_during(KeyboardInterrupt(), GuestError("serial console closed")), 130, "lab: interrupted"),
    (UserError("no such kernel"), 2, "lab: error: no such kernel"),
    (GdbError("gdb: -exec-continue: boom"), 3, "lab: error: gdb: -exec-continue: boom"),
    # A clean-up failure after an ordinary error keeps that error's status.
    (raised_during(UserError("bad path"), GuestError("serial console closed")), 3, "lab: error: serial console closed"),
])
def test_exit_status(exc, status, line, capsys):
    assert _report(exc) == status
    assert capsys.readouterr().err.strip().splitlines()[0] == line


def test_a_bug_is_not_hidden():
    with pytest.raises(ZeroDivisionError):
        _report(ZeroDivisionError("a bug in the lab"))
