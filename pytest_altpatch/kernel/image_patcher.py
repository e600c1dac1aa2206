"""A shipped kernel image's own table patcher behind the patcher contract.

``native:MANIFEST`` with a manifest that names ``image:`` and ``profile:`` (instead of
objects) makes the corpus run against the real binary::

    name: xen-4.17-debian-syms
    image: /path/to/xen-syms-4.17-arm64     # or "profile" (fetched like altpatch image fetch)
    profile: xen-4.17-debian

The profile's ``region_entry`` function (Xen: the static ``__apply_alternatives(region,
update_offset)``) is called on CPU0 with the case's table, the case's text registered
as a virtual region and a vmap alias for the writes; the other CPUs wait on the
rendezvous word and ISB, as ``__apply_alternatives_multi_stop`` makes them.  The image
is loaded displaced by :data:`DISPLACEMENT` (the xen-4.17 case layout uses Xen's own
link address); the functions that run address their data PC-relatively, so they work
there unchanged.  A BUG() in the image's code is its refusal: the harness reports it as
the ``guest-exception`` finding the brk raises.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pytest_altpatch import __version__
from pytest_altpatch.a64.granule import PAGE_SIZE, page_base
from pytest_altpatch.cases.yamlload import load_yaml_file
from pytest_altpatch.errors import KernelError, Location, PatchError
from pytest_altpatch.kernel.debian import image_for_profile
from pytest_altpatch.kernel.layout import KernelImage, page_perms, read_kernel_image
from pytest_altpatch.kernel.profile import TargetProfile, check_symbols, load_profile
from pytest_altpatch.kernel.runner import describe_address, symbol_names
from pytest_altpatch.machine import CpuContext, Machine, TrapCall
from pytest_altpatch.patchers.contract import PatchEnvironment

#: How far above its link address the image is placed (a multiple of 2 MiB).
DISPLACEMENT: Final = 0x8000_0000
_STACK: Final = 0x4000
_SCRATCH: Final = PAGE_SIZE
_FEATURES: Final = frozenset({"boot-alternatives", "branch-reloc", "length-check",
                              "write-alias", "smp-rendezvous", "callbacks",
                              "ncaps-callbacks"})


@dataclass
class _Installed:
    """The image in one machine: where its pieces are."""

    delta: int
    scratch_va: int  # region struct, virtual region node
    stack_top: int


class KernelImagePatcher:
    """Calls a shipped image's own table patcher on each case's table (see module)."""

    def __init__(self, image: KernelImage, profile: TargetProfile, name: str) -> None:
        if profile.region_entry is None:
            raise KernelError("PROFILE_INVALID", f"profile {profile.name} names no "
                              "region_entry, so it cannot patch a case's table")
        check_symbols(profile, image.symbols, image.name)
        self.image = image
        self.profile = profile
        self.name = f"image:{name}"
        self.version = __version__
        self.dialect: str = profile.dialect
        self.features = _FEATURES
        runs = page_perms(image.elf)
        self._low = runs[0][0]
        self._span = runs[-1][0] + runs[-1][1] - self._low
        self.guest_memory = self._span + _SCRATCH + 2 * _STACK
        self._installs: weakref.WeakKeyDictionary[Machine, _Installed] = \
            weakref.WeakKeyDictionary()

    def describe(self) -> list[str]:
        """Report-header lines."""
        return [f"kernel image {self.image.path} under profile {self.profile.name}"]

    # ------------------------------------------------------------------ installation
    def _install(self, machine: Machine) -> _Installed:
        found = self._installs.get(machine)
        if found is not None:
            return found
        delta = DISPLACEMENT
        pa = page_base(machine.memory_size - self.guest_memory)
        for section in self.image.elf.sections:
            if section.content:
                machine.load_phys(pa + section.va - self._low, section.content)
        for va, size, perms in page_perms(self.image.elf):
            machine.map(va + delta, pa + va - self._low, size, perms)
        scratch = self._low + delta + self._span
        machine.map(scratch, pa + self._span, _SCRATCH + 2 * _STACK, "rw-")
        installed = _Installed(delta, scratch, scratch + _SCRATCH + 2 * _STACK - 16)
        names = symbol_names(self.image)
        low, high = self._low + delta, self._low + delta + self._span

        def symbolize(pc: int) -> str | None:
            if not low <= pc < high:
                return None
            return f"{describe_address(names, pc - delta)} in {self.image.name}"
        machine.add_symbolizer(symbolize)
        symbol = self.image.symbol
        for name, kind in self.profile.stubs.items():
            if kind in ("log-format", "return-zero"):
                machine.add_code_trap(symbol(name) + delta, _return_zero)
        for function in self.profile.trap_in:
            start = symbol(function) + delta
            size = self.image.elf.symbol_sizes.get(function, 0)
            code = machine.read_virtual(start, size) or b""
            for offset in range(0, len(code) - 3, 4):
                word = int.from_bytes(code[offset:offset + 4], "little")
                if any(rule.matches(word) and rule.returns == "per-cpu-offset"
                       for rule in self.profile.traps):
                    machine.add_code_trap(start + offset, _per_cpu_offset_zero)
        self._installs[machine] = installed
        return installed

    def _renumber(self, machine: Machine, env: PatchEnvironment) -> tuple[bytes, frozenset[int]]:
        """Map the case's numbering onto the image's fixed one, in the table itself.

        A case may number capabilities of its own from 18 up and so moves NCAPS (the
        callback mark); the binary's NCAPS is fixed.  Each case capability >= the
        image's NCAPS gets a number the table and the caps on leave free, callbacks
        get the image's NCAPS, and numbers >= the case's NCAPS (never applied) a free
        number that is off.  The table's bytes are restored after the call.
        """
        region = env.region
        size = region.table_end - region.table_start
        found = machine.translate(region.table_start)
        if found is None or size % 12:
            raise PatchError("PATCHER_UNSUPPORTED", "the case's table is not mapped")
        original = machine.read_phys(found[0], size)
        fields = [int.from_bytes(original[o + 8:o + 10], "little") for o in range(0, size, 12)]
        ncaps = self.profile.ncaps
        used = {f for f in fields if f < ncaps} | {c for c in env.caps if c < ncaps}
        free = [n for n in range(ncaps) if n not in used]
        mapping: dict[int, int] = {}
        caps = {c for c in env.caps if c < ncaps}
        for field in sorted(set(fields)):
            if field < ncaps:
                continue
            if field == env.ncaps:
                mapping[field] = ncaps  # the image's callback mark
                continue
            if not free:
                raise PatchError("PATCHER_UNSUPPORTED", "the case uses more capabilities "
                                 "than the image's numbering has free")
            mapping[field] = free.pop(0)
            if field in env.caps and field < env.ncaps:
                caps.add(mapping[field])
        table = bytearray(original)
        for index, field in enumerate(fields):
            if field in mapping:
                table[12 * index + 8:12 * index + 10] = mapping[field].to_bytes(2, "little")
        machine.load_phys(found[0], bytes(table))
        return original, frozenset(caps)

    @staticmethod
    def _restore(machine: Machine, env: PatchEnvironment, original: bytes) -> None:
        found = machine.translate(env.region.table_start)
        if found is not None:
            machine.load_phys(found[0], original)

    def _set_data(self, ctx: CpuContext, env: PatchEnvironment, at: _Installed,
                  caps: frozenset[int]) -> int:
        """Capabilities, line size and the case's text region; returns the region VA."""
        symbol = self.image.symbol
        delta = at.delta
        for item in self.profile.data:
            if item.kind == "capability-bitmap" and item.symbol is not None:
                words = -(-self.profile.ncaps // 64)
                bits = sum(1 << cap for cap in caps)
                ctx.write(symbol(item.symbol) + delta, bits.to_bytes(8 * words, "little"))
            elif item.kind == "boot-cpu-dcache-line" and item.symbol is not None:
                line = ctx.sysreg("ctr_el0") >> 16 & 0xF
                ctx.write(symbol(item.symbol) + delta, (4 << line).to_bytes(item.size,
                                                                            "little"))
            elif item.kind == "list-add-tail" and item.head is not None:
                head = symbol(item.head) + delta
                node = at.scratch_va + 64  # struct virtual_region: list, start, end, ...
                ctx.write(node, b"".join(v.to_bytes(8, "little") for v in (
                    head, head, env.region.text_start, env.region.text_end)) + bytes(32))
                ctx.write(head, node.to_bytes(8, "little") + node.to_bytes(8, "little"))
        region = at.scratch_va
        ctx.write(region, env.region.table_start.to_bytes(8, "little")
                  + env.region.table_end.to_bytes(8, "little"))
        return region

    # ------------------------------------------------------------------ the contract
    def apply_boot_alternatives(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Xen has one pass."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """CPU0 calls the image's region entry; the others wait on the flag, then ISB."""
        if ctx.cpu != 0:
            while ctx.read32(env.sync_va) == 0:
                ctx.relax()
            ctx.isb()
            return
        installed = self._install(ctx.machine)
        original, caps = self._renumber(ctx.machine, env)
        region = self._set_data(ctx, env, installed, caps)
        region_env = env.region
        alias = ctx.vmap(region_env.text_phys, region_env.text_end - region_env.text_start)
        try:
            assert self.profile.region_entry is not None  # checked in __init__
            entry = self.image.symbol(self.profile.region_entry) + installed.delta
            result = ctx.call_guest(entry, (region, alias - region_env.text_start),
                                    sp=installed.stack_top)
        finally:
            # Harness-side first: after a fault every context operation raises again.
            self._restore(ctx.machine, env, original)
        ctx.vunmap(alias)
        if result & 0xFFFFFFFF:
            raise PatchError("PATCHER_RAISED", f"{self.profile.region_entry} returned "
                             f"{result & 0xFFFFFFFF:#x}", location=Location())
        ctx.write32(env.sync_va, 1)

    def apply_alternatives_region(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Payload tables are not run through the image (yet)."""
        raise PatchError("PATCHER_UNSUPPORTED", f"{self.name} patches boot tables only",
                         phase="late")


def _return_zero(call: TrapCall) -> None:
    call.event("stub", "printk")
    call.ret(0)


def _per_cpu_offset_zero(call: TrapCall) -> None:
    # Only CPU0 runs the image here, and CPU0's per-CPU offset is 0 (its linked area).
    raw = call.read(call.address, 4)
    rt = int.from_bytes(raw or b"\0\0\0\0", "little") & 0x1F
    if rt != 31:
        call.set_x(rt, 0)
    call.skip()


def is_image_manifest(path: Path) -> bool:
    """Whether the manifest at ``path`` names an image rather than objects."""
    try:
        document = load_yaml_file(path)
    except Exception:  # the native loader reports unreadable manifests itself
        return False
    return isinstance(document.value, dict) and "image" in document.value


def load_image_patcher(path: Path) -> KernelImagePatcher:
    """The patcher an ``image:`` manifest describes."""
    document = load_yaml_file(path)
    value = document.value
    assert isinstance(value, dict)  # is_image_manifest checked it
    unknown = sorted(set(value) - {"name", "image", "profile"})
    if unknown:
        raise KernelError("PROFILE_INVALID", f"image manifest key {unknown[0]!r} is not "
                          "name, image or profile", location=document.location(unknown[0]),
                          phase="load")
    profile = load_profile(str(value.get("profile", "")))
    image_text = str(value.get("image", ""))
    if image_text == "profile":
        image_path = image_for_profile(profile.package)
    else:
        image_path = Path(image_text)
        if not image_path.is_absolute():
            image_path = path.parent / image_path
    image = read_kernel_image(image_path)
    return KernelImagePatcher(image, profile, str(value.get("name", profile.name)))


__all__ = ["DISPLACEMENT", "KernelImagePatcher", "is_image_manifest", "load_image_patcher"]
