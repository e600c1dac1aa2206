"""`altpatch lint/catalog/export`, the loader's locations and its isolation from PyYAML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_altpatch.cases import load_case, load_corpus, parse_platform
from pytest_altpatch.cases.export import corpus_document, dumps
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.cli import main
from pytest_altpatch.errors import SpecError

from .conftest import VALID_CASE


def test_lint_of_the_bundled_corpus_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err


def test_lint_reports_one_line_per_problem_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID_CASE.replace("titel", "x").replace("title:", "titel:")
                   .replace("cortex-a57/r1p3", "cortex-a75x/r1p3"))
    assert main(["lint", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{bad}:3:1: SPEC_SCHEMA: unknown key 'titel'")
    assert all(": SPEC_" in line for line in lines)


def test_lint_never_prints_a_traceback_in_a_subprocess(tmp_path: Path) -> None:
    (tmp_path / "garbage.yaml").write_bytes(b"\xff\xfe\x00{[&*!!python/object:os.system")
    result = subprocess.run([sys.executable, "-m", "pytest_altpatch.cli", "lint", str(tmp_path)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "SPEC_IO" in result.stdout


def test_lint_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["lint", "--no-such-option"])
    assert caught.value.code == 2


def test_export_round_trips_through_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--json"]) == 0
    text = capsys.readouterr().out
    document = json.loads(text)
    assert dumps(document) == text  # sorted keys, deterministic
    corpus = load_corpus()
    assert document == json.loads(dumps(corpus_document(corpus)))
    assert [case["id"] for case in document["cases"]] == sorted(c.id for c in corpus.cases)
    a53 = document["catalog"]["cpus"]["cortex-a53"]
    assert a53["implementer"] == 0x41 and a53["part"] == 0xD03  # numbers stay integers


def test_catalog_json_lists_every_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["cpus"]) >= 30 and len(document["errata"]) >= 25
    assert len(document["features"]) >= 6
    assert document["numberings"]["xen-4.17"]["ncaps"] == 18


def test_bundled_corpus_meets_the_catalog_minimums() -> None:
    corpus = load_corpus()
    catalog = corpus.catalog
    assert len(corpus.cases) >= 12
    tables = {table for erratum in catalog.errata.values() for table in erratum.tables}
    assert tables == {"linux", "xen"}
    xen = catalog.numberings["xen-4.17"]
    assert xen.number("ARM64_WORKAROUND_1508412") == 17 and xen.number("LIVEPATCH_FEATURE") == 4
    assert xen.number("ARM64_HAS_SB") == 16  # alias of Xen's ARM_HAS_SB
    assert catalog.numberings["linux-4.9"].number("ARM64_HAS_32BIT_EL0") == 13
    assert catalog.numberings["linux-6.1"].callback_marking == "bit15"


def test_source_block_location_is_the_first_text_line(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(VALID_CASE)
    case = load_case(path, catalog)
    # "  text: |" is line 10; the first assembly line "entry:" is line 11, column 5.
    assert (case.image.text.location.line, case.image.text.location.column) == (11, 5)
    stream = case.expect.boot.text[0] if case.expect.boot else None
    assert stream is not None and stream.location.line == 20
    assert case.locations["platform.1"].line == 6
    assert case.location_of("expect.boot.probes.0.result.x0").line == 22
    assert case.platform[2].revidr == 0x100 and case.platform[2].label.endswith("revidr=0x100")


def test_parse_platform_accepts_one_comma_separated_string(catalog: Catalog) -> None:
    cpus = parse_platform("2x cortex-a57/r1p0, 2x cortex-a53/r0p4", catalog)
    assert [hex(cpu.midr) for cpu in cpus] == ["0x411fd070"] * 2 + ["0x410fd034"] * 2
    assert cpus[0].ctr == 0x8444C004 and cpus[0].dminline_bytes == 64
    inline = parse_platform([{"midr": 0x414FD0B0, "ctr": 0x9444C004, "id_aa64isar0": 0}],
                            catalog)
    assert inline[0].model is None and inline[0].id_regs["id_aa64isar0_el1"] == 0
    assert inline[0].id_regs["id_aa64pfr0_el1"] != 0  # the rest comes from the A76 entry
    with pytest.raises(SpecError) as caught:
        parse_platform("cortex-a53/r0p4 bogus=1", catalog)
    assert caught.value.code == "SPEC_BAD_PLATFORM"


def test_loading_leaves_pyyaml_global_loaders_untouched(tmp_path: Path, catalog: Catalog) -> None:
    before = (dict(yaml.SafeLoader.yaml_constructors), dict(yaml.Loader.yaml_constructors),
              dict(yaml.SafeLoader.yaml_implicit_resolvers))
    path = tmp_path / "case.yaml"
    path.write_text(VALID_CASE)
    load_case(path, catalog)
    load_corpus()
    after = (dict(yaml.SafeLoader.yaml_constructors), dict(yaml.Loader.yaml_constructors),
             dict(yaml.SafeLoader.yaml_implicit_resolvers))
    assert before == after
    # Plain PyYAML still accepts duplicate keys: our check did not leak into it.
    assert yaml.safe_load("a: 1\na: 2\n") == {"a": 2}
