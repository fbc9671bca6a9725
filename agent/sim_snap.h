/* sim_snap: simulated external snapshots: the pre-flight check, taking a
 * cut's overlays (and memory state), discarding them. The hv_ops of those
 * calls (see hv.h); be is a struct sim. */
#pragma once

#include "hv.h"

int sim_snap_check(void *be, const char *vm, const char *txid, unsigned flags, lserr *err);
int sim_snap_create(void *be, const char *vm, const char *txid, int with_memory, struct hv_image *ret, size_t *ret_n,
                    lserr *err);
int sim_snap_discard(void *be, const char *vm, const char *txid, const struct hv_image *imgs, size_t n, lserr *err);
