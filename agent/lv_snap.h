/* lv_snap: a cut's snapshot of one domain: the checks before any guest is
 * frozen, the atomic external snapshot, and its discard. The hv_ops of those
 * calls (see hv.h); be is a struct lv. */
#pragma once

#include <stddef.h>

#include "hv.h"

int lv_snap_check(void *be, const char *vm, const char *txid, unsigned flags, lserr *err);
int lv_snap_create(void *be, const char *vm, const char *txid, int with_memory, struct hv_image *ret, size_t *ret_n,
                   lserr *err);
int lv_snap_discard(void *be, const char *vm, const char *txid, const struct hv_image *imgs, size_t n, lserr *err);
