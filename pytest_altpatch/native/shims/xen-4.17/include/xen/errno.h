/* xen-4.17 shim: <xen/errno.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_XEN_ERRNO_H
#define ALTPATCH_XEN_FWD_XEN_ERRNO_H
#include <altpatch_xen.h>
#endif
