# tests/test_my_kernel.py: the lab's fixtures boot the kernel lab.toml names.
# Run: pytest tests/test_my_kernel.py --junitxml=lab-results.xml
import pytest

from lab.x86.vectors import DF


def test_no_table_breaks_the_cpu(lab_inspection):
    assert not lab_inspection.failed, lab_inspection.summary()


def test_double_faults_get_a_stack_of_their_own(lab_inspection):
    assert lab_inspection.idt[DF].ist != 0


def test_a_page_fault_pushes_the_frame_the_manual_says(lab_vm):
    (pf,) = lab_vm.fire("pf")
    if pf.skipped is not None:  # e.g. the kernel has no #PF gate: the lab says why it did not fire
        pytest.skip(pf.skipped)
    failed = [c for c in pf.checks if c.verdict.name == "FAIL"]
    assert pf.outcome == "PASS", failed or pf.checks
