"""Pickling of plain data: this package's data classes, enums and errors, read-only
mappings and a few builtins.

:func:`loads` unpickles with an allow-list, so bytes from elsewhere (a worker's reply,
a kept cache entry) cannot make this process run code: only the globals below, and this
package's data classes, enums and errors (whose constructors only store their fields).
:func:`dumps` writes the read-only mappings specs are made of, which pickle itself
refuses.
"""

from __future__ import annotations

import copyreg
import dataclasses
import enum
import hashlib
import io
import pickle
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from pytest_altpatch.errors import AltpatchError


def _mapping_proxy(mapping: dict[object, object]) -> Mapping[object, object]:
    return MappingProxyType(mapping)


def _reduce_proxy(proxy: MappingProxyType[object, object]) -> tuple[object, ...]:
    return (_mapping_proxy, (dict(proxy),))


#: How our frozen data pickles, including the read-only mappings specs are made of.
_DISPATCH: Final[dict[type, Any]] = {**copyreg.dispatch_table, MappingProxyType: _reduce_proxy}

#: Builtins plain data may contain besides what pickle encodes natively.
_SAFE_BUILTINS: Final = frozenset({"frozenset", "set", "bytearray", "complex", "range",
                                   "slice", "object"})
_SAFE_GLOBALS: Final = frozenset({("copyreg", "_reconstructor"), ("pathlib", "PosixPath"),
                                  ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"),
                                  ("pathlib", "PureWindowsPath"), ("pathlib", "Path")})
#: Our own reducers plain data may call.
_SAFE_OURS: Final = frozenset({(__name__, "_mapping_proxy"),
                               ("pytest_altpatch.errors", "_rebuild")})


class PlainUnpickler(pickle.Unpickler):
    """Loads plain data only (see the module docstring): no code runs on load."""

    def find_class(self, module: str, name: str) -> object:
        """Allow-listed globals only."""
        if (module == "builtins" and name in _SAFE_BUILTINS) or (module, name) in \
                _SAFE_GLOBALS or (module, name) in _SAFE_OURS:
            return super().find_class(module, name)
        if module.startswith("pytest_altpatch.") and not name.startswith("__"):
            found = super().find_class(module, name)
            if isinstance(found, type) and (dataclasses.is_dataclass(found)
                                            or issubclass(found, (enum.Enum, AltpatchError))):
                return found
        raise pickle.UnpicklingError(f"plain data may not contain {module}.{name}")


def dumps(value: object) -> bytes:
    """Pickle plain data (frozen dataclasses, read-only mappings)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(value)
    return buffer.getvalue()


class PlainDigests:
    """The SHA-256 of objects' plain-data pickles (None: not plain data), worked out once
    per object for the last ``held`` objects asked about, each held so that its identity
    stays its own (a large case's pickle takes milliseconds, and a run keys it often)."""

    def __init__(self, held: int) -> None:
        self._held = held
        self._digests: dict[int, tuple[object, bytes | None]] = {}

    def of(self, value: object) -> bytes | None:
        """The digest of ``value``, from memory where this object was asked about."""
        known = self._digests.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        try:
            digest: bytes | None = hashlib.sha256(dumps(value)).digest()
        except (pickle.PicklingError, TypeError, AttributeError):
            digest = None
        self.remember(value, digest)
        return digest

    def remember(self, value: object, digest: bytes | None) -> None:
        """Take ``digest`` as the digest of ``value`` (worked out elsewhere)."""
        if len(self._digests) >= self._held:
            del self._digests[next(iter(self._digests))]
        self._digests[id(value)] = (value, digest)


def loads(data: bytes) -> object:
    """Unpickle plain data with the allow-list; ``pickle.UnpicklingError`` (or another
    error of a damaged pickle) for anything else."""
    return PlainUnpickler(io.BytesIO(data)).load()


__all__ = ["PlainDigests", "PlainUnpickler", "dumps", "loads"]
