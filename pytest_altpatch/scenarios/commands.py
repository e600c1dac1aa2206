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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from pytest_altpatch.cases.modes import MODES
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Case, Catalog, Dialect
    from pytest_altpatch.patchers.contract import Patcher
    from pytest_altpatch.patchers.facts import PatcherFacts
    from pytest_altpatch.pipeline import ScheduleChoice
    from pytest_altpatch.scenarios.outcome import Outcome

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_UNREADABLE = 2


@dataclass(frozen=True)
class _Loaded:
    """A case ready to run: the case, its catalog, the patcher and the schedules."""

    case: Case
    catalog: Catalog
    #: One per dialect to run: those the case lists among the ones asked for (the
    #: reference patcher's default: every dialect the case lists).
    patchers: tuple[PatcherFacts, ...]
    schedules: tuple[ScheduleChoice, ...]
    modes: tuple[str, ...]
    #: The patcher objects by dialect, only with ``--inprocess``; otherwise they live in
    #: the supervised worker.
    inprocess_patchers: Mapping[str, Patcher] = field(default_factory=dict)

    def outcome(self, args: argparse.Namespace, mode: str, choice: ScheduleChoice,
                patcher: PatcherFacts) -> Outcome:
        """Run one mode under one schedule against ``patcher`` through the supervisor."""
        from pytest_altpatch.supervisor import item_request, run_item  # noqa: PLC0415

        request = item_request(self.case, self.catalog, mode=mode, patcher=args.patcher,
                               dialect=patcher.asked_dialect, schedule=choice.name,
                               seed=choice.seed, timeout=args.timeout, facts=patcher)
        return run_item(request, patcher=self.inprocess_patchers.get(patcher.dialect))

    @property
    def patcher(self) -> PatcherFacts:
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
    """Load case, catalog, patcher and schedules; print the problem and return None."""
    from pytest_altpatch.cases.case import read_case  # noqa: PLC0415
    from pytest_altpatch.cases.catalog import read_catalog  # noqa: PLC0415
    from pytest_altpatch.cases.corpus import find_corpus_root  # noqa: PLC0415
    from pytest_altpatch.cases.model import DIALECTS, preferred_dialect  # noqa: PLC0415
    from pytest_altpatch.cases.modes import case_modes  # noqa: PLC0415
    from pytest_altpatch.patchers.facts import PatcherFacts  # noqa: PLC0415
    from pytest_altpatch.patchers.registry import (  # noqa: PLC0415
        dialect_free_reference,
        parse_dialects,
        resolve_patchers,
    )
    from pytest_altpatch.pipeline import parse_schedules  # noqa: PLC0415
    from pytest_altpatch.resources import bundled_corpus  # noqa: PLC0415
    from pytest_altpatch.scenarios.buildcheck import build_problems  # noqa: PLC0415
    from pytest_altpatch.supervisor import patchers_facts  # noqa: PLC0415

    path: Path = args.case
    if not path.is_file():
        err.write(f"altpatch: {path}: no such case file\n")
        return None
    root = args.corpus or find_corpus_root(path.resolve().parent) or bundled_corpus()
    catalog, problems = read_catalog(root)
    if catalog is None or problems:
        for problem in problems:
            _complain(problem, err)
        return None
    case, problems = read_case(path, catalog, corpus_root=root)
    if case is None:
        for problem in problems:
            _complain(problem, err)
        return None
    try:
        # The reference patcher runs a case under every dialect it lists, unless told.
        dialects = parse_dialects(args.dialect) or (
            DIALECTS if dialect_free_reference(args.patcher) else None)
        inprocess_patchers: dict[str, Patcher] = {}
        if args.inprocess:
            resolved = resolve_patchers(args.patcher, dialects)
            inprocess_patchers = {patcher.dialect: patcher for patcher in resolved}
            patchers = PatcherFacts.of_all(resolved, dialects)
        else:  # even creating a patcher runs its code: that happens in a worker too
            patchers = patchers_facts(args.patcher, dialects, timeout=args.timeout)
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
    # A case that does not build is unreadable, like one that does not load (exit 2).
    unbuildable = build_problems(case, catalog, [cast("Dialect", p.dialect) for p in patchers])
    for build_error in unbuildable:
        _complain(build_error, err)
    if unbuildable:
        return None
    # The preferred dialect first: the one `show` (and `build`) default to.
    first = preferred_dialect(case.dialects)
    listed = tuple(sorted((p for p in patchers if p.dialect in case.dialects),
                          key=lambda p: (p.dialect != first, case.dialects.index(p.dialect))))
    return _Loaded(case, catalog, listed or patchers[:1], schedules, modes, inprocess_patchers)


def _reproduce(args: argparse.Namespace, case: Case, mode: str, choice: ScheduleChoice,
               patcher: PatcherFacts) -> str:
    from pytest_altpatch.report import reproduce_command  # noqa: PLC0415

    return reproduce_command(case.path, mode=mode, patcher=args.patcher,
                             dialect=patcher.dialect, schedule=choice.label, seed=choice.seed)


def run_command(args: argparse.Namespace, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """``altpatch run``: every mode x schedule, a verdict line each, then discrepancies."""
    from pytest_altpatch.judge import judge  # noqa: PLC0415
    from pytest_altpatch.pipeline import not_applicable  # noqa: PLC0415
    from pytest_altpatch.report import render_failure, style_for  # noqa: PLC0415

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    loaded = _load(args, err)
    if loaded is None:
        return EXIT_UNREADABLE
    style = style_for(out)
    case, status = loaded.case, EXIT_PASS
    for patcher in loaded.patchers:
        _describe_patcher(patcher, out)
        for mode in loaded.modes:
            reason = not_applicable(case, patcher, mode)
            if reason is not None:
                out.write(f"N/A   {case.id} {mode}: {reason}\n")
                continue
            for choice in loaded.schedules:
                outcome = loaded.outcome(args, mode, choice, patcher)
                verdict = judge(case, outcome)
                heading = (f"{case.id} {mode} {choice.label} seed {choice.seed} "
                           f"{patcher.name} ({patcher.dialect})")
                if verdict.passed:
                    out.write(f"{style.good('PASS')}  {heading}\n")
                    continue
                status = EXIT_FAIL
                out.write(f"{style.bad('FAIL')}  {heading}\n")
                report = render_failure(case, outcome, verdict, style=style,
                                        reproduce=_reproduce(args, case, mode, choice, patcher))
                out.write("".join(f"      {line}\n" for line in report.splitlines()))
    return status


def _describe_patcher(patcher: Patcher | PatcherFacts, out: TextIO) -> None:
    """What a patcher says about itself (a native one: its objects and their hashes)."""
    lines = getattr(patcher, "description", None)
    if lines is None:
        describe = getattr(patcher, "describe", None)
        lines = describe() if callable(describe) else ()
    out.write("".join(f"{line}\n" for line in lines))


def show_command(args: argparse.Namespace, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """``altpatch show``: one run, everything about it; exit 1 if the verdict fails."""
    from pytest_altpatch.judge import judge  # noqa: PLC0415
    from pytest_altpatch.pipeline import not_applicable  # noqa: PLC0415
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
    reason = not_applicable(loaded.case, loaded.patcher, mode)
    if reason is not None:
        out.write(f"{loaded.case.id} {mode}: not applicable to {loaded.patcher.name}: "
                  f"{reason}\n")
        return EXIT_PASS
    outcome = loaded.outcome(args, mode, choice, loaded.patcher)
    verdict = judge(loaded.case, outcome)
    _describe_patcher(loaded.patcher, out)
    out.write(render_show(loaded.case, outcome, verdict, style=style_for(out),
                          trace_lines=max(args.trace_lines, 0)) + "\n")
    out.write(f"reproduce: {_reproduce(args, loaded.case, mode, choice, loaded.patcher)}\n")
    return EXIT_PASS if verdict.passed else EXIT_FAIL


__all__ = ["register", "run_command", "show_command"]
