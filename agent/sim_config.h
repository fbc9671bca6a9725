/* sim_config: the sim backend's handle and its config file, re-read on every
 * call so a test can inject a fault while the agent runs: domains, latencies,
 * injected failures, hangs and holds. */
#pragma once

#include <stdlib.h>

#include "cleanup.h"
#include "hv.h"
#include "lserr.h"

struct sim {
        char *path; /* the sim config */
        unsigned ga_timeout_s;
        unsigned long long min_free;
};

/* Per-call view of the config. */
struct simcfg {
        char state_dir[HV_PATH_MAX];
        char *text; /* the config, for fail/hang lookups */
};

/* One "domain" line of the config. */
struct simdom {
        int exists;
        char group[LS_NAME_MAX + 1], tier[LS_NAME_MAX + 1];
        char disks[HV_MAX_DISKS][HV_TARGET_MAX];
        unsigned n_disks;
        enum hv_state initial;
        int ga;
};

static inline void sim_config_clear(struct simcfg *c)
{
        free(c->text);
        c->text = NULL;
}

#define _cleanup_simcfg_ _cleanup_(sim_config_clear)

/* The hv_ops open and close; open copies what it needs from cfg. */
int sim_config_open(const struct cfg_agent *cfg, void **ret, lserr *err);
void sim_config_close(void *be);

/* Reads the config into c and makes its state_dir. On failure c holds nothing. */
int sim_config_load(struct sim *s, struct simcfg *c, lserr *err);

/* Does the config hold the line "<word> <a> <b>" (b may be NULL)? */
int sim_config_has_line(const struct simcfg *c, const char *word, const char *a, const char *b);

/* Fills d from vm's domain line; LS_ENODOMAIN when there is none. */
int sim_config_domain(const struct simcfg *c, const char *vm, struct simdom *d);

/* The prologue of every per-domain op: config, domain, then op's hold,
 * latency, injected hang or failure. On failure c holds nothing and err says why. */
int sim_config_enter(struct sim *s, struct simcfg *c, struct simdom *d, const char *vm, const char *op, lserr *err);
