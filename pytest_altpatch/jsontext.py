"""JSON read from files we do not control (ELF notes, a corpus's schemas), bounded.

:func:`json.loads` recurses once per nesting level, so a note of 100,000 ``[`` ends in
``RecursionError`` (or worse, with a raised recursion limit).  :func:`loads_bounded`
measures the nesting first, in one flat pass that skips string contents, and refuses
deep or oversized text with :class:`ValueError` before the parser sees it.
"""

from __future__ import annotations

import json
from typing import Final

#: Nesting deeper than any note or schema we write or read.
MAX_DEPTH: Final = 64
MAX_CHARS: Final = 4 * 1024 * 1024


def nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting in JSON ``text`` (string contents ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads_bounded(text: str, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> object:
    """``json.loads(text)``, refusing text longer than ``max_chars`` or nested deeper than
    ``max_depth`` (:class:`ValueError`, like any other malformed JSON)."""
    if len(text) > max_chars:
        raise ValueError(f"JSON text is longer than {max_chars} characters")
    if nesting_depth(text) > max_depth:
        raise ValueError(f"JSON nests deeper than {max_depth} levels")
    return json.loads(text)


__all__ = ["MAX_DEPTH", "loads_bounded", "nesting_depth"]
