/* ha: the etcd catalog and the election of a lockstepd in a cluster, and the
 * fences: the catalog's (an etcd compare on the leader key) and the agents'
 * (the epoch in every command). */
#include "ha.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cat_etcd.h"
#include "cleanup.h"
#include "envelope.h"
#include "log.h"

/* coord_ha.c checks that the value fits, against its own bound. */
_Static_assert(CFG_HA_VALUE_MAX <= ELECTION_VALUE_MAX, "a member value that passed the config must fit");

struct ha {
        const struct cfg_ha *cfg;
        struct election *el;
        struct agentlink_fence fence;
        char leader_key[CFG_HA_PREFIX_MAX + 16];
        char members[CFG_HA_PREFIX_MAX + 16];     /* their keys' prefix */
        char member_key[CFG_HA_PREFIX_MAX + 96];  /* ours */
        struct etcd *q; /* for cluster status, under lock */
        pthread_mutex_t lock;
        uint64_t fenced; /* the epoch the catalog is fenced on; 0: shut */
};

static int fence_leading(void *arg, uint64_t *epoch)
{
        return ha_leading(arg, epoch);
}

static void etcd_opts_of(const struct cfg_ha *c, struct etcd_opts *o)
{
        *o = (struct etcd_opts){.endpoints = (const char *const *)c->etcd, .n_endpoints = c->n_etcd,
                                .ca_file = c->etcd_ca, .cert_file = c->etcd_cert, .key_file = c->etcd_key};
}

int ha_open(const struct cfg_ha *cfg, const char *control, struct catalog **ret_cat, struct ha **ret, lserr *err)
{
        _cleanup_free_ struct ha *h = calloc(1, sizeof(*h));
        struct catalog *cat = NULL;
        struct etcd_opts eo;
        struct cat_etcd_opts co;
        struct election_opts el;
        char value[ELECTION_VALUE_MAX];
        int r;

        if (!h)
                return lserr_set(err, -ENOMEM, "ha: out of memory");
        h->cfg = cfg;
        snprintf(h->leader_key, sizeof(h->leader_key), "%sleader", cfg->prefix);
        snprintf(h->members, sizeof(h->members), "%smembers/", cfg->prefix);
        snprintf(h->member_key, sizeof(h->member_key), "%s%s", h->members, cfg->name);
        etcd_opts_of(cfg, &eo);
        co = (struct cat_etcd_opts){.etcd = &eo, .prefix = cfg->prefix};
        r = cat_open_etcd(&co, &cat, err);
        /* Shut until we lead: no epoch of etcd's is this large. */
        if (r == 0)
                r = cat_set_fence(cat, h->leader_key, ENV_EPOCH_MAX + 1, err);
        /* peer= last: a follower forwards there (forward.c reads it back). */
        if (cfg->listen)
                snprintf(value, sizeof(value), "%s pid=%d control=%s peer=%s", cfg->name, (int)getpid(), control,
                         cfg->listen);
        else
                snprintf(value, sizeof(value), "%s pid=%d control=%s", cfg->name, (int)getpid(), control);
        el = (struct election_opts){.etcd = &eo, .key = h->leader_key, .value = value, .ttl_s = cfg->lease_ttl_s,
                                    .member_key = h->member_key};
        if (r == 0) {
                /* cluster status asks etcd through q: an operator on a
                 * lockstepd cut off from etcd wants its answer in seconds
                 * (at most 1.5 s per endpoint), not the CLI's timeout. */
                struct etcd_opts qo = eo;
                qo.timeout_ms = 1500;
                r = etcd_open(&qo, &h->q, err);
        }
        if (r == 0)
                r = election_start(&el, &h->el, err);
        if (r < 0) {
                h->q = etcd_close(h->q);
                cat_close(cat);
                return r;
        }
        pthread_mutex_init(&h->lock, NULL);
        h->fence = (struct agentlink_fence){.leading = fence_leading, .arg = h};
        *ret_cat = cat;
        *ret = TAKE_PTR(h);
        return 0;
}

struct ha *ha_close(struct ha *h)
{
        if (!h)
                return NULL;
        election_stop(h->el, 1);
        etcd_close(h->q);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
}

const struct agentlink_fence *ha_fence(struct ha *h)
{
        return &h->fence;
}

int ha_leading(struct ha *h, uint64_t *epoch)
{
        uint64_t e = 0;
        int r = election_leading(h->el, &e);

        pthread_mutex_lock(&h->lock);
        r = r && e == h->fenced;
        pthread_mutex_unlock(&h->lock);
        if (epoch)
                *epoch = r ? e : 0;
        return r;
}

int ha_step(struct ha *h, struct catalog *cat, lserr *err)
{
        uint64_t e = 0, was;
        int r;

        pthread_mutex_lock(&h->lock);
        was = h->fenced;
        pthread_mutex_unlock(&h->lock);
        if (!election_leading(h->el, &e)) {
                if (was)
                        log_warn("ha: %s no longer leads (epoch %llu): following", h->cfg->name,
                                 (unsigned long long)was);
                pthread_mutex_lock(&h->lock);
                h->fenced = 0;
                pthread_mutex_unlock(&h->lock);
                return 0;
        }
        if (e == was)
                return 0;
        /* A new epoch: the catalog takes writes of this one only, before any
         * command carries it. */
        r = cat_set_fence(cat, h->leader_key, e, err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&h->lock);
        h->fenced = e;
        pthread_mutex_unlock(&h->lock);
        log_info("ha: %s leads, epoch %llu", h->cfg->name, (unsigned long long)e);
        return 1;
}

void ha_view(struct ha *h, struct election_view *ret)
{
        election_view(h->el, ret);
}

int ha_members(struct ha *h, struct ha_member **ret, size_t *ret_n, struct etcd_status *st, lserr *err)
{
        struct etcd_kv *kvs = NULL;
        struct ha_member *m;
        size_t n = 0;
        int r;

        pthread_mutex_lock(&h->lock);
        r = etcd_status(h->q, st, err);
        if (r == 0)
                r = etcd_range(h->q, h->members, 1, 0, &kvs, &n, NULL, NULL, err);
        pthread_mutex_unlock(&h->lock);
        if (r < 0)
                return r;
        m = calloc(n ? n : 1, sizeof(*m));
        if (!m) {
                etcd_kvs_free(kvs, n);
                return lserr_set(err, -ENOMEM, "ha: out of memory");
        }
        for (size_t i = 0; i < n; i++)
                snprintf(m[i].value, sizeof(m[i].value), "%s", (char *)kvs[i].value);
        etcd_kvs_free(kvs, n);
        *ret = m;
        *ret_n = n;
        return 0;
}

const struct cfg_ha *ha_config(const struct ha *h)
{
        return h->cfg;
}
