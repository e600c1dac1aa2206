"""ABI v1: manifest, header, cflags, linking errors, and misbehaving native patchers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_altpatch.cases import load_corpus
from pytest_altpatch.cli import main
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.judge import judge
from pytest_altpatch.native import abi
from pytest_altpatch.native.cflags import ABI_FLAGS
from pytest_altpatch.native.manifest import INCLUDE_DIR, load_manifest
from pytest_altpatch.native.patcher import load_native_patcher
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.pipeline import run_corpus
from pytest_altpatch.scenarios.runner import run_case

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
@pytest.mark.parametrize(("manifest", "defines", "output", "minimum"), [
    ("manifest.yaml", [], "patcher.o", 50),  # linux-4.9: 19 case-modes x 3
    ("manifest-xen.yaml", ["-DALTPATCH_XEN"], "patcher-xen.o", 90),  # with livepatch
])
def test_c_example_passes_its_corpus_on_three_schedules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest: str,
        defines: list[str], output: str, minimum: int) -> None:
    example = ROOT / "conformance" / "native" / "c"
    for name in (manifest, "patcher.c"):
        shutil.copy(example / name, tmp_path / name)
    assert main(["native", "cflags"]) == 0
    flags = capsys.readouterr().out.split()
    done = subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-g", "-Wall", "-Wextra", "-Werror",
                           *defines, *flags, "-c", "patcher.c", "-o", output], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    results, _ = run_corpus(load_native_patcher(tmp_path / manifest),
                            "rr:100,random:1,adversarial")
    assert len(results) >= minimum
    failed = [f"{r.item}\n{r.report}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    if defines:  # the livepatch entries really ran
        assert any(r.item.startswith("late/livepatch-nop-out::late") for r in results)


def test_stop_machine_runs_the_function_on_every_online_cpu(tmp_path: Path) -> None:
    # boot: altpatch_stop_machine(fn, 0) from CPU0; fn just returns 0 on each CPU.
    path = _manifest(tmp_path, "entry:\n    stp x29, x30, [sp, #-16]!\n"
                               "    adr x0, fn\n    mov x1, #0\n    bl altpatch_stop_machine\n"
                               "    ldp x29, x30, [sp], #16\n    ret\nfn:\n    mov w0, #0\n"
                               "    ret\n", call="stop-machine")
    outcome = run_case(CASE, CORPUS.catalog, mode="boot", patcher=load_native_patcher(path))
    fn = next(e.address for e in outcome.trace if e.kind == "call" and e.cpu == 1)
    callers = {e.cpu for e in outcome.trace if e.kind == "call" and e.address == fn}
    entry_calls = [e for e in outcome.trace if e.kind == "call" and e.address != fn]
    assert callers == {1, 2, 3}  # CPU0 runs fn inside its own stop_machine call
    assert [e.cpu for e in entry_calls] == [0]
    assert any(e.kind == "log" and "stop_machine" in e.detail for e in outcome.trace)
    # Nothing patched: the case fails on its streams, not on an error or a hang.
    assert outcome.error is None
    assert not any(f.code in ("hang", "budget") for p in outcome.phases for f in p.findings)


def test_a_bug_on_the_manifest_maps_is_judged_as_that_refusal(tmp_path: Path) -> None:
    # altpatch_bug("f", 7, "c") with bug_codes {"c": LENGTH_MISMATCH}: strings as bytes.
    path = _manifest(tmp_path, "entry:\n    adr x0, file\n    mov x1, #7\n    adr x2, cond\n"
                               "    bl altpatch_bug\nfile:\n    .byte 0x66, 0\ncond:\n"
                               "    .byte 0x63, 0\n")
    path.write_text(path.read_text() + "bug_codes: {c: LENGTH_MISMATCH}\n")
    outcome = run_case(CASE, CORPUS.catalog, mode="boot", patcher=load_native_patcher(path))
    assert outcome.error is not None
    assert outcome.error.code == "LENGTH_MISMATCH"
    assert "BUG_ON(c) at f:7" in outcome.error.message
    assert "p.s:entry+0xc" in outcome.error.message


def test_an_unmapped_bug_is_a_bug_finding_at_its_call(tmp_path: Path) -> None:
    _, findings = _boot(tmp_path, "entry:\n    mov x0, #0\n    mov x1, #3\n    mov x2, #0\n"
                                  "    bl altpatch_bug\n")
    assert any(f.startswith("bug:") and "BUG() at ?:3" in f and "p.s:entry+0xc" in f
               for f in findings)


def test_two_pass_patchers_get_the_boot_early_entry_on_cpu0(tmp_path: Path) -> None:
    (tmp_path / "p.s").write_text("early:\n    mov w0, #2\n    ret\nall:\n    mov w0, #0\n"
                                  "    ret\n")
    path = tmp_path / "manifest.yaml"
    path.write_text("name: t\nversion: '0'\ndialect: linux-6.1\n"
                    "features: [boot-alternatives, two-pass]\nobjects: [p.s]\n"
                    "entries: {boot_early: {symbol: early, call: env},\n"
                    "          boot: {symbol: all, call: every-cpu}}\n")
    case = next(c for c in CORPUS.cases if "linux-6.1" in c.dialects
                and c.expect.boot is not None and set(c.requires) <= {"boot-alternatives"})
    outcome = run_case(case, CORPUS.catalog, mode="boot", patcher=load_native_patcher(path))
    assert outcome.error is not None and outcome.error.code == "CALLBACK_LENGTH"
    assert [e.cpu for e in outcome.trace if e.kind == "call"] == [0]


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None
                    or shutil.which("aarch64-linux-gnu-ar") is None,
                    reason="aarch64-linux-gnu-gcc/ar are not installed")
def test_archive_members_are_linked_only_when_needed(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # ret0.o defines the entry; junk.o wants a symbol nothing defines, so linking it
    # would be NATIVE_UNDEFINED_SYMBOL: it must stay out, as with ld.
    (tmp_path / "ret0.c").write_text("int entry(const void *env, unsigned cpu)"
                                     " { (void)env; (void)cpu; return 0; }\n")
    (tmp_path / "junk.c").write_text("int nowhere(void);\nint junk(void) { return nowhere(); }\n")
    assert main(["native", "cflags"]) == 0
    flags = capsys.readouterr().out.split()
    for name in ("ret0", "junk"):
        subprocess.run(["aarch64-linux-gnu-gcc", "-O2", *flags, "-c", f"{name}.c"],
                       cwd=tmp_path, check=True)
    subprocess.run(["aarch64-linux-gnu-ar", "rcs", "libp.a", "junk.o", "ret0.o"],
                   cwd=tmp_path, check=True)
    path = tmp_path / "manifest.yaml"
    path.write_text("name: t\nversion: '0'\ndialect: xen-4.17\nfeatures: [boot-alternatives]\n"
                    "objects: [libp.a]\nentries: {boot: {symbol: entry, call: every-cpu}}\n")
    manifest = load_manifest(path)
    assert [o.name for o in manifest.objects] == ["libp.a(junk.o)", "libp.a(ret0.o)"]
    outcome = run_case(CASE, CORPUS.catalog, mode="boot", patcher=load_native_patcher(path))
    assert outcome.error is None  # linked and ran (the case then fails on its streams)
    assert any(e.kind == "call" for e in outcome.trace)


def test_env_field_and_symbol_bindings_resolve(tmp_path: Path) -> None:
    # my_ncaps must be &altpatch_env.ncaps (== x0 + 8); other is an alias of zero.
    path = _manifest(tmp_path, "entry:\n    stp x29, x30, [sp, #-16]!\n"
                               "    adrp x1, my_ncaps\n    add x1, x1, :lo12:my_ncaps\n"
                               "    add x4, x0, #8\n    cmp x1, x4\n    b.ne bad\n"
                               "    bl other\n    ldp x29, x30, [sp], #16\n    ret\n"
                               "bad:\n    mov w0, #77\n    ldp x29, x30, [sp], #16\n    ret\n"
                               "zero:\n    mov w0, #0\n    ret\n")
    path.write_text(path.read_text() + "bindings: {my_ncaps: env.ncaps, other: symbol.zero}\n")
    outcome = run_case(CASE, CORPUS.catalog, mode="boot", patcher=load_native_patcher(path))
    assert outcome.error is None
    assert sum(e.kind == "return" for e in outcome.trace) == len(CASE.platform)


def test_a_native_patcher_survives_pickling() -> None:
    import pickle  # noqa: PLC0415

    patcher = pickle.loads(pickle.dumps(load_native_patcher(A64_EXAMPLE)))
    outcome = run_case(CASE, CORPUS.catalog, mode="boot", patcher=patcher)
    assert judge(CASE, outcome).passed
