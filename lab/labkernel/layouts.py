"""The lab kernel's own layouts (kernel/src/task.rs, percpu.rs), declared once here and checked
against the DWARF the compiler emitted for them (`lab tasks`, `lab pcpu`):

- `PerCpu` (kernel/src/percpu.rs): one 64-byte cache line reached through the GS base in kernel
  mode;
- `Task`: one entry of the kernel's task table;
- `SwitchFrame`: what `lab_switch_to` leaves on a sleeping task's stack;
- `ApStacksDecl` (kernel/src/smp/mod.rs `LAB_AP_STACKS`): where each application processor's
  stacks are: AP k's block at `base + (k - 1) * stride`, each stack's top at the block plus
  its `*_top`.
"""

from __future__ import annotations

from lab.x86.bits import Struct, StructField

PERCPU = Struct("PerCpu", 64, "kernel/src/percpu.rs", (
    StructField("current", 0x00, 8),
    StructField("kernel_rsp", 0x08, 8),  # the syscall entry's stack top
    StructField("user_rsp", 0x10, 8),  # scratch slot for the user RSP
    StructField("switches", 0x18, 8),
    StructField("self_ptr", 0x20, 8),
    StructField("tss", 0x28, 8),  # this CPU's own TSS: the switch writes its RSP0 through it
    StructField("cpu", 0x30, 8),  # this CPU's index: whose task table schedule() picks from
    StructField("_pad", 0x38, 8),
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

#: kernel/src/timer.rs `TickLog` (symbol `LAB_TICK_LOG`): the TSC at each tick of the last
#: `measure` window; `count` is every tick of the window, `tsc` the first TICK_LOG_LEN of them.
TICK_LOG_SYMBOL = "LAB_TICK_LOG"
TICK_LOG_LEN = 1024
TICK_LOG = Struct("TickLog", 8 + 8 * TICK_LOG_LEN, "kernel/src/timer.rs", (
    StructField("count", 0x00, 8),
    StructField("tsc", 0x08, 8 * TICK_LOG_LEN),
))
assert TICK_LOG.size == 8200


def tick_intervals(raw: bytes) -> tuple[int, list[int]]:
    """A TickLog's tick count and the TSC cycles between consecutive logged ticks."""
    if len(raw) != TICK_LOG.size:
        raise ValueError(f"TickLog: expected {TICK_LOG.size} bytes, got {len(raw)}")
    count = int.from_bytes(raw[TICK_LOG.offset("count"):][:8], "little")
    off = TICK_LOG.offset("tsc")
    stamps = [int.from_bytes(raw[off + 8 * i: off + 8 * i + 8], "little") for i in range(min(count, TICK_LOG_LEN))]
    return count, [b - a for a, b in zip(stamps, stamps[1:])]
# -- the in-guest observer (kernel/src/observer.rs) ------------------------------------------
OBSERVER_SOURCE = "kernel/src/observer.rs"
OBSERVER_SYMBOL, OBSERVER_PLANT_SYMBOL = "LAB_OBSERVER", "LAB_OBSERVER_PLANT"
OBSERVER_MAGIC = int.from_bytes(b"LABOBSV1", "little")
OBSERVER_CAPACITY = 64
OBSERVED_WORDS = 6  # error code (if any), RIP, CS, RFLAGS, RSP, SS from the entry RSP up
NO_ERROR_CODE = 2**64 - 1

PLANT = Struct("Plant", 40, OBSERVER_SOURCE, tuple(
    StructField(n, i * 8, 8) for i, n in enumerate(("rsp", "rflags", "cs", "ss", "fire"))))
_RECORD_WORDS = (("seq", "vector", "style", "error_code", "entry_rsp")
                 + tuple(f"word{i}" for i in range(OBSERVED_WORDS))
                 + ("rflags", "cr2", "cr3", "cs", "ss", "gate_low", "gate_high", "ist_top"))
OBSERVER_RECORD = Struct("Record", 0xc8, OBSERVER_SOURCE, tuple(
    StructField(n, i * 8, 8) for i, n in enumerate(_RECORD_WORDS)) + tuple(
    StructField(f"plant_{f.name}", len(_RECORD_WORDS) * 8 + f.offset, 8) for f in PLANT.fields) + (
    StructField("cpu", len(_RECORD_WORDS) * 8 + PLANT.size, 8),))  # the CPU's initial APIC ID
OBSERVER_HEADER = Struct("Observer", 40, OBSERVER_SOURCE, tuple(
    StructField(n, i * 8, 8) for i, n in enumerate(("magic", "record_size", "capacity", "count", "printed"))))
OBSERVER_SIZE = OBSERVER_HEADER.size + OBSERVER_CAPACITY * OBSERVER_RECORD.size
assert PLANT.size == 40 and OBSERVER_RECORD.size == 0xc8 and OBSERVER_RECORD.offset("plant_fire") == 0xb8
assert OBSERVER_RECORD.offset("cpu") == 0xc0
assert OBSERVER_HEADER.size == 40 and OBSERVER_SIZE == 40 + 64 * 0xc8
AP_STACKS_DECL = Struct("ApStacksDecl", 64, "kernel/src/smp/mod.rs", tuple(
    StructField(n, i * 8, 8) for i, n in enumerate(
        ("base", "stride", "run_top", "rsp0_top", "double_fault_top", "nmi_top", "machine_check_top",
         "worker_top"))))
assert AP_STACKS_DECL.size == 64
#: kernel/src/smp/switch.rs `AP_TASKS`: each AP's own task table, AP_TASK_SLOTS `Task`s (its
#: idle context, whose kernel stack is its declared RSP0 stack, and one worker on `worker_top`).
AP_TASK_SLOTS = 2
#: Which TSS slot each AP stack is (the boot CPU's numbering: #DF IST1, NMI IST2, #MC IST3).
AP_STACK_SLOTS = {"rsp0": "rsp0_top", "ist1": "double_fault_top", "ist2": "nmi_top", "ist3": "machine_check_top"}
