/* xen-4.17 shim: <xen/virtual_region.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_XEN_VIRTUAL_REGION_H
#define ALTPATCH_XEN_FWD_XEN_VIRTUAL_REGION_H
#include <altpatch_xen.h>
#endif
