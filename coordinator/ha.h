/* ha: lockstepd's part in a cluster of coordinators on etcd (coordinator.yaml's
 * "ha:"): the catalog in etcd, the campaign for the leader key, the fences
 * that keep a lockstepd that does not lead from writing or commanding, and
 * the moment it takes over. */
#pragma once

#include <stdint.h>

#include "agentlink.h"
#include "catalog.h"
#include "coord_ha.h"
#include "election.h"
#include "lserr.h"

struct ha;

/* Opens the catalog in etcd, fenced shut (no write passes until this
 * lockstepd leads), and starts the campaign; control names this lockstepd's
 * control socket for the others to read. *ret_cat and *ret are the caller's;
 * close the ha after every user of the catalog stopped, the catalog after. */
int ha_open(const struct cfg_ha *cfg, const char *control, struct catalog **ret_cat, struct ha **ret, lserr *err);
/* Ends the campaign, resigning (the next leader need not wait the TTL). */
struct ha *ha_close(struct ha *h);

/* The fence for agent links (agentlink_set_fence): we lead and the catalog
 * is fenced on our epoch. Lives as long as h. */
const struct agentlink_fence *ha_fence(struct ha *h);

/* One look at the election, from the thread that settles transactions: 1 when
 * this lockstepd has just become the leader (a new epoch) and fenced the
 * catalog on it, so the caller takes over what is unresolved; 0 otherwise
 * (leading as before, or following). < 0: the catalog's fence could not be
 * set; we do not lead. */
int ha_step(struct ha *h, struct catalog *cat, lserr *err);

/* We lead now, with the catalog fenced on *epoch (may be NULL). */
int ha_leading(struct ha *h, uint64_t *epoch);
/* The election as last seen, for `lockstep cluster status`. */
void ha_view(struct ha *h, struct election_view *ret);

/* A lockstepd of the cluster, from its entry (held by its lease). */
struct ha_member {
        char value[ELECTION_VALUE_MAX]; /* "NAME pid=PID control=URL[ peer=URL]" */
};

/* Every member whose lease lives (*ret the caller's), and etcd's status as
 * the endpoint in use gives it. */
int ha_members(struct ha *h, struct ha_member **ret, size_t *ret_n, struct etcd_status *st, lserr *err);
const struct cfg_ha *ha_config(const struct ha *h);
