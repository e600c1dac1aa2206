"""Native patchers: real AArch64 patcher code run in the machine (ABI v1).

:mod:`.abi` holds the ABI's tables, :mod:`.manifest` reads manifests and shims,
:mod:`.linker` links objects by the payload loader's recipes, :mod:`.executor` runs
linked code on the machine's CPUs with the ABI services, and :mod:`.patcher` puts
it behind the patcher contract (``--altpatch-patcher native:PATH/TO/manifest.yaml``).
"""
