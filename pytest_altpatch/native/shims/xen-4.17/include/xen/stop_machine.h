/* xen-4.17 shim: <xen/stop_machine.h> forwards to the shim (altpatch_xen.h). */
#ifndef ALTPATCH_XEN_FWD_XEN_STOP_MACHINE_H
#define ALTPATCH_XEN_FWD_XEN_STOP_MACHINE_H
#include <altpatch_xen.h>
#endif
