/* election: this lockstepd's campaign for the leader key in etcd. A thread of
 * its own holds a lease (granted, then renewed every third of its TTL) and,
 * while another process holds the key, tries to create it at each renewal. The
 * epoch is the key's create revision: etcd's revisions only grow, so agents
 * can fence on it (Command.epoch). Leadership ends by our own clock at the
 * lease's end as last renewed, less a margin, whether or not etcd can be
 * reached to say so. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "etcd.h"
#include "lserr.h"

#define ELECTION_VALUE_MAX 256

struct election_opts {
        const struct etcd_opts *etcd;
        const char *key;   /* e.g. "/lockstep/leader" */
        const char *value; /* who we are (name, address, pid), for the others to read */
        unsigned ttl_s;    /* the lease's TTL; 2..60 */
        /* NULL, or a key put with value under the same lease: this process's
         * entry among the cluster's members, gone with the lease. */
        const char *member_key;
};

struct election_view {
        int leading;
        uint64_t epoch;                     /* ours while leading, else 0 */
        char holder[ELECTION_VALUE_MAX];    /* the key's value as last read ("" unknown) */
        uint64_t holder_epoch;              /* the key's create revision as last read */
        char error[LSERR_MSG_MAX];          /* the last etcd failure, "" after a success */
};

struct election;

int election_start(const struct election_opts *o, struct election **ret, lserr *err);
/* Ends the campaign. resign: revoke the lease, so the key goes at once; else
 * it is left to expire (what a crash leaves, for tests). */
struct election *election_stop(struct election *e, int resign);

/* 1 and *epoch while we lead by our own clock, else 0. */
int election_leading(struct election *e, uint64_t *epoch);
void election_view(struct election *e, struct election_view *ret);
/* Waits until we lead (1) or timeout_ms passed (0). */
int election_wait_leading(struct election *e, unsigned timeout_ms, uint64_t *epoch);
