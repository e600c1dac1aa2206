"""Choosing patchers per dialect: lists, ``all``, factories, instances and mistakes."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from pytest_altpatch.dialects import DIALECTS
from pytest_altpatch.errors import PatchError
from pytest_altpatch.patchers.facts import PatcherFacts
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.patchers.registry import (
    parse_dialects,
    reference_facts,
    resolve_patcher,
    resolve_patchers,
)


@pytest.fixture
def factories(monkeypatch: pytest.MonkeyPatch) -> str:
    """A module offering a dialect-taking factory and a fixed instance."""
    module = types.ModuleType("dialect_factories")
    module.make = lambda dialect="linux-6.1": ReferencePatcher(dialect)  # type: ignore[attr-defined]
    module.fixed = ReferencePatcher("xen-4.17")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dialect_factories", module)
    return "dialect_factories"


def test_all_and_lists_name_dialects_in_order_once() -> None:
    assert parse_dialects("all") == DIALECTS
    assert parse_dialects(" xen-4.17, linux-4.9 ,xen-4.17") == ("xen-4.17", "linux-4.9")
    assert parse_dialects("") is None


def test_a_misspelt_dialect_suggests_the_right_one() -> None:
    with pytest.raises(PatchError) as caught:
        parse_dialects("linux-6.1,strikt")
    assert caught.value.code == "PATCHER_DIALECT"
    assert caught.value.hint == "did you mean 'strict'?"


def test_the_reference_patcher_is_made_once_per_dialect() -> None:
    made = resolve_patchers("reference", ("linux-4.9", "strict"))
    assert [p.dialect for p in made] == ["linux-4.9", "strict"]
    assert [p.dialect for p in resolve_patchers("reference", None)] == ["linux-6.1"]


def test_a_named_reference_dialect_cannot_be_run_as_another() -> None:
    with pytest.raises(PatchError) as caught:
        resolve_patchers("reference:linux-4.9", ("linux-6.1",))
    assert caught.value.code == "PATCHER_DIALECT"
    assert [p.dialect for p in resolve_patchers("reference:linux-4.9", ("linux-4.9",))] == [
        "linux-4.9"]


def test_a_factory_is_called_per_dialect_and_an_instance_only_for_its_own(
        factories: str) -> None:
    made = resolve_patchers(f"{factories}:make", ("linux-4.6", "xen-4.17"))
    assert [p.dialect for p in made] == ["linux-4.6", "xen-4.17"]
    assert resolve_patcher(f"{factories}:fixed", dialect="xen-4.17").dialect == "xen-4.17"
    with pytest.raises(PatchError) as caught:
        resolve_patchers(f"{factories}:fixed", ("xen-4.17", "linux-6.1"))
    assert caught.value.code == "PATCHER_DIALECT"
    assert "is an instance implementing 'xen-4.17', not 'linux-6.1'" in caught.value.message


class OwnDialect:
    """A class patcher whose constructor takes no dialect."""

    name = "own"
    version = "1"
    dialect = "linux-6.1"
    features = frozenset({"boot-alternatives"})

    def apply_boot_alternatives(self, ctx: object, env: object) -> None:
        """Nothing."""

    def apply_alternatives_all(self, ctx: object, env: object) -> None:
        """Nothing."""

    def apply_alternatives_region(self, ctx: object, env: object) -> None:
        """Nothing."""


def test_a_class_without_a_dialect_parameter_is_made_and_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("own_dialect")
    module.OwnDialect = OwnDialect  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "own_dialect", module)
    # Its own dialect asked for (as a reproduce command does): made with no arguments.
    assert isinstance(resolve_patcher("own_dialect:OwnDialect", dialect="linux-6.1"),
                      OwnDialect)
    with pytest.raises(PatchError) as caught:
        resolve_patcher("own_dialect:OwnDialect", dialect="strict")
    assert caught.value.code == "PATCHER_DIALECT"
    assert "was created for 'linux-6.1', not 'strict'" in caught.value.message


@pytest.mark.parametrize("name, dialects", [
    ("reference", None), ("reference", DIALECTS), ("reference", ("strict", "linux-4.9")),
    *((f"reference:{d}", None) for d in DIALECTS), ("reference:xen-4.17", ("xen-4.17",)),
])
def test_the_references_facts_are_what_its_patchers_declare(
        name: str, dialects: tuple[str, ...] | None) -> None:
    made = PatcherFacts.of_all(resolve_patchers(name, dialects), dialects)
    assert reference_facts(name, dialects) == made
    assert all(fact.features and fact.version for fact in made)


@pytest.mark.parametrize("name, dialects", [
    ("reference:linux-4.9", ("linux-6.1",)), ("reference:linux-9.9", None),
    ("reference", ("linux-9.9",)),
])
def test_the_references_facts_fail_as_its_patchers_do(
        name: str, dialects: tuple[str, ...] | None) -> None:
    with pytest.raises(PatchError) as made:
        resolve_patchers(name, dialects)
    with pytest.raises(PatchError) as facts:
        reference_facts(name, dialects)
    assert (facts.value.code, str(facts.value), facts.value.hint) == (
        made.value.code, str(made.value), made.value.hint)


def test_the_references_facts_import_no_patcher() -> None:
    """A session reads the reference's facts without importing its code (the worker
    server does: it runs the reference's items)."""
    probe = ("import sys\nfrom pytest_altpatch.patchers.registry import reference_facts\n"
             "reference_facts('reference', None)\n"
             "print('pytest_altpatch.patchers.reference' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
