/* sim_domain: simulated domains as the agent sees them, from the config's
 * domain lines and their state files: list and lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_chain.h"
#include "sim_domain.h"

#define SIM_MAX_DOMAINS 4096

static void fill_domain(const char *vm, const struct simdom *d, const struct simstate *st, struct hv_domain *ret)
{
        int k;

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "%s", vm);
        ret->state = st->state;
        snprintf(ret->group, sizeof(ret->group), "%s", d->group);
        snprintf(ret->tier, sizeof(ret->tier), "%s", d->tier);
        ret->n_disks = d->n_disks;
        for (unsigned i = 0; i < d->n_disks; i++) {
                snprintf(ret->disks[i].target, HV_TARGET_MAX, "%s", d->disks[i]);
                snprintf(ret->disks[i].path, HV_PATH_MAX, "%s", st->cur[i]);
                k = sim_chain_find(st, st->cur[i]);
                snprintf(ret->disks[i].backing, HV_PATH_MAX, "%s", k >= 0 ? st->backing[k] : "");
                snprintf(ret->disks[i].format, sizeof(ret->disks[i].format), "qcow2");
        }
}

int sim_domain_lookup(void *be, const char *vm, struct hv_domain *ret, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        struct simdom d;
        struct simstate st;
        int r = sim_config_enter(be, &c, &d, vm, "lookup", err);

        if (r < 0)
                return r;
        sim_state_peek(&c, vm, &d, &st);
        fill_domain(vm, &d, &st, ret);
        return 0;
}

int sim_domain_list(void *be, struct hv_domain **ret, size_t *ret_n, lserr *err)
{
        _cleanup_simcfg_ struct simcfg c = {0};
        _cleanup_free_ struct hv_domain *out = NULL;
        size_t n = 0;
        const char *p;
        int r = sim_config_load(be, &c, err);

        if (r < 0)
                return r;
        out = calloc(SIM_MAX_DOMAINS, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (p = c.text; p && *p && n < SIM_MAX_DOMAINS;) {
                const char *end = strchr(p, '\n');
                char vm[LS_NAME_MAX + 1];
                if (sscanf(p, "domain %64s", vm) == 1) {
                        struct simdom d;
                        struct simstate st;
                        sim_config_domain(&c, vm, &d);
                        sim_state_peek(&c, vm, &d, &st);
                        fill_domain(vm, &d, &st, &out[n++]);
                }
                p = end ? end + 1 : NULL;
        }
        *ret = TAKE_PTR(out);
        *ret_n = n;
        return 0;
}
