"""Each hostile input from issue #16: the code, the location and the host time it takes.

Run: ``python tests/benchmarks/bench_bad_inputs.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pytest_altpatch.a64.disasm import disassemble
from pytest_altpatch.cases.catalog import read_catalog
from pytest_altpatch.cases.yamlload import MAX_BYTES, load_yaml_file
from pytest_altpatch.cli import main as altpatch
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.image.elf_reader import decode_numbering
from pytest_altpatch.resources import bundled_corpus


def _case_with(tmp: Path, name: str, text: str) -> Callable[[], object]:
    path = tmp / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return lambda: load_yaml_file(path)


def _schema_with(tmp: Path, name: str, edit: dict[str, object]) -> Callable[[], object]:
    root = tmp / name
    source = bundled_corpus()
    for part in ("catalog", "schema"):
        shutil.copytree(source / part, root / part)
    shutil.copy(source / "VERSION", root / "VERSION")
    schema = root / "schema" / "catalog.schema.json"
    document = json.loads(schema.read_text())
    document["$defs"]["hostile"] = edit
    document["properties"]["hostile"] = {"$ref": "#/$defs/hostile"}
    schema.write_text(json.dumps(document))

    def load() -> object:
        _, problems = read_catalog(root)
        if problems:
            raise problems[0]
        return None
    return load


def main() -> None:
    """Print one line per input."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        fifo = tmp / "fifo.yaml"
        os.mkfifo(fifo)
        inputs: dict[str, Callable[[], object]] = {
            "title: !!bool maybe": _case_with(tmp, "bool", "format: 1\ntitle: !!bool maybe\n"),
            "!!timestamp junk": _case_with(tmp, "ts", "format: 1\ntitle: !!timestamp junk\n"),
            'title "\\ud800"': _case_with(tmp, "sur", 'format: 1\ntitle: "\\ud800"\n'),
            'title "\\e[2J"': _case_with(tmp, "esc", 'format: 1\ntitle: "\\e[2J"\n'),
            "4 MiB [1,1,...]": _case_with(tmp, "flat", "[" + "1," * (MAX_BYTES // 2 - 8)
                                          + "1]\n"),
            "350k keys (3.9 MB)": _case_with(tmp, "keys", "".join(f"k{i}: 1\n"
                                                                  for i in range(350_000))),
            "nesting 50k": _case_with(tmp, "deep", "a: " + "[" * 50_000 + "]" * 50_000),
            "FIFO as a case": lambda: load_yaml_file(fifo),
            "/dev/zero as a case": lambda: load_yaml_file(Path("/dev/zero")),
            "numbering JSON 200k deep": lambda: decode_numbering(b"[" * 200_000 + b"]" * 200_000),
            "schema $ref http://": _schema_with(tmp, "http", {"$ref": "http://127.0.0.1:9/x"}),
            "schema $ref file://": _schema_with(tmp, "file", {"$ref": "file:///etc/passwd"}),
            "schema pattern (a+)+$": _schema_with(tmp, "redos", {"pattern": "^(a+)+$"}),
        }
        print(f"{'input':28s} {'code':20s} {'time':>8s}  location")
        for label, load in inputs.items():
            start = time.perf_counter()
            try:
                load()
                code, where = "(loaded)", ""
            except AltpatchError as exc:
                code, where = exc.code, str(exc.location)
            seconds = time.perf_counter() - start
            print(f"{label:28s} {code:20s} {seconds * 1000:6.1f} ms  {where[-70:]}")
        start = time.perf_counter()
        text = disassemble((0x14000002).to_bytes(4, "little"), 0x1000, {"tgt\\u1": 0x1008})
        label = "symbol tgt\\u1 (disasm)"
        print(f"{label:28s} {'(literal)':20s} "
              f"{(time.perf_counter() - start) * 1000:6.1f} ms  {text[0].text}")
        with contextlib.redirect_stdout(io.StringIO()) as out:
            start = time.perf_counter()
            status = altpatch(["catalog"])
        print(f"{'altpatch catalog (captured)':28s} exit {status:<15d} "
              f"{(time.perf_counter() - start) * 1000:6.1f} ms  {len(out.getvalue())} chars")


if __name__ == "__main__":
    main()
