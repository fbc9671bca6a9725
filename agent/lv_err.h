/* lv_err: libvirt's per-thread last error, read once and mapped onto the
 * protocol's LS_E* codes. */
#pragma once

#include "lserr.h"

/* libvirt's message for the thread's last error, or a stand-in when none. */
const char *lv_err_msg(void);

/* The LS_E* code for the thread's last libvirt error (LS_EHV when none). */
int lv_err_code(void);

/* Fills err with "<step>: <libvirt's message>" and the mapped code, which it
 * returns. Call it before any other libvirt call: every public libvirt call
 * resets the last error. */
int lv_err_fail(lserr *err, const char *step);
