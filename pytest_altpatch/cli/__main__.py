"""``python -m pytest_altpatch.cli``: the ``altpatch`` command."""

from __future__ import annotations

from pytest_altpatch.cli import command

command()
