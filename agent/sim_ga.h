/* sim_ga: the simulated guest agent: ping, fsfreeze and thaw, hooks run in
 * the guest. The hv_ops of those calls (see hv.h); be is a struct sim. */
#pragma once

#include "lserr.h"

int sim_ga_ping(void *be, const char *vm, int timeout_s, lserr *err);
int sim_ga_freeze(void *be, const char *vm, lserr *err);
int sim_ga_thaw(void *be, const char *vm, lserr *err);
int sim_ga_run(void *be, const char *vm, const char *name, char *const *argv, unsigned timeout_ms, lserr *err);
