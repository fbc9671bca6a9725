/* sim_domain: simulated domains as the agent sees them: list and lookup, the
 * hv_ops of those calls (see hv.h); be is a struct sim. */
#pragma once

#include "hv.h"

int sim_domain_list(void *be, struct hv_domain **ret, size_t *ret_n, lserr *err);
int sim_domain_lookup(void *be, const char *vm, struct hv_domain *ret, lserr *err);
