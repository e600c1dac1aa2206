/* xen-4.17 shim: <xen/vmap.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_XEN_VMAP_H
#define ALTPATCH_XEN_FWD_XEN_VMAP_H
#include <altpatch_xen.h>
#endif
