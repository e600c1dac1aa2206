/* xen-4.17 shim: <asm/alternative.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_ASM_ALTERNATIVE_H
#define ALTPATCH_XEN_FWD_ASM_ALTERNATIVE_H
#include <altpatch_xen.h>
#endif
