"""What the lab kernel accepts, checked before anything boots (lab/labkernel/contract.py):
timer rates and windows, and addresses no CPU can run at (lab/x86/addr.py)."""

import pytest

from lab.errors import UserError
from lab.experiments.timer import validate
from lab.x86.addr import code_address_error, refuse_noncode_literal


@pytest.mark.parametrize("rates, window, apic_only", [
    ((19, 100_000), 1, False), ((100,), 10_000, False), ((1, 100_000), 500, True)])
def test_rates_the_kernel_takes(rates, window, apic_only):
    validate(rates, window, apic_only=apic_only)


@pytest.mark.parametrize("rates, window, apic_only, message", [
    ((99_999_999,), 500, False, "--rate 99999999: the kernel runs the PIT at 19-100000 Hz"),
    ((18,), 500, False, "--rate 18: the kernel runs the PIT at 19-100000 Hz"),
    ((100_001,), 500, True, "--rate 100001: the kernel runs an AP's APIC timer at 1-100000 Hz"),
    ((100,), 10_001, False, "--window 10001: the kernel measures 1-10000 ms"),
    ((100,), 0, True, "--window 0: the kernel measures 1-10000 ms")])
def test_rates_the_kernel_refuses(rates, window, apic_only, message):
    with pytest.raises(UserError, match=message):
        validate(rates, window, apic_only=apic_only)


@pytest.mark.parametrize("addr, why", [
    (0x100000, None), (0xffffffff80000000, None), (0xffffffffffffffff, None),
    (0x00007fffffffffff, None), (0xff00000000000000, None),  # canonical with 5-level paging
    (0x8000000000000000, "is not canonical"), (0x0123456789abcdef, "is not canonical"),
    (0x7f00000000000000, "is not canonical"), (1 << 64, "is not a 64-bit address"), (-1, "is not a 64-bit")])
def test_code_address_error(addr, why):
    got = code_address_error(addr)
    assert (got is None) if why is None else (why in got)


@pytest.mark.parametrize("text, refused", [("lab_ready", False), ("0x100000", False),
                                           ("0x8000000000000000", True), ("0x10000000000000000", True)])
def test_refuse_noncode_literal(text, refused):
    if refused:
        with pytest.raises(UserError, match=f"--at {text}: "):
            refuse_noncode_literal(text, "--at")
    else:
        refuse_noncode_literal(text, "--at")


def test_the_limits_are_the_kernels():
    """The lab's copy of each limit is what the kernel's source says (a change there fails here)."""
    import re
    from pathlib import Path

    from lab.labkernel.contract import APIC_HZ, MAX_CPUS, PIT_HZ, WINDOW_MS

    src = Path(__file__).resolve().parents[2] / "kernel" / "src"
    smp = (src / "smp" / "mod.rs").read_text()
    assert re.search(r"pub const MAX_CPUS: usize = (\d+);", smp).group(1) == str(MAX_CPUS)
    shell = (src / "shell.rs").read_text()
    assert f"({PIT_HZ.start}..={PIT_HZ.stop - 1:_}).contains(h)" in shell
    assert f"(\"periodic\", Some(hz)) if ({APIC_HZ.start}..={APIC_HZ.stop - 1:_}).contains(&hz)" in shell
    assert f"measure <{WINDOW_MS.start}-{WINDOW_MS.stop - 1} ms>" in shell
    ipi = (src / "smp" / "ipi.rs").read_text()
    assert f"({APIC_HZ.start}..={APIC_HZ.stop - 1:_}).contains(h)" in ipi
    assert f"({WINDOW_MS.start}..={WINDOW_MS.stop - 1:_}).contains(m)" in ipi
