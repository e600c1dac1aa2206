/* xen-4.17 shim: <asm/cpufeature.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_ASM_CPUFEATURE_H
#define ALTPATCH_XEN_FWD_ASM_CPUFEATURE_H
#include <altpatch_xen.h>
#endif
