/* sim_delete: a simulated cut's layers merged away and a pre-revert branch's
 * files dropped. The hv_ops of those calls (see hv.h); be is a struct sim. */
#pragma once

#include "hv.h"

int sim_delete_cut(void *be, const char *vm, const char *txid, const char *legacy,
                   const struct hv_delete_hints *hints, struct hv_image *ret, size_t *ret_n, lserr *err);
int sim_delete_branch(void *be, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                      size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err);
