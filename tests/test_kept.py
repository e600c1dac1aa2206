"""The store of kept entries (``pytest_altpatch.kept``): an entry is read back only
under its own key, writes are whole, and the bound trims the least recently used."""

from __future__ import annotations

import os
import pickle
import zlib
from pathlib import Path

import pytest

from pytest_altpatch.kept import NO_CACHE_ENV, KeptEntries

KEY_A, KEY_B, KEY_C = ("a" * 64, "b" * 64, "c" * 64)


def files(root: Path) -> list[str]:
    """Names of every file under ``root`` (entries and anything left aside)."""
    return sorted(path.name for path in root.rglob("*") if path.is_file())


def test_an_entry_is_read_back_under_its_own_key_only(cache: Path) -> None:
    store = KeptEntries("things", 1 << 20)
    assert store.read(KEY_A) is None
    store.write(KEY_A, b"payload of a")
    assert store.read(KEY_A) == b"payload of a"
    entry = cache / "things" / "aa" / KEY_A
    assert entry.read_bytes() == KEY_A.encode() + b"\n" + zlib.compress(b"payload of a", 1)
    # Another key's bytes under this name (a copied or renamed file) are not taken.
    store.write(KEY_B, b"payload of b")
    entry.write_bytes((cache / "things" / "bb" / KEY_B).read_bytes())
    assert store.read(KEY_A) is None
    whole = entry.read_bytes()
    for damage in (b"", KEY_A[:10].encode(), KEY_A.encode(), whole[:-3],  # truncated
                   KEY_A.encode() + b"\npayload of a"):  # not compressed: another format
        entry.write_bytes(damage)
        assert store.read(KEY_A) is None, damage
    assert files(cache) == [KEY_A, KEY_B]  # nothing left aside by the writes


def test_over_its_bound_the_least_recently_used_go(cache: Path) -> None:
    payload = os.urandom(1000)  # (does not compress: each entry is about 1075 bytes)
    store = KeptEntries("things", 3000)  # room for two entries, not three
    for age, key in enumerate((KEY_A, KEY_B)):
        store.write(key, payload)
        path = cache / "things" / key[:2] / key
        os.utime(path, ns=(10**18 + age, 10**18 + age))
    assert store.read(KEY_A) == payload  # the read makes A the most recently used
    store.write(KEY_C, payload)  # a quarter of the bound written since the first check
    store.trim()
    assert files(cache) == [KEY_A, KEY_C]
    under = KeptEntries("things", 1 << 20)
    under.trim()
    assert files(cache) == [KEY_A, KEY_C]  # within the bound nothing goes


def test_switched_off_or_unwritable_nothing_is_kept(cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeptEntries("things", 1 << 20)
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert store.directory() is None
    store.write(KEY_A, b"x")
    store.trim()
    assert store.read(KEY_A) is None and not cache.exists()
    monkeypatch.delenv(NO_CACHE_ENV)
    cache.write_text("a file where the cache directory would be")
    store.write(KEY_A, b"x")  # no error: the cache is skipped
    assert store.read(KEY_A) is None


class _Planted:
    """What a hostile entry would build when unpickled by plain ``pickle``."""

    built = False

    def __reduce__(self) -> tuple[object, ...]:
        return (_plant, ())


def _plant() -> None:
    _Planted.built = True


def test_values_are_kept_as_plain_data_and_nothing_else_is_read(cache: Path) -> None:
    entries = KeptEntries("values", 1 << 20)
    value = {"words": (0xD503201F, 0x14000001), "name": "site"}
    entries.keep(KEY_A, value)
    assert entries.load(KEY_A) == value
    entries.keep(KEY_B, lambda: None)  # not plain data: not kept
    assert entries.read(KEY_B) is None
    entries.write(KEY_C, pickle.dumps(_Planted()))  # a hostile entry
    assert entries.load(KEY_C) is None
    assert not _Planted.built
    entries.write("d" * 64, b"not a pickle")
    assert entries.load("d" * 64) is None
