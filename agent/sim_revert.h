/* sim_revert: a simulated revert: a cut's images found and checked, then the
 * stopped domain's disks pointed at them (or at fresh overlays on them). The
 * hv_ops of those calls (see hv.h); be is a struct sim. */
#pragma once

#include "hv.h"

int sim_revert_cut_images(void *be, const char *vm, const char *txid, const char *legacy,
                          const struct hv_cut_where *w, struct hv_image *ret,
                          size_t *ret_n, lserr *err);
int sim_revert_check_images(void *be, const char *vm, const struct hv_image *imgs, size_t n, lserr *err);
int sim_revert_point_disks(void *be, const char *vm, struct hv_image *imgs, size_t n, const char *tag, lserr *err);
