"""The lab as a library, for a kernel developer's own tests and tools.

    from lab.api import boot

    with boot("build/kernel.elf", at="kernel_main") as vm:
        report = vm.inspect()              # IDT, GDT, TSS and registers, decoded and checked
        assert not report.failed, report.summary()
        assert report.idt[8].ist != 0      # #DF has a stack of its own
        (pf,) = vm.fire("pf")              # a page fault, fired without the kernel's help
        assert pf.outcome == "PASS", pf.checks

`boot` returns a `VM` (lab/api/vm.py): one QEMU and one gdb, stopped where asked, ended when
the `with` block ends. `VM.from_config()` reads lab.toml. The pytest plugin
(lab/api/pytest_plugin.py) gives tests the fixtures `lab_vm` and `lab_inspection`.
"""

from lab.api.vm import VM, boot

__all__ = ["VM", "boot"]
