/* lv_domain: domains found and described (hv_lookup, hv_list; see hv.h);
 * be is a struct lv. */
#pragma once

#include <stddef.h>

#include "hv.h"

int lv_domain_lookup(void *be, const char *vm, struct hv_domain *ret, lserr *err);
int lv_domain_list(void *be, struct hv_domain **ret, size_t *ret_n, lserr *err);
