"""Packages that import their submodules on first use (``pytest_altpatch.lazy``).

Each such ``__init__`` names its exports three times: the runtime table, the
``if TYPE_CHECKING:`` imports type checkers read, and ``__all__``.  These tests hold the
three equal, check each name is the submodule's own object, and pin what the laziness
is for: a corpus collection no longer loads the emulator, the assembler engines or
the ELF reader.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAZY = ("a64", "cases", "image", "machine", "pipeline", "supervisor")


def declared(package: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]], list[str]]:
    """(table pairs, TYPE_CHECKING import pairs, __all__ less the names the ``__init__``
    imports eagerly from another layer) read from the source."""
    tree = ast.parse((ROOT / "pytest_altpatch" / package / "__init__.py").read_text())
    table: set[tuple[str, str]] = set()
    typed: set[tuple[str, str]] = set()
    exported: list[str] = []
    eager: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module not in ("__future__", "typing"):
            eager |= {alias.name for alias in node.names}
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module
                prefix = f"pytest_altpatch.{package}."
                assert statement.module.startswith(prefix), statement.module
                typed |= {(statement.module[len(prefix):], alias.name)
                          for alias in statement.names}
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "_EXPORTS":
                value = ast.literal_eval(node.value)
                table = {(module, name) for module, names in value.items() for name in names}
            elif node.targets[0].id == "__all__":
                exported = ast.literal_eval(node.value)
    eager.discard("submodule_exports")
    return table, typed, [name for name in exported if name not in eager]


@pytest.mark.parametrize("package", LAZY)
def test_the_table_the_typed_imports_and_all_agree(package: str) -> None:
    table, typed, exported = declared(package)
    assert table and table == typed
    assert sorted(name for _, name in table) == sorted(exported)
    # A name that is also a submodule's would be replaced by the submodule once anyone
    # imports it (the import system sets the package attribute): not allowed.
    submodules = {path.stem for path in (ROOT / "pytest_altpatch" / package).glob("*.py")}
    assert not submodules & set(exported)


def _cold_then_kept(code: str, tmp_path: Path) -> tuple[str, str]:
    """What ``code`` prints in a fresh interpreter with an empty user cache, then in
    another with the cache the first left (each must end cleanly)."""
    env = dict(os.environ, ALTPATCH_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    env.pop("ALTPATCH_NO_CACHE", None)
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, env=env, check=False) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    return runs[0].stdout, runs[1].stdout


def _fresh(code: str) -> list[str]:
    """The words ``code`` prints in a fresh interpreter (which must end cleanly)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("package", LAZY)
def test_every_name_is_its_submodules_object(package: str) -> None:
    # In a fresh interpreter: pytester's in-process runs drop the modules they imported
    # from sys.modules, so here a submodule could be a second copy of itself.
    table, _, exported = declared(package)
    code = (
        "import importlib\n"
        f"module = importlib.import_module('pytest_altpatch.{package}')\n"
        f"for submodule, name in {sorted(table)!r}:\n"
        f"    owner = importlib.import_module('pytest_altpatch.{package}.' + submodule)\n"
        "    assert getattr(module, name) is getattr(owner, name), name\n"
        f"assert set({sorted(exported)!r}) <= set(dir(module))\n"
        "try:\n"
        "    module.not_a_name\n"
        "except AttributeError as error:\n"
        "    assert \"no attribute 'not_a_name'\" in str(error), error\n"
        "else:\n"
        "    raise SystemExit('not_a_name resolved')\n"
        "print('checked')\n")
    assert _fresh(code) == ["checked"]


def test_import_submodules_loads_what_an_eager_init_did() -> None:
    code = ("import sys\nfrom pytest_altpatch.lazy import import_submodules\n"
            "import pytest_altpatch.machine as m\n"
            "before = 'pytest_altpatch.machine.core' in sys.modules\n"
            "import_submodules('pytest_altpatch.machine')\n"
            "print(before, 'pytest_altpatch.machine.core' in sys.modules,\n"
            "      'unicorn' in sys.modules)")
    assert _fresh(code) == ["False", "True", "True"]


HEAVY = ("unicorn", "capstone", "keystone", "elftools", "jsonschema", "greenlet",
         "pytest_altpatch.machine.core", "pytest_altpatch.a64.asm",
         "pytest_altpatch.scenarios.runner")


def test_collecting_the_corpus_loads_no_engine(tmp_path: Path) -> None:
    """A collect-only run of the bundled corpus, its documents kept from a first run."""
    probe = tmp_path / "conftest.py"
    probe.write_text(
        "import json, sys\n"
        "def pytest_sessionfinish(session):\n"
        f"    heavy = {HEAVY!r}\n"
        "    loaded = [m for m in heavy if m in sys.modules]\n"
        f"    open({str(tmp_path / 'loaded.json')!r}, 'w').write(json.dumps(loaded))\n")
    env = dict(os.environ, ALTPATCH_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    env.pop("ALTPATCH_NO_CACHE", None)
    command = [sys.executable, "-m", "pytest", "--altpatch-corpus", "--collect-only", "-q",
               "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
    for run in ("cold", "warm"):
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                              env=env, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "tests collected" in done.stdout
        loaded = json.loads((tmp_path / "loaded.json").read_text())
        # Cold, the schemas are checked (jsonschema); warm, not even that.
        assert loaded == ([] if run == "warm" else ["jsonschema"]), run


def test_the_altpatch_parser_loads_no_case_layer() -> None:
    """``altpatch run`` starts its worker after parsing: the parser of every command is
    built from names alone (what is shipped is listed by ``resources``)."""
    code = ("import sys\nfrom pytest_altpatch.cli import build_parser\nbuild_parser()\n"
            "layers = ('yaml', 'jsonschema', 'pytest_altpatch.cases.case',\n"
            "          'pytest_altpatch.cases.model', 'pytest_altpatch.kernel.profile',\n"
            "          'pytest_altpatch.native.manifest', 'pytest_altpatch.image.builder')\n"
            "print([name for name in layers if name in sys.modules] or 'none')")
    assert _fresh(code) == ["none"]


def test_a_boot_item_whose_image_is_kept_loads_no_toolchain(tmp_path: Path) -> None:
    """What a worker for one or two items imports (scenarios.runner, the registry) and
    a boot run from a kept image load neither the assembler engines nor the ELF reader
    (those are for building images and payloads) nor the late flows."""
    code = (
        "import sys\n"
        "import pytest_altpatch.scenarios.runner, pytest_altpatch.patchers.registry\n"
        "toolchain = ('keystone', 'capstone', 'elftools', 'pytest_altpatch.a64.asm',\n"
        "             'pytest_altpatch.scenarios.late')\n"
        "print([m for m in toolchain if m in sys.modules] or 'none')\n"
        "from pytest_altpatch.cases import load_case, load_catalog\n"
        "from pytest_altpatch.patchers.reference import ReferencePatcher\n"
        "from pytest_altpatch.resources import bundled_corpus\n"
        "from pytest_altpatch.scenarios.runner import run_case\n"
        "catalog = load_catalog()\n"
        "case = load_case(bundled_corpus() / 'cases/branch/b-al-external.yaml', catalog)\n"
        "outcome = run_case(case, catalog, mode='boot', patcher=ReferencePatcher('linux-6.1'))\n"
        "assert outcome.error is None, outcome.error\n"
        "print([m for m in toolchain if m in sys.modules] or 'none')\n")
    cold, kept = (out.split() for out in _cold_then_kept(code, tmp_path))
    assert cold[0] == kept[0] == "none"
    assert "'keystone'," in cold[1]  # the first run built the image
    assert kept[1] == "none"


def test_checking_that_a_kept_case_builds_loads_no_machine(tmp_path: Path) -> None:
    """``altpatch run`` checks the build while its first item runs, on the other core:
    from kept images that loads neither the machine (unicorn) nor the assembler
    engines."""
    code = (
        "import sys\n"
        "from pytest_altpatch.cases import load_case, load_catalog\n"
        "from pytest_altpatch.resources import bundled_corpus\n"
        "from pytest_altpatch.scenarios.buildcheck import build_checked\n"
        "catalog = load_catalog()\n"
        "case = load_case(bundled_corpus() / 'cases/branch/b-al-external.yaml', catalog)\n"
        "images, errors = build_checked(case, catalog)\n"
        "assert images and not errors, errors\n"
        "loaded = ('unicorn', 'pytest_altpatch.machine.core', 'keystone', 'capstone')\n"
        "print(sorted(m for m in loaded if m in sys.modules) or 'none')\n")
    built, kept = (out.strip() for out in _cold_then_kept(code, tmp_path))
    assert "'unicorn'" not in built and "'keystone'" in built  # the first run assembled
    assert kept == "none"


def test_the_assembler_loads_keystone_with_the_first_statement_it_encodes() -> None:
    """What our own encoders cover (the PC-relative forms) never loads keystone and
    capstone; the first statement they leave to keystone does."""
    assert _fresh(
        "import sys\n"
        "from pytest_altpatch.a64 import assemble\n"
        "engines = lambda: [m for m in ('keystone', 'capstone') if m in sys.modules]\n"
        "ours = assemble('b 0f\\nbl 0f\\nadr x0, 0f\\n0: adrp x1, 0b', base=0x1000).code\n"
        "print(len(ours), engines() or 'none')\n"
        "theirs = assemble('mov x3, x4', base=0x1000).code\n"
        "print(theirs.hex(), *engines())\n") == [
        "16", "none", "e30304aa", "keystone", "capstone"]
