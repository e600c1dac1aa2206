"""ABI v1: manifest, header, cflags, linking errors, and misbehaving native patchers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_altpatch.cli import main
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.judge import judge
from pytest_altpatch.native import abi
from pytest_altpatch.native.commands import ABI_FLAGS
from pytest_altpatch.native.conformance import run_corpus
from pytest_altpatch.native.manifest import INCLUDE_DIR, load_manifest
from pytest_altpatch.native.patcher import load_native_patcher
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.scenarios.runner import run_case
from pytest_altpatch.spec import load_corpus

ROOT = Path(__file__).resolve().parents[2]
A64_EXAMPLE = ROOT / "conformance" / "native" / "a64" / "manifest.yaml"
CORPUS = load_corpus()
CASE = next(c for c in CORPUS.cases if c.id == "branch/b-external")


def _manifest(tmp_path: Path, source: str, *, entry: str = "entry",
              call: str = "every-cpu") -> Path:
    (tmp_path / "p.s").write_text(source)
    path = tmp_path / "manifest.yaml"
    path.write_text(f"name: t\nversion: '0'\ndialect: xen-4.17\n"
                    f"features: [boot-alternatives]\nobjects: [p.s]\n"
                    f"entries: {{boot: {{symbol: {entry}, call: {call}}}}}\n")
    return path


def test_manifest_of_the_a64_example_loads_with_its_entry() -> None:
    manifest = load_manifest(A64_EXAMPLE)
    assert manifest.dialect == "xen-4.17"
    assert manifest.entries["boot"].symbol == "a64_patch_all"
    assert manifest.entries["boot"].call == "every-cpu"
    assert [o.name for o in manifest.objects] == ["patcher.s"]


def test_shim_supplies_entries_and_bindings(tmp_path: Path) -> None:
    (tmp_path / "a.o").write_bytes(b"")
    path = tmp_path / "m.yaml"
    path.write_text("name: x\nversion: '1'\ndialect: xen-4.17\nshim: xen-4.17\n"
                    "objects: [a.o]\n")
    manifest = load_manifest(path)
    assert manifest.entries["boot"].symbol == "apply_alternatives_all"
    assert manifest.entries["region"].call == "table"
    assert manifest.bindings["_start"] == "image.text_start"
    assert manifest.bug_codes["alt->repl_len != alt->orig_len"] == "LENGTH_MISMATCH"


@pytest.mark.parametrize(("body", "fragment"), [
    ("name: x\nversion: '1'\ndialect: xen-4.17\nobjects: [p.s]\n", "no boot entry"),
    ("name: x\nversion: '1'\ndialect: nope\nobjects: [p.s]\n", "unknown dialect"),
    ("name: x\nversion: '1'\ndialect: xen-4.17\nobjects: [p.s]\ncolour: red\n",
     "unknown manifest key"),
    ("name: x\nversion: '1'\ndialect: xen-4.17\nobjects: [missing.o]\n", "cannot read"),
    ("name: x\nversion: '1'\ndialect: xen-4.17\nobjects: [p.s]\n"
     "entries: {boot: {symbol: e, call: table}}\n", "cannot use call style"),
])
def test_bad_manifest_is_a_located_coded_error(tmp_path: Path, body: str,
                                               fragment: str) -> None:
    (tmp_path / "p.s").write_text("e: ret\n")
    path = tmp_path / "m.yaml"
    path.write_text(body)
    with pytest.raises(AltpatchError) as caught:
        load_manifest(path)
    assert caught.value.code == "NATIVE_MANIFEST"
    assert fragment in caught.value.message
    assert caught.value.location.file == str(path)


def test_every_missing_symbol_is_named_with_the_object_wanting_it(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "entry:\n    bl not_there\n    bl nor_this\n    ret\n")
    outcome = run_case(CASE, CORPUS.catalog, mode="boot", patcher=load_native_patcher(path))
    assert outcome.error is not None
    assert outcome.error.code == "NATIVE_UNDEFINED_SYMBOL"
    assert "p.s wants not_there, nor_this" in outcome.error.message


def test_header_declares_the_environment_block_in_abi_order() -> None:
    header = (INCLUDE_DIR / "altpatch.h").read_text()
    body = header.split("struct altpatch_env {", 1)[1].split("};", 1)[0]
    names = re.findall(r"\b(\w+)(?:\[\d+\])?;", body)
    assert names == [f.name for f in abi.ENV_FIELDS]
    for service in abi.SERVICES:
        assert f"{service.name}(" in header


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="aarch64-linux-gnu-gcc is not installed")
def test_header_offsets_match_the_abi_when_compiled(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    asserts = "".join(
        f"_Static_assert(offsetof(struct altpatch_env, {f.name}) == {f.offset}, \"{f.name}\");\n"
        for f in abi.ENV_FIELDS)
    (tmp_path / "t.c").write_text(f"#include <altpatch.h>\n{asserts}"
                                  f"_Static_assert(sizeof(struct altpatch_env) == "
                                  f"{abi.ENV_SIZE}, \"size\");\n")
    assert main(["native", "cflags"]) == 0
    flags = capsys.readouterr().out.split()
    done = subprocess.run(["aarch64-linux-gnu-gcc", *flags, "-c", "t.c"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_cflags_with_and_without_the_xen_shim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["native", "cflags"]) == 0
    plain = capsys.readouterr().out.split()
    assert main(["native", "cflags", "--shim", "xen-4.17"]) == 0
    shimmed = capsys.readouterr().out.split()
    assert plain == [*ABI_FLAGS, f"-I{INCLUDE_DIR}"]
    assert shimmed[len(ABI_FLAGS)].endswith("shims/xen-4.17/include")
    assert Path(shimmed[len(ABI_FLAGS)][2:], "xen", "vmap.h").is_file()
    assert shimmed[-1] == f"-I{INCLUDE_DIR}"


def test_native_prefix_resolves_to_the_manifest_patcher() -> None:
    patcher = resolve_patcher(f"native:{A64_EXAMPLE}")
    assert patcher.name == "native:a64-example"
    assert patcher.dialect == "xen-4.17"


def test_a64_example_passes_its_corpus_on_three_schedules() -> None:
    patcher = load_native_patcher(A64_EXAMPLE)
    results, _ = run_corpus(patcher, "rr:100,random:1,adversarial")
    assert len(results) >= 30
    failed = [f"{r.item}\n{r.report}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_same_seed_same_trace_for_a_native_patcher() -> None:
    patcher = load_native_patcher(A64_EXAMPLE)
    runs = [run_case(CASE, CORPUS.catalog, mode="boot", patcher=patcher,
                     schedule="random:2", seed=2) for _ in range(2)]
    assert runs[0].trace == runs[1].trace
    assert any(e.kind == "call" for e in runs[0].trace)


# --------------------------------------------------------------------------- misbehaviour

def _boot(tmp_path: Path, source: str) -> tuple[object, list[str]]:
    path = _manifest(tmp_path, source)
    outcome = run_case(CASE, CORPUS.catalog, mode="boot", patcher=load_native_patcher(path),
                       instruction_budget=200_000)
    verdict = judge(CASE, outcome)
    findings = [f.render() for p in outcome.phases for f in p.findings]
    assert not verdict.passed
    return outcome, findings


def test_a_looping_native_patcher_ends_its_item_located(tmp_path: Path) -> None:
    _, findings = _boot(tmp_path, "entry:\n    nop\nspin:\n    b spin\n")
    assert any(f.startswith(("hang", "budget")) and "p.s:spin+0x0" in f for f in findings)


def test_a_faulting_native_patcher_ends_its_item_located(tmp_path: Path) -> None:
    _, findings = _boot(tmp_path, "entry:\n    mov x1, #0x10\n    ldr x0, [x1]\n    ret\n")
    assert any(f.startswith("unmapped-access") and "p.s:entry+0x4" in f for f in findings)


def test_a_write_through_the_read_only_text_va_is_a_located_ro_write(tmp_path: Path) -> None:
    # x0 = env; text_start is at offset 32: store a word at the first site.
    _, findings = _boot(tmp_path, "entry:\n    ldr x1, [x0, #32]\n    str wzr, [x1]\n"
                                  "    mov w0, #0\n    ret\n")
    assert any(f.startswith("ro-write") and "p.s:entry+0x4" in f for f in findings)


def test_an_error_return_is_judged_as_its_refusal_code(tmp_path: Path) -> None:
    outcome, _ = _boot(tmp_path, "entry:\n    mov w0, #1\n    ret\n")
    assert outcome.error is not None  # type: ignore[attr-defined]
    assert outcome.error.code == "LENGTH_MISMATCH"  # type: ignore[attr-defined]


def test_an_unregistered_error_return_is_a_native_entry_error(tmp_path: Path) -> None:
    outcome, _ = _boot(tmp_path, "entry:\n    mov w0, #77\n    ret\n")
    assert outcome.error.code == "NATIVE_ENTRY"  # type: ignore[attr-defined]
    assert "returned 77" in outcome.error.message  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="aarch64-linux-gnu-gcc is not installed")
def test_c_example_passes_its_corpus_on_three_schedules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "conformance" / "native" / "c"
    for name in ("manifest.yaml", "patcher.c"):
        shutil.copy(example / name, tmp_path / name)
    assert main(["native", "cflags"]) == 0
    flags = capsys.readouterr().out.split()
    done = subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-g", "-Wall", "-Werror", *flags,
                           "-c", "patcher.c"], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    results, _ = run_corpus(load_native_patcher(tmp_path / "manifest.yaml"),
                            "rr:100,random:1,adversarial")
    assert len(results) >= 50  # boot and late cases of linux-4.9
    failed = [f"{r.item}\n{r.report}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
