/* sim_state: a simulated domain's mutable state, one file per domain in the
 * state dir (<state_dir>/<vm>.state), so the guardian process and a restarted
 * agent see it too; a lock file serialises changes across them. */
#pragma once

#include "sim_config.h"

#define SIM_MAX_LINKS 32

struct simstate {
        enum hv_state state;
        int frozen;
        char cur[HV_MAX_DISKS][HV_PATH_MAX];
        /* Backing relations of overlays: link[k] is backed by backing[k]. */
        char link[SIM_MAX_LINKS][HV_PATH_MAX];
        char backing[SIM_MAX_LINKS][HV_PATH_MAX];
        unsigned n_links;
};

/* Takes the state dir's lock: an fd whose close drops it (-1 when the lock
 * file cannot be opened: the call then goes on unlocked, as it always has). */
int sim_state_lock(const struct simcfg *c);

/* Reads vm's state; a missing file is the domain's initial state. Call with
 * the lock held. */
void sim_state_read(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st);

/* Replaces vm's state file atomically. Call with the lock held. */
int sim_state_write(const struct simcfg *c, const char *vm, const struct simdom *d, const struct simstate *st,
                    lserr *err);

/* Reads vm's state under the lock, for callers that only look. */
void sim_state_peek(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st);

/* One change of a domain's state: fn returns >= 0 or fails with err set; the
 * state is written back either way. */
typedef int sim_change_fn(const struct simcfg *c, const char *vm, const struct simdom *d, struct simstate *st,
                          lserr *err);

/* Enters op (see sim_config_enter) and applies fn under the lock: fn's
 * result, or the write's error. */
int sim_state_change(struct sim *s, const char *vm, const char *op, sim_change_fn *fn, lserr *err);

/* Creates the fake image file path; LS_EOVERLAYEXISTS when it exists. */
int sim_state_touch(const char *path, lserr *err);
