/* xen-4.17 shim: <asm/arm64/insn.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_ASM_ARM64_INSN_H
#define ALTPATCH_XEN_FWD_ASM_ARM64_INSN_H
#include <altpatch_xen.h>
#endif
