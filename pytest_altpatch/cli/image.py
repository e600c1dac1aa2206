"""``altpatch build`` and ``altpatch inspect``.

``build`` writes a case's image as ELF (and each payload as ``<prefix>-<name>.o``) so
people can look at it with their own tools.  ``inspect`` prints the alternatives
table of any ELF with a lint; exit 0 clean, 1 lint findings, 2 unreadable file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_altpatch.dialects import DIALECTS, Dialect, preferred_dialect
from pytest_altpatch.errors import AltpatchError, ElfError

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import CapNumbering

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_UNREADABLE = 2


def payload_path(output: Path, payload: str) -> Path:
    """``image.elf`` + payload ``p1`` -> ``image-p1.o`` (``-o`` acts as a prefix)."""
    stem = output.name[:-4] if output.name.endswith(".elf") else output.name
    return output.with_name(f"{stem}-{payload}.o")


def run_build(args: argparse.Namespace) -> int:
    """Build a case's image (and payload objects) as ELF files."""
    from pytest_altpatch.cases import load_case, load_catalog  # noqa: PLC0415
    from pytest_altpatch.image.builder import build_image  # noqa: PLC0415
    from pytest_altpatch.image.elf_writer import write_image, write_relocatable  # noqa: PLC0415
    from pytest_altpatch.image.payload import build_payload  # noqa: PLC0415

    catalog = load_catalog()
    case = load_case(Path(args.case), catalog)
    # The dialect `altpatch show` runs by default, so build and show agree.
    dialect: Dialect = args.dialect or preferred_dialect(case.dialects)
    numbering = catalog.numberings[dialect]
    image = build_image(case, dialect=dialect, numbering=numbering)
    output = Path(args.output)
    written = [output]
    output.write_bytes(write_image(image))
    for payload in case.payloads:
        path = payload_path(output, payload.name)
        path.write_bytes(write_relocatable(build_payload(payload, image, file=case.path)))
        written.append(path)
    print(f"{case.id}: {dialect}, {len(image.alt_entries)} alternative(s), "
          f"text {image.text_start:#x}-{image.text_end:#x}")
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _catalog_numbering(dialect: Dialect | None) -> CapNumbering | None:
    from pytest_altpatch.cases import load_catalog  # noqa: PLC0415

    if dialect is None:
        return None
    try:
        return load_catalog().numberings.get(dialect)
    except AltpatchError:
        return None  # inspection works without names


def run_inspect(args: argparse.Namespace) -> int:
    """Print (or emit as JSON) the alternatives table of an ELF file, with a lint."""
    from pytest_altpatch.image.inspect import inspect_elf, render_text  # noqa: PLC0415

    try:
        data = Path(args.file).read_bytes()
        base = Path(args.base_image).read_bytes() if args.base_image else None
    except OSError as error:
        print(f"altpatch inspect: cannot read {error.filename}: {error.strerror}",
              file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        inspection = inspect_elf(data, dialect=args.dialect, base_image=base)
        if inspection.ncaps is None and args.dialect:
            numbering = _catalog_numbering(args.dialect)
            if numbering is not None:
                inspection = inspect_elf(data, dialect=args.dialect, numbering=numbering,
                                         base_image=base)
    except ElfError as error:
        print(f"altpatch inspect: {args.file}: {error.render()}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.json:
        document: dict[str, Any] = {"file": str(args.file), **inspection.to_json()}
        print(json.dumps(document, indent=2, sort_keys=False))
    else:
        print(render_text(inspection))
    return EXIT_FINDINGS if inspection.findings else EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``build`` and ``inspect`` to the ``altpatch`` command."""
    build = subparsers.add_parser("build", help="build a case's image as ELF",
                                  description=run_build.__doc__)
    build.add_argument("case", help="case YAML file")
    build.add_argument("-o", "--output", required=True,
                       help="image ELF path; payloads are written as <prefix>-<name>.o")
    build.add_argument("--dialect", choices=DIALECTS, default=None,
                       help="dialect (default: linux-6.1 if the case lists it, else its first)")
    build.set_defaults(run=run_build)

    inspect = subparsers.add_parser("inspect", help="print and lint an ELF's alternatives",
                                    description=run_inspect.__doc__)
    inspect.add_argument("file", help="ELF image or relocatable object")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--dialect", choices=DIALECTS, default=None,
                         help="how to read capability fields (default: recorded, else "
                              "linux-6.1)")
    inspect.add_argument("--base-image", default=None,
                         help="image whose symbols resolve an object's undefined symbols")
    inspect.set_defaults(run=run_inspect)


__all__ = ["payload_path", "register", "run_build", "run_inspect"]
