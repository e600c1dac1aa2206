/* xen-4.17 shim: <asm/page.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_ASM_PAGE_H
#define ALTPATCH_XEN_FWD_ASM_PAGE_H
#include <altpatch_xen.h>
#endif
