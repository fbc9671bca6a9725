/* lv_delete: what a cut leaves behind, removed: a committed cut's layers
 * merged away (hv_delete_cut) and a pre-revert branch's files dropped
 * (hv_drop_branch); see hv.h. be is a struct lv. */
#pragma once

#include <stddef.h>

#include "hv.h"

int lv_delete_cut(void *be, const char *vm, const char *txid, const char *legacy, const struct hv_delete_hints *hints,
                  struct hv_image *ret, size_t *ret_n, lserr *err);
int lv_delete_branch(void *be, const char *vm, const struct hv_image *branch, size_t n, const char *const *keep,
                     size_t n_keep, struct hv_removed **ret, size_t *ret_n, lserr *err);
