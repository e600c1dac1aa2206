"""A native patcher behind the patcher contract (``native:PATH/TO/manifest.yaml``).

The harness calls the same entries as for a Python patcher; each one runs the
patcher's machine code on that CPU through the executor.  With the ``stop-machine``
boot style (Xen) only CPU0 calls the boot entry; the other CPUs serve the patcher's
``altpatch_stop_machine`` call by running the function it gives them, so the
patcher's own rendezvous code runs on every CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pytest_altpatch.errors import ERROR_CODES, PatchError
from pytest_altpatch.machine import CpuContext, Machine
from pytest_altpatch.native import abi
from pytest_altpatch.native.executor import (
    WINDOW_OFFSET,
    Installation,
    install,
    memory_needed,
)
from pytest_altpatch.native.manifest import Entry, Manifest, load_manifest
from pytest_altpatch.patchers.contract import LivepatchEnvironment, PatchEnvironment

if TYPE_CHECKING:
    from pytest_altpatch.kernel.image_patcher import KernelImagePatcher

#: CPUs the memory estimate allows for (the machine's maximum).
_MAX_CPUS: Final = 256


def _bitmap(numbers: frozenset[int]) -> list[int]:
    words = [0] * (abi.MAX_CAPS // 64)
    for number in numbers:
        if 0 <= number < abi.MAX_CAPS:
            words[number // 64] |= 1 << (number % 64)
    return words


class NativePatcher:
    """A manifest's objects, linked into each machine the first time it is used."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.name = f"native:{manifest.name}"
        self.version = manifest.version
        self.dialect = manifest.dialect
        self.features = manifest.features
        #: Extra physical memory a machine needs for this patcher.
        self.guest_memory = memory_needed(manifest.objects, _MAX_CPUS)
        # The current machine's installation only: an Installation holds its machine, so
        # a dictionary of them (even a weak-keyed one) would keep every machine alive.
        self._installed: Installation | None = None

    def __getstate__(self) -> dict[str, object]:
        """Picklable (for worker processes): installations belong to their machine."""
        state = dict(self.__dict__)
        state["_installed"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a pickled patcher with no installations yet."""
        self.__dict__.update(state)
        self._installed = None

    def describe(self) -> list[str]:
        """Report-header lines: each object with its SHA-256."""
        shim = f", shim {self.manifest.shim.name}" if self.manifest.shim else ""
        lines = [f"native manifest {self.manifest.path}{shim}"]
        lines += [f"  object {o.name} sha256:{o.sha256}" for o in self.manifest.objects]
        return lines

    # ------------------------------------------------------------------ installation
    def installation(self, ctx: CpuContext, env: PatchEnvironment) -> Installation:
        """This machine's installation (linked on first use, at boot)."""
        machine = ctx.machine
        found = self._installation_of(machine)
        if found is not None:
            return found
        region = env.region
        values: Mapping[str, int] = {
            "text_start": region.text_start, "text_end": region.text_end,
            "table_start": region.table_start, "table_end": region.table_end,
        }
        window = region.text_start + WINDOW_OFFSET
        offsets = {f.name: f.offset for f in abi.ENV_FIELDS}
        bindings: dict[str, int] = {}
        aliases: dict[str, str] = {}
        for symbol, target in self.manifest.bindings.items():
            kind, _, name = target.partition(".")
            if kind == "image":
                bindings[symbol] = values[name]
            elif kind == "env":  # the environment block is the window's first page
                bindings[symbol] = window + offsets.get(name, 0)
            else:
                aliases[symbol] = name
        created = install(machine, self.manifest.objects,
                          window=window, bindings=bindings, aliases=aliases,
                          kernel_text=(region.text_start, region.text_end),
                          bug_codes=self.manifest.bug_codes,
                          roots=[e.symbol for e in self.manifest.entries.values()])
        self._installed = created
        return created

    def _installation_of(self, machine: Machine) -> Installation | None:
        installed = self._installed
        return installed if installed is not None and installed.machine is machine else None

    def _entry(self, kind: str) -> Entry | None:
        return self.manifest.entries.get(kind)

    def _address(self, installation: Installation, entry: Entry) -> int:
        address = installation.symbol(entry.symbol)
        if address is None:
            raise PatchError("NATIVE_ENTRY", f"entry {entry.kind}: {entry.symbol} is not "
                             "defined by the objects")
        return address

    def _environment(self, installation: Installation, env: PatchEnvironment) -> None:
        region = env.region
        flags = (abi.ENV_FLAG_LIVE if region.live else 0) | \
            (abi.ENV_FLAG_ALIAS if region.alias_offset is not None else 0)
        low, high = installation.kernel_text
        installation.participants = env.ncpus
        installation.write_environment({
            "ncpus": env.ncpus, "ncaps": env.ncaps, "dcache_line": env.dcache_line,
            "icache_line": env.icache_line, "flags": flags, "boot_cpu": 0,
            "text_start": region.text_start, "text_end": region.text_end,
            "text_phys": region.text_phys, "table_start": region.table_start,
            "table_end": region.table_end, "alias_offset": region.alias_offset or 0,
            "kernel_text_start": low, "kernel_text_end": high, "sync_va": env.sync_va,
            "caps": _bitmap(env.caps), "boot_caps": _bitmap(env.boot_caps),
        })

    @staticmethod
    def _judge_result(entry: Entry, result: int) -> None:
        """An ``int`` entry's result: 0 is success, a refusal number is its code."""
        value = result & 0xFFFFFFFF
        value = value - (1 << 32) if value & 0x80000000 else value
        if value == 0:
            return
        code = abi.REFUSAL_CODES.get(value)
        if code is not None and code in ERROR_CODES:
            raise PatchError(code, f"{entry.symbol} refused (returned {value})")
        raise PatchError("NATIVE_ENTRY", f"{entry.symbol} returned {value}, which is not "
                         "0 or a refusal number of ABI v1")

    # ------------------------------------------------------------------ the contract
    def apply_boot_alternatives(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Two-pass patchers: the ``boot_early`` entry on CPU0 (``env`` style)."""
        entry = self._entry("boot_early")
        if entry is None or ctx.cpu != 0:
            return
        installation = self.installation(ctx, env)
        self._environment(installation, env)
        result = installation.call(ctx, self._address(installation, entry),
                                   (installation.env_va,))
        self._judge_result(entry, result)

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """The ``boot`` entry (stop-machine style: CPU0 calls, the others serve)."""
        entry = self._entry("boot")
        assert entry is not None  # the manifest loader insists on it
        installation = self.installation(ctx, env)
        if entry.call == "every-cpu":
            # Whichever CPU arrives first must find the block filled (same bytes each time).
            self._environment(installation, env)
            result = installation.call(ctx, self._address(installation, entry),
                                       (installation.env_va, ctx.cpu))
            self._judge_result(entry, result)
            return
        if ctx.cpu != 0:
            installation.serve_stop_machine(ctx)
            return
        self._environment(installation, env)
        installation.boot_done = False
        installation.stop_machine = None
        try:
            installation.call(ctx, self._address(installation, entry))
        finally:
            installation.boot_done = True

    def apply_alternatives_region(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """The ``region`` entry on one CPU (a payload's alternatives)."""
        entry = self._entry("region")
        if entry is None:
            raise PatchError("PATCHER_UNSUPPORTED", f"{self.name} has no region entry",
                             phase="late")
        installation = self.installation(ctx, env)
        self._environment(installation, env)
        args = (env.region.table_start, env.region.table_end) if entry.call == "table" \
            else (installation.env_va,)
        result = installation.call(ctx, self._address(installation, entry), args)
        self._judge_result(entry, result)


    # ------------------------------------------------------------------ livepatch
    def apply_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        """The ``livepatch_apply`` entry on every CPU."""
        self._livepatch(ctx, env, "livepatch_apply")

    def revert_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        """The ``livepatch_revert`` entry on every CPU."""
        self._livepatch(ctx, env, "livepatch_revert")

    def _livepatch(self, ctx: CpuContext, env: LivepatchEnvironment, kind: str) -> None:
        entry = self._entry(kind)
        installation = self._installation_of(ctx.machine)
        if entry is None or installation is None:
            raise PatchError("PATCHER_UNSUPPORTED", f"{self.name} has no {kind} entry",
                             phase="late")
        header = {
            "ncpus": env.ncpus, "dcache_line": env.dcache_line,
            "icache_line": env.icache_line,
            "flags": abi.ENV_FLAG_ALIAS if env.alias_offset is not None else 0,
            "text_start": env.text_start, "text_end": env.text_end,
            "text_phys": env.text_phys, "alias_offset": env.alias_offset or 0,
            "sync_va": env.sync_va,
        }
        functions: list[Mapping[str, int | bytes]] = [{
            "old_addr": f.old_addr, "new_addr": f.new_addr or 0, "old_size": f.old_size,
            "new_size": f.new_size, "expect_len": min(len(f.expect or b""), 16),
            "expect": f.expect or b"",
        } for f in env.functions]
        block = installation.write_livepatch(env.payload, header, functions)
        result = installation.call(ctx, self._address(installation, entry), (block, ctx.cpu))
        self._judge_result(entry, result)


def load_native_patcher(path: str | Path) -> NativePatcher | KernelImagePatcher:
    """The native patcher described by the manifest at ``path`` (a manifest naming
    ``image:`` and ``profile:`` runs a shipped kernel image's own table patcher)."""
    # Imported here: only image manifests need the kernel package.
    from pytest_altpatch.kernel.image_patcher import (  # noqa: PLC0415
        is_image_manifest,
        load_image_patcher,
    )

    if is_image_manifest(Path(path)):
        return load_image_patcher(Path(path))
    return NativePatcher(load_manifest(Path(path)))


__all__ = ["NativePatcher", "load_native_patcher"]
