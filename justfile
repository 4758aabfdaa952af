# x86-64 kernel test lab. `just --list` shows the recipes.

# Recipe arguments reach the commands as arguments ("$@"), never pasted into shell text.
set positional-arguments

# install everything (idempotent), then boot and inspect the kernel
setup:
    @bash lab/setup.sh

# build the kernel (cargo, build-std, Debian's rustc 1.96)
build:
    @lab build

# the guest's serial console on this terminal (Ctrl-A X quits); prints the command that
# attaches gdb: just boot --kernel X --profile tcg
boot *args:
    @lab boot "$@"

# boot, stop at ready, decode and check IDT, GDT and TSS (pass --json for machines)
inspect *args:
    @lab inspect "$@"

# raise exceptions and check each frame: just fire all --style both
fire +args:
    @lab fire "$@"

# fatal paths, each in a fresh VM: just probe all
probe +args:
    @lab probe "$@"

# timer rates and pitfalls: just timer --rate 250
timer *args:
    @lab timer "$@"

# tasks, saved switch frames, traced switches, switch rates
tasks *args:
    @lab tasks "$@"

# syscall entry (swapgs, stack switch, frame), interrupts and faults in ring 3
ring3 *args:
    @lab ring3 "$@"

# the per-CPU area through GS_BASE
pcpu *args:
    @lab pcpu "$@"

# decode the frame at a handler: just frame --at isr_pf --shell "user run kread"
frame *args:
    @lab frame "$@"

# tutorial-style statements, each proven or refuted on the CPU
claims *args:
    @lab claims "$@"

# runs' --json output as one HTML report with pictures: just report fire.json -o report.html
report +args:
    @lab report "$@"

# gdb with the lab's commands, stopped at lab_ready (or --at SYMBOL); Ctrl-C stops the guest
debug *args:
    @lab debug "$@"

# gdb on a recording (just probe df-no-ist --record), at its end: reverse-stepi, lab-chain, lab-goto N
replay run *args:
    @lab debug --replay "$@"

# attach gdb with the lab's commands and the kernel's symbols to a running `just boot`
attach socket *args:
    @lab attach "$@"

# walk the page tables: just translate lab_ready 0x40002000
translate +args:
    @lab translate "$@"

# the exception catalog
scenarios:
    @lab scenarios

# list the QEMU profiles
profiles:
    @lab profiles

# the whole test suite: unit (no QEMU) and integration (real QEMU + gdb + kernel), one worker
# per core (pytest-xdist; each worker its own VMs); `just test -n 0` runs it in one process
test *args:
    @python3 -m pytest tests -n auto "$@"

# decoders, parsers and checks only; no QEMU
test-unit *args:
    @python3 -m pytest tests -m "not integration" "$@"

# tests that boot the real kernel
test-integration *args:
    @python3 -m pytest tests -m integration -n auto "$@"

# 200 consecutive scenarios + every probe, and TCG/KVM agreement (not in `just test`)
soak *args:
    @python3 -m lab.scripts.soak "$@"

# boot-to-ready floor vs `lab inspect`, medians of several runs (see README "Speed")
bench runs="7":
    @python3 -m lab.scripts.bench --runs "$1"

# the interactive path: `lab debug` to its prompt, record and replay of df-no-ist (medians)
bench-debug runs="5":
    @python3 -m lab.scripts.debug_bench --runs "$1"

# Debian's own Linux kernel (apt-get download, cached), inspected at its panic for want of a root disk
inspect-linux *args:
    @lab inspect --kernel "$(python3 -m lab.host.distro)" --append "console=ttyS0 nokaslr" --when "Kernel panic" --ready-timeout 60 "$@"

# the QEMUs the lab can run (system 7.2, 10.0 from set-up), with versions
qemus *args:
    @lab qemus "$@"

# every scenario, probe and claim on every backend (each QEMU with TCG, KVM), one table
matrix *args:
    @lab matrix "$@"
