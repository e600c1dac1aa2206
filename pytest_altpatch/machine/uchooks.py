"""Cheap registration of many UC_HOOK_CODE ranges that share one handler.

unicorn's ``Uc.hook_add`` builds a fresh C callback object on every call, which costs
several times what unicorn itself spends adding the hook; the machine adds one hook
per stale 64-byte line per CPU, thousands in a large boot.  A :class:`CodeHooks` makes
the C callback once (with the binding's own exception guard, so a raising handler
still stops the emulation and re-raises from ``emu_start``) and registers each range
with it.  Handles are ordinary unicorn hook handles: ``uc.hook_del`` removes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unicorn import UC_HOOK_CODE

# The binding's callback guard and C prototype (unicorn 2.1+, as pyproject requires).
from unicorn.unicorn_py3.unicorn import HOOK_CODE_CFUNC, uccallback


class CodeHooks:
    """UC_HOOK_CODE ranges of one unicorn instance, all calling ``handler``."""

    def __init__(self, uc: Any, handler: Callable[[Any, int, int, int], None],
                 user_data: int) -> None:
        self._uc = uc
        self._handler = handler
        self._user_data = user_data
        self._register: Callable[..., int] | None = getattr(uc, "_Uc__do_hook_add", None)
        self._pointer: object = None
        if self._register is not None:  # else: a binding without it, use Uc.hook_add

            def on_code(engine: Any, address: int, size: int, _key: int) -> None:
                handler(engine, address, size, user_data)

            self._pointer = uccallback(uc, HOOK_CODE_CFUNC)(on_code)

    def add(self, begin: int, end: int) -> int:
        """Hook [begin, end] (inclusive); returns the unicorn hook handle."""
        if self._register is None or self._pointer is None:  # pragma: no cover
            handle: int = self._uc.hook_add(UC_HOOK_CODE, self._handler, self._user_data,
                                            begin, end)
            return handle
        return self._register(UC_HOOK_CODE, self._pointer, begin, end)


__all__ = ["CodeHooks"]
