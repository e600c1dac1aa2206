"""``altpatch run`` and ``altpatch show``: one case, outside pytest.

``run`` prints the verdict of each mode x schedule and its discrepancies (exit 0 when
every run passes, 1 when one fails, 2 when the case or patcher cannot be loaded).
``show`` runs one mode under one schedule and prints everything about it: the image's
sections and alternatives (site and replacement disassembled), capabilities per CPU,
the patched streams, probes, findings, the timeline and the verdict.  Colour only on
a terminal and only when ``NO_COLOR`` is unset.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from pytest_altpatch.cases.modes import MODES
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Case, Catalog
    from pytest_altpatch.dialects import Dialect
    from pytest_altpatch.image.model import Image
    from pytest_altpatch.pipeline import PatcherUnderTest, ScheduleChoice

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_UNREADABLE = 2


@dataclass(frozen=True)
class _Loaded:
    """A case ready to run: the case, its catalog, the patchers and the schedules."""

    case: Case
    catalog: Catalog
    #: One per dialect to run: those the case lists among the ones asked for (the
    #: reference patcher's default: every dialect the case lists), preferred first.
    patchers: tuple[PatcherUnderTest, ...]
    schedules: tuple[ScheduleChoice, ...]
    modes: tuple[str, ...]

    @property
    def patcher(self) -> PatcherUnderTest:
        """The first patcher to run (``show`` runs only this one)."""
        return self.patchers[0]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("case", type=Path, metavar="CASE.yaml", help="the case file")
    parser.add_argument("--patcher", default="reference",
                        help="patcher: reference[:DIALECT] or package.module:attr "
                             "(default: reference)")
    parser.add_argument("--dialect", default=None,
                        help="dialects, comma-separated, or 'all' (default: the reference "
                             "patcher runs every dialect the case lists; show the first)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="mode to run (default: every mode the case has expectations for)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for the schedule (overrides the one in --schedule)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="corpus whose catalog resolves the case (default: the corpus "
                             "holding the file, else the bundled corpus)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="host seconds before the run ends as hung (the worker is killed)")
    parser.add_argument("--inprocess", action="store_true",
                        help="run the patcher in this process, not a supervised worker "
                             "(for debuggers: no kill, and the patcher can end the command)")


def register(subparsers: Any) -> None:
    """Add the ``run`` and ``show`` subcommands to the ``altpatch`` command."""
    run = subparsers.add_parser(
        "run", help="run one case and print its verdict",
        description="Run a case against a patcher and print the verdict and discrepancies. "
                    "Exit 0 on pass, 1 on failure, 2 when the case cannot be loaded.")
    _add_common(run)
    run.add_argument("--schedule", default=DEFAULT_SCHEDULES,
                     help="schedules, comma-separated: pct:0-1,rr:100,random:1-3,adversarial "
                          f"(default: {DEFAULT_SCHEDULES})")
    run.set_defaults(run=run_command)
    show = subparsers.add_parser(
        "show", help="run one case and show the image, patched streams, findings, timeline",
        description="Run a case once and print the image's alternatives (site and "
                    "replacement disassembled), the capabilities chosen per CPU, the patched "
                    "streams, findings, the timeline and the verdict.")
    _add_common(show)
    show.add_argument("--schedule", default=DEFAULT_SCHEDULES,
                      help=f"one schedule (default: {DEFAULT_SCHEDULES})")
    show.add_argument("--trace-lines", type=int, default=80, metavar="N",
                      help="show the last N timeline events (0: all; default 80)")
    show.set_defaults(run=show_command)


def _complain(error: AltpatchError, stream: TextIO) -> None:
    from pytest_altpatch.report import render_load_error  # noqa: PLC0415

    stream.write(f"altpatch: {render_load_error(error)}\n")


def _load(args: argparse.Namespace, err: TextIO) -> _Loaded | None:
    """Load case, catalog, patchers and schedules; print the problem and return None."""
    from pytest_altpatch.dialects import DIALECTS  # noqa: PLC0415
    from pytest_altpatch.patchers.registry import (  # noqa: PLC0415
        dialect_free_reference,
        parse_dialects,
    )
    from pytest_altpatch.pipeline import (  # noqa: PLC0415
        case_modes,
        parse_schedules,
        patchers_for,
        patchers_under_test,
        read_case_file,
    )
    from pytest_altpatch.supervisor import (  # noqa: PLC0415
        abandon_ahead,
        prestart_workers,
        set_few_items,
    )

    path: Path = args.case
    if not path.is_file():
        err.write(f"altpatch: {path}: no such case file\n")
        return None
    loaded, problems = read_case_file(path, args.corpus)
    for problem in problems:
        _complain(problem, err)
    if loaded is None:
        return None
    case = loaded.case
    try:
        # The reference patcher runs a case under every dialect it lists, unless told.
        dialects = parse_dialects(args.dialect) or (
            DIALECTS if dialect_free_reference(args.patcher) else None)
        patchers = patchers_under_test(args.patcher, dialects, inprocess=args.inprocess,
                                       timeout=args.timeout, prestart=False)
        schedules = tuple(parse_schedules(args.schedule))
    except AltpatchError as exc:
        err.write(f"altpatch: {exc.render()}\n")
        return None
    except ValueError as exc:
        err.write(f"altpatch: --schedule: {exc}\n")
        return None
    if args.seed is not None:
        schedules = tuple(dataclasses.replace(choice, seed=args.seed) for choice in schedules)
    modes = (args.mode,) if args.mode else case_modes(case)
    ready = _Loaded(case, loaded.catalog, patchers_for(case, patchers), schedules, modes)
    if not args.inprocess:
        # One or two items: the worker server imports what they need and warms no more.
        set_few_items(len(ready.patchers) * len(modes) * len(schedules) <= 2)
        prestart_workers()
    _start_first(ready, args.timeout)  # its worker runs it while this checks the build
    # (The build check loads the machine and the image layers: after the item is out.)
    from pytest_altpatch.scenarios.buildcheck import build_checked  # noqa: PLC0415

    # A case that does not build is unreadable, like one that does not load (exit 2).
    images, unbuildable = build_checked(case, loaded.catalog,
                                        [cast("Dialect", p.dialect) for p in patchers])
    for build_error in unbuildable:
        _complain(build_error, err)
    if unbuildable:
        abandon_ahead()
        return None
    _prepare_judging(case, images.values())
    return ready


def _prepare_judging(case: Case, images: Iterable[Image]) -> None:
    """While the first item runs: load the judge and the outcome's classes, and
    assemble the case's expected streams at the labels of each image it runs (those
    the build check made), so the judging after the reply is all that is left."""
    from pytest_altpatch import judge  # noqa: PLC0415
    from pytest_altpatch.scenarios import outcome  # noqa: F401, PLC0415 - for the reply

    for image in images:
        judge.prepare(case, image.symbols)


def _start_worker_early(args: argparse.Namespace) -> None:
    """Start the worker server before this process imports the pipeline and reads the
    case, so the two start-ups overlap (it imports what items need and, told that few
    items follow, runs no bundled case to warm later children; see ``_load``)."""
    if args.inprocess or not Path(args.case).is_file():
        return
    from pytest_altpatch.supervisor import prestart_workers, set_few_items  # noqa: PLC0415

    set_few_items(True)
    prestart_workers(fork=True)  # nothing but this package is loaded yet


def _item_key(patcher: PatcherUnderTest, mode: str, choice: ScheduleChoice) -> object:
    return ("altpatch run", patcher.spec, patcher.dialect, mode, choice.label, choice.seed)


def _start_first(loaded: _Loaded, timeout: float | None) -> None:
    """Start the first item that applies in its worker now (collected by its key)."""
    from pytest_altpatch.pipeline import not_applicable, start  # noqa: PLC0415

    for patcher in loaded.patchers:
        for mode in loaded.modes:
            if not_applicable(loaded.case, patcher.facts, mode) is not None:
                continue
            for choice in loaded.schedules:
                start(loaded.case, loaded.catalog, patcher, mode, choice,
                      key=_item_key(patcher, mode, choice), timeout=timeout, alone=True)
                return


def run_command(args: argparse.Namespace, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """``altpatch run``: every mode x schedule, a verdict line each, then discrepancies."""
    _start_worker_early(args)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    loaded = _load(args, err)  # (its first item is running when it returns)
    if loaded is None:
        return EXIT_UNREADABLE
    from pytest_altpatch.pipeline import check, not_applicable  # noqa: PLC0415
    from pytest_altpatch.report import render_failure, style_for  # noqa: PLC0415

    style = style_for(out)
    case, status = loaded.case, EXIT_PASS
    for patcher in loaded.patchers:
        _describe_patcher(patcher, out)
        for mode in loaded.modes:
            reason = not_applicable(case, patcher.facts, mode)
            if reason is not None:
                out.write(f"N/A   {case.id} {mode}: {reason}\n")
                continue
            for choice in loaded.schedules:
                checked = check(case, loaded.catalog, patcher, mode, choice,
                                timeout=args.timeout, key=_item_key(patcher, mode, choice))
                heading = (f"{case.id} {mode} {choice.label} seed {choice.seed} "
                           f"{patcher.facts.name} ({patcher.dialect})")
                if checked.passed:
                    out.write(f"{style.good('PASS')}  {heading}\n")
                    continue
                status = EXIT_FAIL
                out.write(f"{style.bad('FAIL')}  {heading}\n")
                report = render_failure(case, checked.outcome, checked.verdict, style=style,
                                        reproduce=checked.reproduce)
                out.write("".join(f"      {line}\n" for line in report.splitlines()))
    return status


def _describe_patcher(patcher: PatcherUnderTest, out: TextIO) -> None:
    """What a patcher says about itself (a native one: its objects and their hashes)."""
    out.write("".join(f"{line}\n" for line in patcher.facts.description))


def show_command(args: argparse.Namespace, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """``altpatch show``: one run, everything about it; exit 1 if the verdict fails."""
    _start_worker_early(args)
    from pytest_altpatch.pipeline import check, not_applicable  # noqa: PLC0415
    from pytest_altpatch.report import render_show, style_for  # noqa: PLC0415

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    loaded = _load(args, err)
    if loaded is None:
        return EXIT_UNREADABLE
    if len(loaded.schedules) != 1:
        err.write(f"altpatch: show runs one schedule; {args.schedule!r} names "
                  f"{len(loaded.schedules)}\n")
        return EXIT_UNREADABLE
    choice = loaded.schedules[0]
    mode = loaded.modes[0]
    patcher = loaded.patcher
    reason = not_applicable(loaded.case, patcher.facts, mode)
    if reason is not None:
        out.write(f"{loaded.case.id} {mode}: not applicable to {patcher.facts.name}: "
                  f"{reason}\n")
        return EXIT_PASS
    checked = check(loaded.case, loaded.catalog, patcher, mode, choice, timeout=args.timeout,
                    key=_item_key(patcher, mode, choice))
    _describe_patcher(patcher, out)
    out.write(render_show(loaded.case, checked.outcome, checked.verdict, style=style_for(out),
                          trace_lines=max(args.trace_lines, 0)) + "\n")
    out.write(f"reproduce: {checked.reproduce}\n")
    return EXIT_PASS if checked.passed else EXIT_FAIL


__all__ = ["register", "run_command", "show_command"]
