"""Text from case files and workers, made safe to print on a terminal.

Case titles, labels, messages and patcher output are data: a title holding ``ESC [2J``
must not clear the screen of the person reading a report.  :func:`escape_text` keeps
printable text and newlines/tabs, and writes every other control character, lone
surrogate and bidirectional override as a visible ``\\xNN``/``\\uNNNN`` escape.
"""

from __future__ import annotations

import io
import re
from typing import Final, TextIO

#: C0 (except tab and newline), DEL, C1, lone surrogates, and bidi controls.
_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\ufeff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


#: The colour sequences our own styles write (SGR): kept when ``keep_colour``.
_COLOUR: Final = re.compile("\x1b\\[[0-9;]*m")


def escape_text(text: str, *, keep_colour: bool = False) -> str:
    """``text`` with every character a terminal would act on shown as an escape.

    ``keep_colour`` leaves SGR colour sequences (``ESC [ 1;31 m``) alone: they only
    colour text, and reports use them on a terminal."""
    if not keep_colour:
        return _UNSAFE.sub(_escaped, text)
    parts: list[str] = []
    last = 0
    for colour in _COLOUR.finditer(text):
        parts.append(_UNSAFE.sub(_escaped, text[last:colour.start()]))
        parts.append(colour.group())
        last = colour.end()
    parts.append(_UNSAFE.sub(_escaped, text[last:]))
    return "".join(parts)


class EscapingStream(io.TextIOBase):
    """A text stream that escapes what it is given before the terminal sees it."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target

    def write(self, text: str) -> int:
        """Write ``text`` escaped (colour kept); returns ``len(text)``."""
        self.target.write(escape_text(text, keep_colour=True))
        return len(text)

    def flush(self) -> None:
        """Flush the target (nothing once it is closed: a wrapper that outlives the
        stream it wrapped, such as a test's captured output, is collected quietly)."""
        if not getattr(self.target, "closed", False):
            self.target.flush()

    def isatty(self) -> bool:
        """Whether the target is a terminal (reports colour only then)."""
        return self.target.isatty()


def unsafe_character(text: str) -> int | None:
    """The index of the first surrogate or control character (tab/newline allowed)."""
    found = _UNSAFE.search(text)
    return None if found is None else found.start()


__all__ = ["EscapingStream", "escape_text", "unsafe_character"]
