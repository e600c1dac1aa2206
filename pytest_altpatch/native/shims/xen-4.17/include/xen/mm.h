/* xen-4.17 shim: <xen/mm.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_XEN_MM_H
#define ALTPATCH_XEN_FWD_XEN_MM_H
#include <altpatch_xen.h>
#endif
