/* xen-4.17 shim: <asm/byteorder.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_ASM_BYTEORDER_H
#define ALTPATCH_XEN_FWD_ASM_BYTEORDER_H
#include <altpatch_xen.h>
#endif
