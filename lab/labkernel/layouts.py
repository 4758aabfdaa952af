"""The lab kernel's own layouts (kernel/src/task.rs), declared once here and checked against
the DWARF the compiler emitted for them (`lab tasks`, `lab pcpu`):

- `PerCpu`: one 64-byte cache line reached through the GS base in kernel mode;
- `Task`: one entry of the kernel's task table;
- `SwitchFrame`: what `lab_switch_to` leaves on a sleeping task's stack;
- `ApStacksDecl` (kernel/src/smp/mod.rs `LAB_AP_STACKS`): where each application processor's
  stacks are: AP k's block at `base + (k - 1) * stride`, each stack's top at the block plus
  its `*_top`.
"""

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

TASK = Struct("Task", 0x48, "kernel/src/task.rs", (
    StructField("rsp", 0x00, 8), StructField("kstack_top", 0x08, 8), StructField("cr3", 0x10, 8),
    StructField("id", 0x18, 8), StructField("state", 0x20, 8), StructField("switches", 0x28, 8),
    StructField("counter", 0x30, 8), StructField("name", 0x38, 16),
))
SWITCH_FRAME = Struct("SwitchFrame", 7 * 8, "kernel/src/task.rs", tuple(
    StructField(n, i * 8, 8) for i, n in enumerate(("r15", "r14", "r13", "r12", "rbp", "rbx", "ret"))))
assert TASK.size == 0x48 and SWITCH_FRAME.size == 56

AP_STACKS_DECL = Struct("ApStacksDecl", 56, "kernel/src/smp/mod.rs", tuple(
    StructField(n, i * 8, 8) for i, n in enumerate(
        ("base", "stride", "run_top", "rsp0_top", "double_fault_top", "nmi_top", "machine_check_top"))))
assert AP_STACKS_DECL.size == 56
#: Which TSS slot each AP stack is (the boot CPU's numbering: #DF IST1, NMI IST2, #MC IST3).
AP_STACK_SLOTS = {"rsp0": "rsp0_top", "ist1": "double_fault_top", "ist2": "nmi_top", "ist3": "machine_check_top"}
