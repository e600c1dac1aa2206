"""``python -m pytest_altpatch.cli``: the ``altpatch`` command."""

from __future__ import annotations

import sys

from pytest_altpatch.cli import main

sys.exit(main())
