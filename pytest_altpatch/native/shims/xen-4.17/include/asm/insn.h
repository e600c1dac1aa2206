/* xen-4.17 shim: <asm/insn.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_ASM_INSN_H
#define ALTPATCH_XEN_FWD_ASM_INSN_H
#include <altpatch_xen.h>
#endif
