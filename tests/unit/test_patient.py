"""lab.machine.process.patient: a wait that times out on a bound under the usual one goes on
for the rest of it; what then comes is the lab's timeout (TimeoutTooShort, exit 3), what does
not come is the first LabTimeout, for the caller to judge (a FAIL or HUNG verdict)."""

from __future__ import annotations

import pytest

from lab.errors import LabTimeout, TimeoutTooShort
from lab.machine.process import patient


def waits(*outcomes):
    """A wait whose successive calls give `outcomes` (an exception is raised), and its calls."""
    calls = []

    def wait(timeout):
        calls.append(timeout)
        out = outcomes[len(calls) - 1]
        if isinstance(out, BaseException):
            raise out
        return out
    return wait, calls


def test_in_time_is_the_answer():
    wait, calls = waits("stop")
    assert patient(wait, 1.0, 10.0, "x") == "stop" and calls == [1.0]


def test_late_under_a_short_bound_is_the_labs_timeout():
    wait, calls = waits(LabTimeout("timed out after 1e-09 s"), "stop")
    with pytest.raises(TimeoutTooShort) as info:
        patient(wait, 1e-9, 10.0, "the #DF handler")
    assert calls == [1e-9, 10.0 - 1e-9]
    assert info.value.exit_code == 3
    assert str(info.value).startswith("timed out after 1e-09 s waiting for the #DF handler (it came ")


def test_never_is_the_first_timeout_for_the_verdict():
    first = LabTimeout("timed out after 1 s")
    wait, _ = waits(first, LabTimeout("again"))
    with pytest.raises(LabTimeout) as info:
        patient(wait, 1.0, 10.0, "x")
    assert info.value is first and not isinstance(info.value, TimeoutTooShort)


def test_no_grace_at_or_past_the_usual_bound():
    first = LabTimeout("timed out after 10 s")
    wait, calls = waits(first, "stop")
    with pytest.raises(LabTimeout) as info:
        patient(wait, 10.0, 10.0, "x")
    assert info.value is first and calls == [10.0]


def test_the_message_names_the_users_whole_bound():
    wait, _ = waits(LabTimeout("t"), "stop")
    with pytest.raises(TimeoutTooShort, match=r"after 0.5 s .*--timeout 0.5 is too short"):
        patient(wait, 0.001, 5.0, "x", bound=0.5)
