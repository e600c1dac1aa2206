"""``altpatch lint``, ``altpatch catalog`` and ``altpatch export``.

Each command prints problems as ``file:line:col: CODE: message`` lines and never a
traceback for bad input: every failure a user can cause is a coded error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_altpatch.errors import AltpatchError

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Catalog

# The case layer is imported by the commands that use it, not by the parser every
# ``altpatch`` command builds (``altpatch run`` starts its worker only after parsing).

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def format_problem(problem: AltpatchError) -> str:
    """``file:line:col: CODE: message (json path; hint)``, the lint line format."""
    where = problem.location
    head = where.file or "<input>"
    if where.line is not None:
        head += f":{where.line}"
        if where.column is not None:
            head += f":{where.column}"
    extras = [f"at {where.json_path}"] if where.json_path else []
    if problem.hint:
        extras.append(problem.hint)
    tail = f" ({'; '.join(extras)})" if extras else ""
    return f"{head}: {problem.code}: {problem.message}{tail}"


def run_lint(args: argparse.Namespace) -> int:
    """Lint corpus roots, directories or case files; one line per problem."""
    # Lint also builds every case for every dialect it lists (the build is a later layer's
    # job, so it is passed in; loading alone would pass `movv x0, #2`).
    from pytest_altpatch.cases.corpus import lint_paths  # noqa: PLC0415
    from pytest_altpatch.resources import bundled_corpus  # noqa: PLC0415
    from pytest_altpatch.scenarios.buildcheck import build_problems  # noqa: PLC0415

    paths = [Path(p) for p in args.paths] or [bundled_corpus()]
    problems = lint_paths(paths, check=None if args.no_build else build_problems)
    for problem in problems:
        print(format_problem(problem))
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def _catalog_text(catalog: Catalog) -> str:
    from pytest_altpatch.cases.catalog import format_revision  # noqa: PLC0415
    from pytest_altpatch.cases.model import MIDR_RV_MASK  # noqa: PLC0415

    lines = [f"CPUs ({len(catalog.cpus)}):"]
    for name, cpu in catalog.cpus.items():
        lines.append(f"  {name:<20} {cpu.display_name:<36} MIDR {cpu.midr_model:#010x}  "
                     f"CTR {cpu.ctr:#010x}")
    lines.append(f"Errata ({len(catalog.errata)}):")
    for name, erratum in catalog.errata.items():
        spans = []
        for entry in erratum.matches:
            span = f"{entry.model:#010x}"
            if (entry.rv_min, entry.rv_max) != (0, MIDR_RV_MASK):
                span += f" {format_revision(entry.rv_min)}..{format_revision(entry.rv_max)}"
            spans.append(span)
        lines.append(f"  {name:<20} {erratum.capability:<40} [{','.join(erratum.tables)}] "
                     f"{'; '.join(spans)}")
    lines.append(f"Features ({len(catalog.features)}):")
    for name, feature in catalog.features.items():
        lines.append(f"  {name:<20} {feature.capability:<40} {feature.register}"
                     f"[{feature.shift + feature.width - 1}:{feature.shift}] >= "
                     f"{feature.min_value}{' (signed)' if feature.signed else ''}")
    lines.append("Numberings:")
    for dialect, numbering in catalog.numberings.items():
        lines.append(f"  {dialect:<10} NCAPS {numbering.ncaps:<3} callbacks: "
                     f"{numbering.callback_marking}")
    lines.append(f"Patcher features ({len(catalog.patcher_features)}):")
    for name, meaning in catalog.patcher_features.items():
        lines.append(f"  {name:<20} {meaning}")
    return "\n".join(lines) + "\n"


def run_catalog(args: argparse.Namespace) -> int:
    """List the catalog's CPUs, errata, features and numberings."""
    from pytest_altpatch.cases.catalog import load_catalog  # noqa: PLC0415
    from pytest_altpatch.cases.export import catalog_document, dumps  # noqa: PLC0415

    catalog = load_catalog(Path(args.corpus) if args.corpus else None)
    sys.stdout.write(dumps(catalog_document(catalog)) if args.json else _catalog_text(catalog))
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    """Write the whole resolved corpus as one JSON document."""
    from pytest_altpatch.cases.corpus import load_corpus  # noqa: PLC0415
    from pytest_altpatch.cases.export import corpus_document, dumps  # noqa: PLC0415

    if not args.json:
        print("altpatch export: only --json output exists; pass --json", file=sys.stderr)
        return EXIT_USAGE
    corpus = load_corpus(Path(args.corpus) if args.corpus else None,
                         accept_major=args.accept_major)
    text = dumps(corpus_document(corpus))
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"altpatch export: cannot write {args.output}: {exc.strerror}",
                  file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    return EXIT_OK


def run_schema(args: argparse.Namespace) -> int:
    """Print the path of the case (or catalog) schema, or copy it into a directory,
    with the modeline that points an editor at it."""
    from pytest_altpatch.cases.schema import schema_path  # noqa: PLC0415
    from pytest_altpatch.resources import bundled_corpus  # noqa: PLC0415

    source = schema_path(Path(args.corpus) if args.corpus else bundled_corpus(), args.kind)
    if not source.is_file():
        print(f"altpatch schema: {source}: no such schema", file=sys.stderr)
        return EXIT_USAGE
    target = source
    if args.write:
        directory = Path(args.write)
        target = directory / source.name
        try:
            directory.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        except OSError as exc:
            print(f"altpatch schema: cannot write {target}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    print(target.resolve())
    if args.kind == "case":
        print(f"# first line of a case file: # yaml-language-server: $schema={target.resolve()}",
              file=sys.stderr)
    return EXIT_OK


def _guarded(run: Any) -> Any:
    """Report coded errors as ``location: CODE: message`` (the CLI's own fallback
    would prefix them); anything else is left to the CLI's internal-error path."""
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(run(args))
        except AltpatchError as exc:
            print(format_problem(exc), file=sys.stderr)
            return EXIT_USAGE if exc.code in ("SPEC_IO", "SPEC_VERSION") else EXIT_PROBLEMS
    wrapper.__doc__ = run.__doc__
    return wrapper


def register(subparsers: Any) -> None:
    """Add the case-format layer's subcommands to the ``altpatch`` parser."""
    lint = subparsers.add_parser(
        "lint", help="check corpus files (default: the bundled corpus)",
        description="Validate case and catalog files and build every case for every dialect "
                    "it lists; print file:line:col: CODE: message per problem. Exit 0 clean, "
                    "1 problems, 2 usage.")
    lint.add_argument("paths", nargs="*", metavar="PATH",
                      help="corpus root, case directory or case file")
    lint.add_argument("--no-build", action="store_true",
                      help="only load and validate; do not build each case for its dialects")
    lint.set_defaults(run=_guarded(run_lint))
    schema = subparsers.add_parser(
        "schema", help="print the JSON schema's path (or write a copy) for editors",
        description="Print the path of the case schema (or the catalog's), or copy it into "
                    "DIR with --write; an editor with the YAML language server uses it "
                    "through a first-line modeline.")
    schema.add_argument("kind", nargs="?", choices=("case", "catalog"), default="case",
                        help="which schema (default: case)")
    schema.add_argument("--write", metavar="DIR", help="copy the schema into DIR")
    schema.add_argument("--corpus", metavar="DIR", help="corpus root (default: bundled)")
    schema.set_defaults(run=_guarded(run_schema))

    catalog = subparsers.add_parser("catalog", help="list CPUs, errata and features")
    catalog.add_argument("--json", action="store_true", help="print the catalog as JSON")
    catalog.add_argument("--corpus", metavar="DIR", help="corpus root (default: bundled)")
    catalog.set_defaults(run=_guarded(run_catalog))

    export = subparsers.add_parser("export", help="write the resolved corpus as JSON")
    export.add_argument("--json", action="store_true", help="JSON output (the only format)")
    export.add_argument("--corpus", metavar="DIR", help="corpus root (default: bundled)")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    export.add_argument("--accept-major", type=int, metavar="N",
                        help="accept a corpus whose major version is N")
    export.set_defaults(run=_guarded(run_export))


__all__ = ["format_problem", "register", "run_catalog", "run_export", "run_lint",
           "run_schema"]
