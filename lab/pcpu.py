"""The lab kernel's per-CPU area (kernel/src/task.rs `PerCpu`): one 64-byte cache line reached
through the GS base in kernel mode. Declared once here; checked against the kernel's DWARF."""

from __future__ import annotations

from lab.x86.bits import Struct, StructField

PERCPU = Struct("PerCpu", 64, "kernel/src/task.rs", (
    StructField("current", 0x00, 8),
    StructField("kernel_rsp", 0x08, 8),  # the syscall entry's stack top
    StructField("user_rsp", 0x10, 8),  # scratch slot for the user RSP
    StructField("switches", 0x18, 8),
    StructField("self_ptr", 0x20, 8),
    StructField("_pad", 0x28, 24),
))
assert PERCPU.size == 64 and PERCPU.offset("user_rsp") == 0x10
CACHE_LINE = 64
HOT_FIELDS = ("current", "kernel_rsp", "user_rsp")
