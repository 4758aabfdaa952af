"""The `lab` commands: each turns its options into a run (lab/runs/), prints the result (as
JSON, or through lab/present/show.py) and returns the exit status. No library work here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lab.errors import UserError

#: Commands that drive the lab kernel's shell and symbols (inspect works on any kernel).
LAB_KERNEL_COMMANDS = {"fire", "probe", "timer", "tasks", "ring3", "pcpu", "frame", "translate", "claims"}


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _config(args):
    """The lab.toml the command reads (--config, else the nearest one), parsed."""
    from lab.host import config

    if getattr(args, "_config", None) is None:
        path = _path(getattr(args, "config", None))
        if path is not None and not path.is_file():
            raise UserError(f"--config {path}: " + ("a directory, not a lab.toml" if path.is_dir() else "no such file"))
        args._config = config.load(path or config.find())
    return args._config


def _vm(args):
    """The VM the options name (lab/runs/vm.py spec_from: each flag, else lab.toml's)."""
    from lab.runs.vm import spec_from

    return spec_from(_config(args), kernel=_path(args.kernel), profile=args.profile,
                     qemu=getattr(args, "qemu", None),
                     boot=getattr(args, "boot", None), display=getattr(args, "display", None), memory=args.memory, initrd=_path(args.initrd),
                     cpus=args.cpus,
                     qemu_args=tuple(args.qemu_args or ()), append=getattr(args, "append", None),
                     image=_path(getattr(args, "image", None)), symbols=_path(getattr(args, "symbols", None)),
                     ready_timeout=getattr(args, "ready_timeout", None), log_dir=_path(getattr(args, "log_dir", None)),
                     restore=not getattr(args, "fresh", True), command=args.command,
                     needs_lab_kernel=args.command in LAB_KERNEL_COMMANDS and not getattr(args, "agnostic", False),
                     release=args.release)


def _stop(args):
    """The command line's stop condition, else lab.toml's, else the ready point."""
    from lab.runs.vm import stop_from

    return stop_from(_config(args), at=args.at, after=args.after, when=args.when)


def _emit(args, result, show) -> int:
    """--json prints the result's JSON; otherwise `show(result, console)`; --html also writes
    the HTML report of that JSON. Exit status 1 when the result failed."""
    data = result.to_json()
    if getattr(args, "html", None):
        _write_report(Path(args.html), [(f"lab {args.command}", data)], f"lab {args.command}")
    _step_summary(args, data)
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        print()
    else:
        from lab.present.console import console

        show(result, console())
    return 1 if result.failed else 0


def _step_summary(args, data: dict) -> None:
    """On GitHub Actions, appends the result's Markdown summary to $GITHUB_STEP_SUMMARY."""
    import os

    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    from lab.present.ci import step_summary

    text = step_summary(f"lab {args.command}", json.loads(json.dumps(data, default=str)), getattr(args, "html", None))
    if text:
        try:
            with open(target, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise UserError(f"GITHUB_STEP_SUMMARY {target}: {exc.strerror}") from None


def _write_report(path: Path, runs, title: str) -> None:
    from lab.present.html.page import write

    try:
        write(path, json.loads(json.dumps(runs, default=str)), title)
    except OSError as exc:
        raise UserError(f"--html {path}: {exc.strerror}") from None


def check_outputs(args) -> None:
    """The output paths a command was given, refused before it runs."""
    if getattr(args, "html", None):
        _check_output(args.html, "--html")


def _check_output(path: str, flag: str) -> None:
    """Refuses an output path before any work is done (nothing is created for it)."""
    from lab.present.html.page import check_target

    try:
        check_target(Path(path))
    except OSError as exc:
        raise UserError(f"{flag} {path}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the path (lab.api callers; argv cannot carry one)
        raise UserError(f"{flag} {path!r}: {exc}") from None


def cmd_report(args) -> int:
    """`lab report RUN.json... -o PATH`: the runs' JSON as one HTML report."""
    _check_output(args.output, "-o")
    runs = []
    for name in args.runs:
        try:
            runs.append((name, json.loads(Path(name).read_text(encoding="utf-8"))))
        except OSError as exc:
            raise UserError(f"{name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"{name}: not JSON (not UTF-8 text); pass what a command printed with --json") from None
        except RecursionError:
            raise UserError(f"{name}: not JSON the lab reads (nested too deeply)") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{name}: not JSON ({exc.msg} at line {exc.lineno}); pass what a "
                            "command printed with --json") from None
    try:
        from lab.present.html.page import write

        write(Path(args.output), runs, args.title)
    except OSError as exc:
        raise UserError(f"-o {args.output}: {exc.strerror}") from None
    print(args.output)
    return 0


def cmd_build(args) -> int:
    from lab.host.build import build_kernel

    # On a terminal cargo shows its own progress; to a pipe only the result (the ELF's path),
    # the compiler's output kept for a failure.
    print(build_kernel(release=args.release, boot=args.boot, force=True, quiet=not sys.stderr.isatty()))
    return 0


def cmd_inspect(args) -> int:
    from lab.present import show
    from lab.runs.inspect import read_baseline, run_inspect, write_baseline

    stop = _stop(args)  # checked before anything boots
    baseline = read_baseline(Path(args.baseline)) if args.baseline else None
    if args.update_baseline:
        _check_output(args.update_baseline, "--update-baseline")
    report = run_inspect(_vm(args), stop, waivers=_config(args).waivers, baseline=baseline)
    if args.update_baseline:
        write_baseline(Path(args.update_baseline), report)
        print(f"lab inspect: baseline written to {args.update_baseline}", file=sys.stderr)
    return _emit(args, report, lambda r, c: show.inspect(r, c, vectors=args.vectors))


def cmd_fire(args) -> int:
    from lab.present import show
    from lab.runs.fire import run_fires, selected
    from lab.scenarios.exceptions import STYLES, check_style, check_tutorial_plan

    if args.agnostic:
        return _fire_agnostic(args)
    if args.image or args.append or args.symbols or args.at or args.after or args.when:
        raise UserError("--image, --append, --symbols and the stop options fire without the lab "
                        "kernel's harness: add --agnostic")
    styles = list(STYLES) if args.style == "both" else [check_style(args.style)]
    plan = selected(args.scenarios, styles)
    check_tutorial_plan(plan)
    if args.vector is not None and any(s.name != "int" for s, _ in plan):
        raise UserError("--vector applies to the 'int' scenario only")
    if args.cpu < 0:
        raise UserError(f"--cpu {args.cpu}: a CPU index, 0 or more")
    if args.cpu and args.no_inject and any(s.name == "nmi" for s, _ in plan):
        raise UserError("--no-inject: on an AP the lab injects nothing (the boot CPU sends CPU "
                        f"{args.cpu} its NMI IPI); --no-inject applies to the boot CPU's nmi")
    # A picture or a panel of the stack shows the stub's TrapFrame and the sentinels, which
    # only gdb's stops see: those default to the gdb observer.
    observer = args.observer or ("gdb" if args.html or args.verbose_panels else None)
    result = run_fires(_vm(args), plan, vector=args.vector, inject_nmi=not args.no_inject,
                       handler_timeout=args.timeout, observer=observer, cpu=args.cpu)
    return _emit(args, result, lambda r, c: show.fires(r, c, panels=args.verbose_panels))


def _fire_agnostic(args) -> int:
    """Kernel-agnostic firing (lab/experiments/inject.py) at any stop of any x86-64 kernel."""
    from lab.present import show
    from lab.runs.inject import run_injections
    from lab.scenarios.injections import selected

    injections = selected(args.scenarios)
    stop = _stop(args)  # checked before anything boots
    result = run_injections(_vm(args), injections, stop, timeout=args.timeout)
    return _emit(args, result, show.injections)


def cmd_probe(args) -> int:
    from lab.present import show
    from lab.runs.probe import run_probes, selected

    from lab.present.console import progress

    chosen = selected(args.probes)
    vm = _vm(args)
    with progress("lab probe", total=len(chosen)) as bar:
        result = run_probes(vm, chosen, timeout=args.timeout, record=_path(args.record),
                            progress=lambda name, done, total: bar.step(f"lab probe: {name}", done))
    return _emit(args, result, show.probes)


def cmd_timer(args) -> int:
    from lab.experiments.timer import validate
    from lab.present import show
    from lab.runs import experiments

    validate(args.rate or (), args.window, apic_only=bool(args.cpu))  # before the kernel is built
    result = experiments.timer(_vm(args), rates=args.rate or (100, 250), window_ms=args.window, cpus=args.cpu or ())
    return _emit(args, result, show.timer)


def cmd_tasks(args) -> int:
    from lab.present import show
    from lab.runs import experiments

    if args.cpu < 0:
        raise UserError(f"--cpu {args.cpu}: a CPU index, 0 or more")
    if args.cpu:
        return _emit(args, experiments.cpu_switch(_vm(args), args.cpu), show.cpu_switch)
    return _emit(args, experiments.tasks(_vm(args)), show.tasks)


def cmd_ring3(args) -> int:
    from lab.present import show
    from lab.runs import experiments

    return _emit(args, experiments.ring3(_vm(args)), show.ring3)


def cmd_pcpu(args) -> int:
    from lab.present import show
    from lab.runs import experiments

    return _emit(args, experiments.pcpu(_vm(args)), show.pcpu)


def cmd_frame(args) -> int:
    from lab.present import show
    from lab.runs import experiments

    return _emit(args, experiments.frame(_vm(args), args.at, args.shell, timeout=args.timeout), show.frame)


def cmd_translate(args) -> int:
    from lab.present import show
    from lab.runs import experiments

    return _emit(args, experiments.translate(_vm(args), args.addresses), show.translate)


def cmd_claims(args) -> int:
    from lab.present import show
    from lab.runs.claims import run_claims

    from lab.present.console import progress

    if args.seed is not None:
        from lab.checks.seedclaims import resolve

        resolve(args.seed)  # a wrong name is one line, before anything boots
    vm = _vm(args)
    with progress("lab claims") as bar:
        result = run_claims(vm, seed=args.seed,
                            progress=lambda step, done, total: bar.step(f"lab claims: {step} ({done + 1}/{total})"))
    if args.markdown and not args.json:
        from lab.present.claims_md import markdown

        print(markdown(result))
        return 1 if result.failed else 0
    return _emit(args, result, lambda r, c: show.claims(r, c, every=args.all_claims))


def _gdb_args(args) -> list[str]:
    out = []
    for e in args.ex or []:
        out += ["-ex", e]
    return out + (["-batch"] if args.batch else [])


def cmd_debug(args) -> int:
    from lab.runs.interactive import debug, replay

    if args.replay is not None:
        return replay(Path(args.replay), _gdb_args(args))
    vm = _vm(args)
    return debug(vm.kernel, vm.profile, args.at if args.at is not None else _config(args).at, _gdb_args(args), append=vm.append, image=vm.image,
                 symbols=vm.symbols)


def cmd_attach(args) -> int:
    from lab.runs.interactive import attach

    return attach(args.socket, _path(args.kernel), _gdb_args(args))


def cmd_boot(args) -> int:
    from lab.runs.interactive import boot_interactive

    vm = _vm(args)
    return boot_interactive(vm.kernel, vm.profile)


def _listing(args, rows: list[dict], title: str) -> int:
    """A catalog: a table, or with --json its rows."""
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        from lab.present import show
        from lab.present.console import console

        console().print(show.listing_table(rows, title))
    return 0


def cmd_scenarios(args) -> int:
    from lab.present import show
    from lab.scenarios.exceptions import CATALOG

    return _listing(args, show.scenario_rows(CATALOG), "exception scenarios (lab fire NAME)")


def cmd_probes(args) -> int:
    from lab.present import show
    from lab.scenarios.probes import CATALOG

    return _listing(args, show.probe_rows(CATALOG), "fatal-path probes (lab probe NAME)")


def cmd_profiles(args) -> int:
    from lab.host import profiles
    from lab.present import show

    return _listing(args, show.profile_rows(profiles.load(n) for n in profiles.available()),
                    "QEMU profiles (--profile NAME)")


def cmd_matrix(args) -> int:
    from lab.present import matrix as present
    from lab.runs import matrix

    if args.merge:
        parts = []
        for path in args.merge:
            try:
                parts.append(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                raise UserError(f"--merge {path}: cannot be read as JSON ({exc})") from None
        result = matrix.merge(parts)
    else:
        from lab.runs.vm import kernel_for

        kernel = kernel_for(_path(args.kernel), command="matrix", needs_lab_kernel=True, release=args.release,
                            boot="multiboot")
        result = matrix.run_matrix(kernel, shard=args.shard, kvm=not args.no_kvm,
                                   ready_timeout=args.ready_timeout or 10.0, restore=not args.fresh,
                                   log_dir=_path(args.log_dir))
    if args.markdown:
        sys.stdout.write(present.markdown(result))
        return 1 if result.failed else 0
    return _emit(args, result, present.show)


def cmd_qemus(args) -> int:
    from lab.present.matrix import show_qemus
    from lab.runs.matrix import find_qemus

    return _emit(args, find_qemus(), show_qemus)


from lab.cli.bisect import cmd_bisect  # noqa: E402 (its own module: commands.py is full)

COMMANDS = {
    "build": cmd_build, "profiles": cmd_profiles, "qemus": cmd_qemus, "matrix": cmd_matrix, "inspect": cmd_inspect, "fire": cmd_fire,
    "scenarios": cmd_scenarios, "probe": cmd_probe, "probes": cmd_probes, "timer": cmd_timer,
    "tasks": cmd_tasks, "ring3": cmd_ring3, "pcpu": cmd_pcpu, "frame": cmd_frame,
    "claims": cmd_claims, "debug": cmd_debug, "attach": cmd_attach, "translate": cmd_translate,
    "boot": cmd_boot, "report": cmd_report, "bisect": cmd_bisect,
}
