/* lv_revert: a domain reverted to a cut: the cut's images found and checked,
 * and the shut-off domain's disks pointed at them (hv_cut_images,
 * hv_check_images, hv_point_disks; see hv.h). be is a struct lv. */
#pragma once

#include <stddef.h>

#include "hv.h"

int lv_revert_cut_images(void *be, const char *vm, const char *txid, const char *legacy, const struct hv_cut_where *w,
                         struct hv_image *ret,
                         size_t *ret_n, lserr *err);
int lv_revert_check_images(void *be, const char *vm, const struct hv_image *imgs, size_t n, lserr *err);
int lv_revert_point_disks(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err);
