/* lv_ga: the guest agent through libvirt: ping, fsfreeze/fsthaw of every
 * guest filesystem, and hook commands run in the guest. The hv_ops of those
 * calls (see hv.h); be is a struct lv. */
#pragma once

#include "lserr.h"

int lv_ga_ping(void *be, const char *vm, int timeout_s, lserr *err);
int lv_ga_freeze(void *be, const char *vm, lserr *err);
int lv_ga_thaw(void *be, const char *vm, lserr *err);
int lv_ga_run(void *be, const char *vm, const char *name, char *const *argv, unsigned timeout_ms, lserr *err);
