"""pytest-altpatch: conformance testing for AArch64 runtime alternatives patchers.

The package is a pipeline (see ``DESIGN``): ``spec`` loads and validates YAML cases,
``image`` lays them out in memory and ELF, ``machine`` is the emulated SMP AArch64
machine, ``patchers`` holds the reference patcher and adapters, ``scenarios`` drives
boot-time and late patching, and ``judge`` turns an outcome into findings.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
