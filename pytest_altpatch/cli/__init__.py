"""The ``altpatch`` command: a second face over the same pipeline as the plugin.

Subcommands live in this package, one module per layer they face (``cases``: lint,
schema, catalog, export; ``image``: build, inspect; ``run``: run, show; ``native``;
``kernel``: image run, image fetch); each exposes ``register(subparsers)`` which adds its
parsers and sets ``run`` (a function taking the parsed namespace and returning the exit
status).  Nothing here needs pytest.  Exit status: 0 clean, 1
problems found, 2 usage or unreadable input.  A user error never prints a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

from pytest_altpatch import __version__
from pytest_altpatch.errors import AltpatchError

#: Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "pytest_altpatch.cli.cases",
    "pytest_altpatch.cli.image",
    "pytest_altpatch.cli.run",
    "pytest_altpatch.cli.native",
    "pytest_altpatch.cli.kernel",
)
#: The commands each of them adds (the parser of a command line builds its own only).
COMMANDS: dict[str, str] = {
    **dict.fromkeys(("lint", "schema", "catalog", "export"), "pytest_altpatch.cli.cases"),
    **dict.fromkeys(("build", "inspect"), "pytest_altpatch.cli.image"),
    **dict.fromkeys(("run", "show"), "pytest_altpatch.cli.run"),
    "native": "pytest_altpatch.cli.native",
    "image": "pytest_altpatch.cli.kernel",
}
#: Options of the command itself, before the subcommand; these print and exit.
_PRINTING_OPTIONS = frozenset({"-h", "--help", "--version"})
#: Commands that run items in a worker server, and the words that make them run none.
_ITEM_COMMANDS = frozenset({"run", "show"})
_NO_WORKER_WORDS = frozenset({"-h", "--help", "--inprocess"})

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), or None
    when it names none or asks for the command's own help or version."""
    for word in argv:
        if word in _PRINTING_OPTIONS or word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand; for ``argv`` whose
    subcommand is known, with only the subcommands of the module that has it (building
    every parser cost about 15 ms of ``altpatch run``, before its worker starts)."""
    command = _command_of(argv) if argv is not None else None
    wanted = COMMANDS.get(command) if command is not None else None
    parser = argparse.ArgumentParser(
        prog="altpatch",
        description="Build, inspect, run and lint AArch64 alternatives conformance cases.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks for internal errors"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES if wanted is None else (wanted,):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that layer has no commands yet
            raise
        register = cast(Callable[[object], None], module.register)
        register(subparsers)
    return parser


def command() -> NoReturn:
    """The ``altpatch`` console script: :func:`main`, then an exit that runs the exit
    handlers but does not finalise the heap (see :mod:`pytest_altpatch.process_exit`)."""
    from pytest_altpatch.process_exit import leave  # noqa: PLC0415

    _fork_worker_early(sys.argv[1:])
    leave(main())


def _fork_worker_early(words: Sequence[str]) -> None:
    """For a command that runs items, fork its worker server before the arguments are
    parsed: the server needs neither the parsing nor what the command then imports, so
    its warm-up overlaps all of them (the command's session takes it when it starts
    its workers, see :func:`pytest_altpatch.supervisor.forked.fork_early`)."""
    if _command_of(words) in _ITEM_COMMANDS and not _NO_WORKER_WORDS.intersection(words):
        from pytest_altpatch.supervisor.forked import fork_early  # noqa: PLC0415

        fork_early(warm_cases=False)  # (a run of one case: few items, see cli.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the subcommand and return its exit status (the console
    script's work, without its exit; see :func:`command`)."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return EXIT_USAGE
    from pytest_altpatch.terminal import EscapingStream  # noqa: PLC0415

    # Case text, symbol names and patcher messages are data: escaped before printing.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingStream(stdout), EscapingStream(stderr)
    try:
        return int(run(args))
    except BrokenPipeError:
        # `altpatch inspect --json x.elf | head`: the reader has gone; end quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout.fileno())
        return EXIT_PROBLEMS
    except AltpatchError as exc:
        print(f"altpatch: {exc.render()}", file=sys.stderr)
        return EXIT_USAGE if exc.phase == "load" else EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug in altpatch itself, never the user's input
        if args.debug:
            raise
        print(
            f"altpatch: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        sys.stdout, sys.stderr = stdout, stderr


__all__ = ["COMMANDS", "COMMAND_MODULES", "EXIT_INTERNAL", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE",
           "build_parser", "command", "main"]
