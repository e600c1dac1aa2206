/* xen-4.17 shim: <xen/sizes.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_XEN_SIZES_H
#define ALTPATCH_XEN_FWD_XEN_SIZES_H
#include <altpatch_xen.h>
#endif
