"""The lab kernel's own limits, declared once (re-exported by contract.py). A module of its own,
importing nothing, so the command line's option layer (lab/cli/options.py) names them without
loading the contract's layouts and the symbol reader: `lab --help` and a refused option stay
cheap."""

#: The CPUs the lab kernel starts, the boot CPU included (kernel/src/smp/mod.rs MAX_CPUS).
MAX_CPUS = 8
#: `timer pit <hz>` (kernel/src/shell.rs cmd_timer): the PIT's 16-bit divisor of 1193182 Hz.
PIT_HZ = range(19, 100_000 + 1)
#: `timer apic periodic <hz>` and `timers <ms> <cpu>:<hz>` (kernel/src/smp/ipi.rs).
APIC_HZ = range(1, 100_000 + 1)
#: `measure <ms>` and `timers <ms> ...`: a window of 1-10000 ms.
WINDOW_MS = range(1, 10_000 + 1)
