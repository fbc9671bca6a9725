/* slots: which transactions may run now. One per group at a time, a VM never in
 * two at once (groups may share VMs), at most K involving one agent and N in the
 * fleet. A taker gets everything it needs at once or nothing, so waiters never
 * hold a slot while they wait for another: no deadlock, whatever groups share.
 * Among waiters that compete, the one that came first goes first. */
#pragma once

#include <stddef.h>

#include "lserr.h"

struct slots;

/* What one transaction needs. Strings are copied by slots_take. */
struct slots_need {
        const char *group;
        const char *const *agents;  /* distinct agent ids */
        size_t n_agents;
        const char *const *members; /* "vm@agent" */
        size_t n_members;
};

/* Limits of 0 mean "no limit". *ret is the caller's (slots_free). */
int slots_new(unsigned fleet_max, unsigned agent_max, struct slots **ret);
void slots_free(struct slots *s);

/* New limits (a config reload); waiters look again at once. */
void slots_set_limits(struct slots *s, unsigned fleet_max, unsigned agent_max);

/* 0: taken, drop it with slots_drop(group). -EBUSY at once when the group
 * already runs a transaction. Otherwise waits up to wait_ms for the limits
 * and shared members to allow it; -ETIMEDOUT then, err naming what held it.
 * With wait_ms 0 it does not wait: -EAGAIN and err says why. */
int slots_take(struct slots *s, const struct slots_need *need, int wait_ms, lserr *err);
void slots_drop(struct slots *s, const char *group);

/* Shutting down: every waiter returns -ECANCELED now, and every later take. */
void slots_cancel(struct slots *s);

/* Whether the group runs a transaction now. */
int slots_busy(struct slots *s, const char *group);

/* Transactions running and takers waiting, for metrics. */
void slots_counts(struct slots *s, size_t *ret_running, size_t *ret_waiting);
