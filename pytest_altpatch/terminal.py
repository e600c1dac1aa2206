"""Text from case files and workers, made safe to print on a terminal.

Case titles, labels, messages and patcher output are data: a title holding ``ESC [2J``
must not clear the screen of the person reading a report.  :func:`escape_text` keeps
printable text and newlines/tabs, and writes every other control character, lone
surrogate and bidirectional override as a visible ``\\xNN``/``\\uNNNN`` escape.
"""

from __future__ import annotations

import re
from typing import Final

#: C0 (except tab and newline), DEL, C1, lone surrogates, and bidi controls.
_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\ufeff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: str) -> str:
    """``text`` with every character a terminal would act on shown as an escape."""
    return _UNSAFE.sub(_escaped, text)


def unsafe_character(text: str) -> int | None:
    """The index of the first surrogate or control character (tab/newline allowed)."""
    found = _UNSAFE.search(text)
    return None if found is None else found.start()


__all__ = ["escape_text", "unsafe_character"]
