"""The native executor: patcher machine code linked into a machine and run as guest code.

Interface (also meant for linked kernel images, which bring their own code):

1. :func:`install` links objects (plus the runtime's service stubs) at a free VA
   window, maps text R-X, rodata R--, data/bss RW-, an environment page and one stack
   per CPU, and registers the ABI services and a symbolizer on the machine.
2. :meth:`Installation.write_environment` fills ``struct altpatch_env`` for the next
   entry call.
3. :meth:`Installation.call` runs one function on the calling Python CPU
   (``CpuContext.call_guest``): the code runs under the schedule like all guest code,
   and the fetch model judges its own maintenance, barriers and rendezvous.  Refusals
   (``altpatch_refuse``, a BUG_ON the bindings map to a code) come back as
   :class:`PatchError`; faults as ``GuestFault``.
4. :meth:`Installation.serve_stop_machine` is what every other CPU runs while the boot
   CPU's code is inside ``altpatch_stop_machine``: it calls the function it is given
   and reports when it has returned.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pytest_altpatch.a64 import assemble
from pytest_altpatch.a64.granule import PAGE_SIZE, align_up, page_base
from pytest_altpatch.errors import ERROR_CODES, Location, PatchError
from pytest_altpatch.machine import CpuContext, Machine
from pytest_altpatch.machine.guest_services import ServiceCall
from pytest_altpatch.native import abi
from pytest_altpatch.native.linker import (
    CodeSymbol,
    LinkedPatcher,
    LinkedSection,
    link_patcher,
)
from pytest_altpatch.native.locate import Locator
from pytest_altpatch.native.manifest import ObjectFile
from pytest_altpatch.native.runtime import ENV_SYMBOL, RUNTIME_SOURCE

#: Bytes of stack per CPU.
STACK_SIZE: Final = 16 * 1024
#: Distance of the patcher window above the base image's text: near enough for ADRP
#: (+-4 GiB) from patcher code to image symbols, clear of the image and its payloads.
WINDOW_OFFSET: Final = 0x4000_0000
RUNTIME_NAME: Final = "<altpatch-runtime>"
#: Pages for livepatch blocks (one per payload, kept from apply to revert).
LIVEPATCH_PAGES: Final = 8
_MASK64: Final = (1 << 64) - 1


def memory_needed(objects: Sequence[ObjectFile], cpus: int) -> int:
    """An upper bound of the physical memory :func:`install` takes."""
    pages = 4 + LIVEPATCH_PAGES + sum(align_up(len(o.data)) // PAGE_SIZE + 8 for o in objects)
    return pages * PAGE_SIZE + cpus * STACK_SIZE


@dataclass
class StopMachine:
    """One ``altpatch_stop_machine(fn, data)`` in progress."""

    generation: int
    fn: int
    data: int
    caller: int
    returned: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    """A symbol the objects leave undefined and what the executor binds it to."""

    symbol: str
    value: int
    source: str  # "service", "env", "image.text_start", ...


@dataclass
class Installation:
    """A native patcher linked into one machine (create with :func:`install`)."""

    machine: Machine
    linked: LinkedPatcher
    env_va: int
    env_pa: int
    stacks_va: int
    kernel_text: tuple[int, int]
    bug_codes: Mapping[str, str]
    participants: int = 1
    locator: Locator | None = None
    stop_machine: StopMachine | None = None
    boot_done: bool = False
    refusals: dict[int, PatchError] = field(default_factory=dict)
    livepatch_va: int = 0
    livepatch_pa: int = 0
    livepatch_blocks: dict[str, int] = field(default_factory=dict)
    _generation: int = 0

    def stack_top(self, cpu: int) -> int:
        """The initial SP of ``cpu``'s stack."""
        return self.stacks_va + (cpu + 1) * STACK_SIZE

    def symbol(self, name: str) -> int | None:
        """The address of a linked symbol."""
        return self.linked.symbols.get(name)

    # ------------------------------------------------------------------ environment
    def write_environment(self, values: Mapping[str, int | Sequence[int]]) -> None:
        """Fill ``struct altpatch_env`` (fields by :data:`abi.ENV_FIELDS` name)."""
        block = bytearray(abi.ENV_SIZE)
        for env_field in abi.ENV_FIELDS:
            value = values.get(env_field.name, 0)
            if isinstance(value, int):
                block[env_field.offset:env_field.offset + env_field.size] = \
                    (value & ((1 << (8 * env_field.size)) - 1)).to_bytes(env_field.size,
                                                                         "little")
            else:
                for index, word in enumerate(value):
                    start = env_field.offset + 8 * index
                    block[start:start + 8] = (word & _MASK64).to_bytes(8, "little")
        block[0:4] = abi.ABI_VERSION.to_bytes(4, "little")
        self.machine.load_phys(self.env_pa, bytes(block))

    def write_livepatch(self, payload: str, header: Mapping[str, int],
                        functions: Sequence[Mapping[str, int | bytes]]) -> int:
        """Fill the ``struct altpatch_livepatch`` block of ``payload`` (each function's
        ``opaque`` bytes are kept as the patcher left them); its VA."""
        if len(functions) > abi.MAX_LIVEPATCH_FUNCS:
            raise PatchError("PATCHER_UNSUPPORTED", f"payload {payload}: more than "
                             f"{abi.MAX_LIVEPATCH_FUNCS} functions", phase="late")
        index = self.livepatch_blocks.get(payload)
        if index is None:
            if len(self.livepatch_blocks) >= LIVEPATCH_PAGES:
                raise PatchError("PATCHER_UNSUPPORTED", f"more than {LIVEPATCH_PAGES} "
                                 "livepatch payloads", phase="late")
            index = self.livepatch_blocks[payload] = len(self.livepatch_blocks)
        pa = self.livepatch_pa + index * PAGE_SIZE
        old = self.machine.read_phys(pa, PAGE_SIZE)
        block = bytearray(PAGE_SIZE)
        _pack(block, 0, abi.LIVEPATCH_FIELDS, {**header, "abi_version": abi.ABI_VERSION,
                                               "nfuncs": len(functions)})
        opaque = next(f for f in abi.LIVEPATCH_FUNC_FIELDS if f.name == "opaque")
        for number, function in enumerate(functions):
            base = abi.LIVEPATCH_HEADER_SIZE + number * abi.LIVEPATCH_FUNC_SIZE
            _pack(block, base, abi.LIVEPATCH_FUNC_FIELDS, function)
            keep = base + opaque.offset
            block[keep:keep + opaque.size] = old[keep:keep + opaque.size]
        self.machine.load_phys(pa, bytes(block))
        return self.livepatch_va + index * PAGE_SIZE

    # ------------------------------------------------------------------ calls
    def call(self, ctx: CpuContext, address: int, args: Sequence[int] = ()) -> int:
        """Run the guest function at ``address`` on ``ctx``'s CPU; its x0.

        A refusal made during the call is raised as :class:`PatchError`.
        """
        self.refusals.pop(ctx.cpu, None)
        result = ctx.call_guest(address, args, sp=self.stack_top(ctx.cpu), tpidr=ctx.cpu)
        refusal = self.refusals.pop(ctx.cpu, None)
        if refusal is not None:
            raise refusal
        return result

    def serve_stop_machine(self, ctx: CpuContext) -> None:
        """Until the boot CPU's entry returns: run every stop_machine function given."""
        seen = 0
        while True:
            request = self.stop_machine
            if request is not None and request.generation > seen:
                seen = request.generation
                if ctx.cpu != request.caller:
                    result = self.call(ctx, request.fn, (request.data,))
                    request.returned[ctx.cpu] = result & 0xFFFFFFFF
                continue
            if self.boot_done:
                return
            ctx.relax()

    # ------------------------------------------------------------------ services
    def register_services(self) -> None:
        """Serve the ABI's SVC immediates and name PCs on this machine."""
        machine = self.machine
        machine.add_service(abi.SVC_LOG, self._log)
        machine.add_service(abi.SVC_BUG, self._bug)
        machine.add_service(abi.SVC_REFUSE, self._refuse)
        machine.add_service(abi.SVC_STOP_MACHINE, self._stop_machine)
        machine.add_service(abi.SVC_STOP_MACHINE_WAIT, self._stop_machine_wait)
        machine.add_service(abi.SVC_VIRT_TO_PHYS, self._virt_to_phys)
        if self.locator is not None:
            machine.add_symbolizer(self.locator.describe)

    def _caller(self, call: ServiceCall) -> str:
        """Where the service was called from (the return address minus one word)."""
        where = self.machine.where((call.x(30) - 4) & _MASK64)
        return where if where is not None else f"{call.x(30) - 4:#x}"

    def _log(self, call: ServiceCall) -> None:
        text = call.string(call.x(0)).rstrip("\n")
        args = " ".join(f"{call.x(i):#x}" for i in range(1, 4))
        call.log(f"printk: {text!r} [{args}]")
        call.progress = False

    def _bug(self, call: ServiceCall) -> None:
        file = call.string(call.x(0)) if call.x(0) else "?"
        line = call.x(1) & 0xFFFFFFFF
        condition = call.string(call.x(2)) if call.x(2) else ""
        caller = self._caller(call)
        code = self.bug_codes.get(condition)
        what = f"BUG_ON({condition})" if condition else "BUG()"
        if code is not None:
            self.refusals[call.cpu] = PatchError(
                code, f"{what} at {file}:{line} (called from {caller})",
                location=Location(address=(call.x(30) - 4) & _MASK64))
            call.end_call(0)
            return
        # Located at the call into altpatch_bug: the patcher's own BUG site.
        call.fault("bug", f"{what} at {file}:{line}",
                   detail={"file": file, "line": line, "condition": condition},
                   pc=(call.x(30) - 4) & _MASK64)

    def _refuse(self, call: ServiceCall) -> None:
        number = call.x(0) & 0xFFFFFFFF
        code = abi.REFUSAL_CODES.get(number)
        address = call.x(1)
        caller = self._caller(call)
        if code is None or code not in ERROR_CODES:
            self.refusals[call.cpu] = PatchError(
                "NATIVE_ENTRY", f"altpatch_refuse({number}) is not a refusal number "
                f"(called from {caller})", location=Location(address=address))
        else:
            self.refusals[call.cpu] = PatchError(
                code, f"native patcher refused at {address:#x} (called from {caller})",
                location=Location(address=address))
        call.end_call(0)

    def _stop_machine(self, call: ServiceCall) -> None:
        self._generation += 1
        self.stop_machine = StopMachine(self._generation, call.x(0), call.x(1), call.cpu)
        call.log(f"stop_machine fn={call.x(0):#x} data={call.x(1):#x}")

    def _stop_machine_wait(self, call: ServiceCall) -> None:
        request = self.stop_machine
        call.progress = False
        if request is None:
            call.set_x(0, 1)
            call.set_x(1, 0)
            return
        others = self.participants - 1
        done = len([c for c in request.returned if c != request.caller]) >= others
        call.set_x(0, 1 if done else 0)
        call.set_x(1, next((r for r in request.returned.values() if r), 0))

    def _virt_to_phys(self, call: ServiceCall) -> None:
        found = self.machine.translate(call.x(0))
        call.set_x(0, found[0] if found is not None else _MASK64)


def _pack(block: bytearray, base: int, fields: Sequence[abi.EnvField],
          values: Mapping[str, int | bytes]) -> None:
    """Little-endian fields of ``values`` into ``block`` at ``base`` (bytes are copied)."""
    for spec in fields:
        value = values.get(spec.name, 0)
        start = base + spec.offset
        if isinstance(value, bytes):
            block[start:start + min(len(value), spec.size)] = value[:spec.size]
        else:
            block[start:start + spec.size] = \
                (value & ((1 << (8 * spec.size)) - 1)).to_bytes(spec.size, "little")


def runtime_symbols(base: int, env_va: int) -> tuple[Mapping[str, int], bytes]:
    """The runtime stubs assembled at ``base``: their symbols and code."""
    assembly = assemble(RUNTIME_SOURCE, base=base, symbols={ENV_SYMBOL: env_va})
    labels = {name: va for name, va in assembly.labels.items() if not name[:1].isdigit()}
    return {**labels, ENV_SYMBOL: env_va}, assembly.code


@functools.lru_cache(maxsize=16)
def _link(objects: tuple[ObjectFile, ...], base: int,
          externals: tuple[tuple[str, int], ...], roots: tuple[str, ...],
          aliases: tuple[tuple[str, str], ...]) -> LinkedPatcher:
    """Linking is pure: the same objects at the same place link the same (memoised)."""
    return link_patcher(objects, base=base, externals=dict(externals), roots=roots,
                        aliases=dict(aliases))


def install(machine: Machine, objects: Sequence[ObjectFile], *, window: int,
            bindings: Mapping[str, int], kernel_text: tuple[int, int],
            bug_codes: Mapping[str, str] | None = None,
            roots: Sequence[str] = (), aliases: Mapping[str, str] | None = None
            ) -> Installation:
    """Link ``objects`` at ``window`` and map them, the runtime, the environment page
    and the stacks into ``machine`` (physical memory from the top of its memory).

    ``bindings`` gives values for symbols the objects leave undefined (image
    symbols); the runtime's services and ``altpatch_env`` are always bound.  ``roots``
    are the entry symbols (archive members defining them are linked); ``aliases``
    binds a symbol to another one the objects define.
    """
    env_va = window
    runtime_base = window + PAGE_SIZE
    services, runtime_code = runtime_symbols(runtime_base, env_va)
    objects_base = runtime_base + align_up(len(runtime_code))
    linked = _link(tuple(objects), objects_base, tuple(sorted({**services, **bindings}.items())),
                   tuple(roots), tuple(sorted((aliases or {}).items())))
    runtime = LinkedSection(RUNTIME_NAME, ".text", runtime_base, runtime_code, "r-x")
    stacks_va = linked.end + PAGE_SIZE  # one unmapped guard page
    stacks_size = machine.cpu_count * STACK_SIZE
    livepatch_va = stacks_va + stacks_size + PAGE_SIZE  # after another guard page
    total = (linked.end - window) + stacks_size + LIVEPATCH_PAGES * PAGE_SIZE
    pa = machine.memory_size - total
    pa = page_base(pa)
    for section in (runtime, *linked.sections):
        if not section.content:
            continue
        offset = section.va - window
        size = align_up(len(section.content))
        machine.load_phys(pa + offset, section.content)
        machine.map(section.va, pa + offset, size, section.perms)
    machine.map(env_va, pa, PAGE_SIZE, "rw-")
    stacks_pa = pa + (linked.end - window)
    machine.map(stacks_va, stacks_pa, stacks_size, "rw-")
    livepatch_pa = stacks_pa + stacks_size
    machine.map(livepatch_va, livepatch_pa, LIVEPATCH_PAGES * PAGE_SIZE, "rw-")
    code_symbols = (*linked.code_symbols,
                    *(cs for cs in _runtime_code_symbols(services, runtime_base)))
    locator = Locator(objects, linked, code_symbols, (window, stacks_va))
    installation = Installation(machine, linked, env_va, pa, stacks_va, kernel_text,
                                dict(bug_codes or {}), locator=locator,
                                livepatch_va=livepatch_va, livepatch_pa=livepatch_pa)
    installation.register_services()
    return installation


def _runtime_code_symbols(services: Mapping[str, int], base: int) -> list[CodeSymbol]:
    return [CodeSymbol(RUNTIME_NAME, name, va, ".text", True)
            for name, va in services.items() if name != ENV_SYMBOL and va >= base]


__all__ = [
    "RUNTIME_NAME",
    "STACK_SIZE",
    "WINDOW_OFFSET",
    "Binding",
    "Installation",
    "StopMachine",
    "install",
    "memory_needed",
    "runtime_symbols",
]
