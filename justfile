# x86-64 kernel test lab. `just --list` shows the recipes.

# Recipe arguments reach the commands as arguments ("$@"), never pasted into shell text.
set positional-arguments

# install everything (idempotent), inspect the kernel
setup:
    @bash lab/setup.sh

# build the kernel (cargo build-std, rustc 1.96)
build:
    @lab build

# The guest's serial console on this terminal (Ctrl-A X quits); prints the command that
# attaches gdb.
# serial console here (Ctrl-A X quits), gdb hint
boot *args:
    @lab boot "$@"

# Pass --json for machines.
# stop at ready, check IDT, GDT and TSS
inspect *args:
    @lab inspect "$@"

# Example: just fire all --style both
# raise exceptions, check each frame
fire +args:
    @lab fire "$@"

# fatal paths, each in a fresh VM: probe all
probe +args:
    @lab probe "$@"

# timer rates and pitfalls: timer --rate 250
timer *args:
    @lab timer "$@"

# tasks, switch frames, traced switches, rates
tasks *args:
    @lab tasks "$@"

# Syscall entry (swapgs, stack switch, frame), interrupts and faults in ring 3.
# syscall entry, interrupts and faults in ring 3
ring3 *args:
    @lab ring3 "$@"

# the per-CPU area through GS_BASE
pcpu *args:
    @lab pcpu "$@"

# Example: just frame --at isr_pf --shell "user run kread"
# decode the frame at a handler
frame *args:
    @lab frame "$@"

# tutorial statements, proven or refuted on CPU
claims *args:
    @lab claims "$@"

# Example: just report fire.json -o report.html
# runs' --json output as one HTML report
report +args:
    @lab report "$@"

# Stopped at lab_ready (or --at SYMBOL); Ctrl-C stops the guest.
# gdb with the lab's commands, at lab_ready
debug *args:
    @lab debug "$@"

# Record with: just probe df-no-ist --record. Then reverse-stepi, lab-chain, lab-goto N.
# gdb on a recording, stopped at its end
replay run *args:
    @lab debug --replay "$@"

# Attach gdb with the lab's commands and the kernel's symbols to a running `just boot`.
# gdb onto a running `just boot`
attach socket *args:
    @lab attach "$@"

# Example: just translate lab_ready 0x40002000
# walk the page tables for an address
translate +args:
    @lab translate "$@"

# the exception catalog
scenarios:
    @lab scenarios

# list the QEMU profiles
profiles:
    @lab profiles

# The whole test suite: unit (no QEMU) and integration (real QEMU + gdb + kernel), one worker
# per core (pytest-xdist; each worker its own VMs); `just test -n 0` runs it in one process.
# all tests, one worker per core (-n 0: one)
test *args:
    @python3 -m pytest tests -n auto "$@"

# decoders, parsers and checks only; no QEMU
test-unit *args:
    @python3 -m pytest tests -m "not integration" "$@"

# tests that boot the real kernel
test-integration *args:
    @python3 -m pytest tests -m integration -n auto "$@"

# 200 consecutive scenarios + every probe, and TCG/KVM agreement (not in `just test`).
# long soak: 200 scenarios, probes, TCG vs KVM
soak *args:
    @python3 -m lab.scripts.soak "$@"

# Boot-to-ready floor vs `lab inspect`, medians of several runs (see README "Speed").
# boot-to-ready floor vs `lab inspect` (medians)
bench runs="7":
    @python3 -m lab.scripts.bench --runs "$1"

# The interactive path: `lab debug` to its prompt, record and replay of df-no-ist (medians).
# `lab debug`, record and replay timings
bench-debug runs="5":
    @python3 -m lab.scripts.debug_bench --runs "$1"

# Debian's own Linux kernel (apt-get download, cached), inspected at its panic for want of a root disk.
# inspect Debian's Linux kernel at its panic
inspect-linux *args:
    @lab inspect --kernel "$(python3 -m lab.host.distro)" --append "console=ttyS0 nokaslr" --when "Kernel panic" --ready-timeout 60 "$@"

# The QEMUs the lab can run (system 7.2, 10.0 from set-up), with versions.
# the QEMUs the lab can run, with versions
qemus *args:
    @lab qemus "$@"

# Every scenario, probe and claim on every backend (each QEMU with TCG, KVM), one table.
# everything on every backend, one table
matrix *args:
    @lab matrix "$@"

# serve the MkDocs site (live reload)
docs *args:
    @python3 -m mkdocs serve "$@"

# build the MkDocs site, warnings as errors
docs-build *args:
    @python3 -m mkdocs build --strict "$@"
