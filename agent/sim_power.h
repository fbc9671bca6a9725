/* sim_power: a simulated domain's run state changed: vCPUs suspended and
 * resumed, the domain stopped, started, or restored from a memory state. The
 * hv_ops of those calls (see hv.h); be is a struct sim. */
#pragma once

#include "lserr.h"

int sim_power_suspend(void *be, const char *vm, lserr *err);
int sim_power_resume(void *be, const char *vm, lserr *err);
int sim_power_stop(void *be, const char *vm, unsigned timeout_ms, lserr *err);
int sim_power_start(void *be, const char *vm, lserr *err);
int sim_power_restore(void *be, const char *vm, const char *memfile, lserr *err);
