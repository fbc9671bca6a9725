/* election: the campaign thread (lease, renewals, create-if-absent of the
 * leader key) and the view other threads read under its lock. */
#include "election.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"

/* Leadership ends this long before the lease's end as we last renewed it:
 * room for our clock against etcd's, and for a command in flight. */
#define MARGIN_US 500000LL
/* A follower tries for the key this often, not once a lease renewal: a dead
 * leader's key goes when its lease ends, and the wait after that (up to a
 * third of the TTL before) is failover time. */
#define FOLLOWER_TRY_US 250000LL

/* Leadership is timed on CLOCK_BOOTTIME: it goes on while the host is
 * suspended, as etcd's lease does, where CLOCK_MONOTONIC stops. */
static long long boot_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct election {
        struct etcd *c;
        char key[ETCD_KEY_MAX + 1], value[ELECTION_VALUE_MAX], member[ETCD_KEY_MAX + 1];
        unsigned ttl_s;
        pthread_t thread;
        int started;

        pthread_mutex_t lock;
        pthread_cond_t changed;
        int stop, resign;
        /* Under lock: the view, and until when our leadership holds. */
        struct election_view v;
        long long valid_until_us; /* CLOCK_BOOTTIME */
        int64_t lease;            /* the campaign thread's own */
        int member_put;           /* member key put with this lease */
};

/* A failure, for the view; a campaign that reached etcd clears it. */
static void set_error(struct election *e, const lserr *err)
{
        pthread_mutex_lock(&e->lock);
        snprintf(e->v.error, sizeof(e->v.error), "%s", err->msg);
        pthread_mutex_unlock(&e->lock);
}

static void lost(struct election *e, const char *why)
{
        pthread_mutex_lock(&e->lock);
        if (e->v.leading)
                log_warn("election: no longer the leader (epoch %llu): %s", (unsigned long long)e->v.epoch, why);
        e->v.leading = 0;
        e->v.epoch = 0;
        pthread_cond_broadcast(&e->changed);
        pthread_mutex_unlock(&e->lock);
}

/* Grants a lease, or renews ours; 0 with the lease valid until *until. */
static int hold_lease(struct election *e, long long *until, lserr *err)
{
        long long sent = boot_us();
        int64_t ttl = 0;
        int r;

        if (!e->lease) {
                /* What etcd granted counts, not what we asked: it may raise a
                 * short TTL to its minimum. */
                r = etcd_lease_grant(e->c, e->ttl_s, &e->lease, &ttl, err);
                e->member_put = 0;
        } else {
                r = etcd_lease_keepalive(e->c, e->lease, &ttl, err);
                if (r == 0 && ttl == 0) {
                        /* Expired while we could not renew it: a new one, and
                         * the key it held is gone with it. */
                        e->lease = 0;
                        lost(e, "the lease expired");
                        return hold_lease(e, until, err);
                }
        }
        if (r == 0)
                *until = sent + ttl * 1000000LL - MARGIN_US;
        /* Our entry among the members goes with the lease: put again with a
         * new one (or until a put works). */
        if (r == 0 && e->member[0] && !e->member_put) {
                r = etcd_put(e->c, e->member, e->value, strlen(e->value), e->lease, err);
                e->member_put = r == 0;
        }
        return r;
}

/* Creates the key with our lease unless somebody holds it; reads it either
 * way. 1 when it is ours. */
static int campaign(struct election *e, long long until, lserr *err)
{
        struct etcd_cmp absent = {.key = e->key, .target = ETCD_CREATE, .result = ETCD_EQUAL, .num = 0};
        struct etcd_op put = {.kind = ETCD_OP_PUT, .key = e->key, .value = e->value, .value_len = strlen(e->value),
                              .lease = e->lease};
        struct etcd_op get = {.kind = ETCD_OP_RANGE, .key = e->key};
        struct etcd_txn_result t = {0};
        int r = etcd_txn(e->c, &absent, 1, &put, 1, &get, 1, &t, err), mine;
        int found = r == 0 && t.n_ranges == 1 && t.n_kvs[0] == 1;
        int64_t rev = t.succeeded ? t.revision : found ? t.kvs[0][0].create_revision : 1;

        if (r == 0 && rev <= 0)
                r = lserr_set(err, -EPROTO, "election: %s: etcd gave the key a revision of %lld", e->key,
                              (long long)rev);
        if (r < 0) {
                etcd_txn_result_free(&t);
                return r;
        }
        pthread_mutex_lock(&e->lock);
        e->v.error[0] = '\0';
        if (t.succeeded || found) {
                snprintf(e->v.holder, sizeof(e->v.holder), "%s", t.succeeded ? e->value : (char *)t.kvs[0][0].value);
                e->v.holder_epoch = (uint64_t)rev;
        }
        /* Ours: created now, or earlier with this same lease. */
        mine = t.succeeded || (found && t.kvs[0][0].lease == e->lease);
        if (mine && e->v.epoch != e->v.holder_epoch) {
                /* Led before, the key was removed and is ours again: a new
                 * epoch, which the catalog's fence must follow. */
                e->v.leading = 1;
                e->v.epoch = e->v.holder_epoch;
                log_info("election: leader, epoch %llu", (unsigned long long)e->v.epoch);
        } else if (!mine && e->v.leading) {
                e->v.leading = 0;
                e->v.epoch = 0;
                log_warn("election: the leader key is no longer ours");
        }
        if (mine)
                e->valid_until_us = until;
        pthread_cond_broadcast(&e->changed);
        pthread_mutex_unlock(&e->lock);
        etcd_txn_result_free(&t);
        return mine;
}

static void *campaign_main(void *arg)
{
        struct election *e = arg;
        long long tick_us = (long long)e->ttl_s * 1000000LL / 3, until = 0, renew_at = 0;

        for (;;) {
                lserr err = {0};
                struct timespec ts;
                long long wait_us;
                int r = 0, leading;

                /* The lease is renewed a third of its TTL apart; a follower
                 * campaigns in between as well. */
                if (!e->lease || boot_us() >= renew_at) {
                        r = hold_lease(e, &until, &err);
                        renew_at = boot_us() + tick_us;
                }
                if (r == 0)
                        r = campaign(e, until, &err);
                if (r < 0) {
                        set_error(e, &err);
                        log_warn("election: %s", err.msg);
                        renew_at = 0;
                }
                pthread_mutex_lock(&e->lock);
                leading = e->v.leading;
                wait_us = r < 0 ? tick_us : renew_at - boot_us();
                if (r == 0 && !leading && wait_us > FOLLOWER_TRY_US)
                        wait_us = FOLLOWER_TRY_US;
                if (wait_us < 0)
                        wait_us = 0;
                ts = fsutil_mono_after(wait_us);
                while (!e->stop && pthread_cond_timedwait(&e->changed, &e->lock, &ts) == 0)
                        ;
                r = e->stop;
                pthread_mutex_unlock(&e->lock);
                if (r)
                        break;
        }
        return NULL;
}

int election_start(const struct election_opts *o, struct election **ret, lserr *err)
{
        _cleanup_free_ struct election *e = NULL;
        struct etcd_opts eo;
        int r;

        if (!o->key || !*o->key || strlen(o->key) > ETCD_KEY_MAX)
                return lserr_set(err, -EINVAL, "election: the leader key must be 1..%d bytes", ETCD_KEY_MAX);
        if (!o->value || strlen(o->value) >= ELECTION_VALUE_MAX)
                return lserr_set(err, -EINVAL, "election: our value must be under %d bytes", ELECTION_VALUE_MAX);
        if (o->member_key && (!*o->member_key || strlen(o->member_key) > ETCD_KEY_MAX))
                return lserr_set(err, -EINVAL, "election: the member key must be 1..%d bytes", ETCD_KEY_MAX);
        if (o->ttl_s < 2 || o->ttl_s > 60)
                return lserr_set(err, -EINVAL, "election: a lease TTL of %u s is out of range (2..60)", o->ttl_s);
        e = calloc(1, sizeof(*e));
        if (!e)
                return lserr_set(err, -ENOMEM, "election: out of memory");
        snprintf(e->key, sizeof(e->key), "%s", o->key);
        snprintf(e->value, sizeof(e->value), "%s", o->value);
        snprintf(e->member, sizeof(e->member), "%s", o->member_key ? o->member_key : "");
        e->ttl_s = o->ttl_s;
        /* No request may outlast a third of the lease: one hung endpoint
         * must not cost the leadership the others could keep. */
        eo = *o->etcd;
        if (!eo.timeout_ms || eo.timeout_ms > o->ttl_s * 1000u / 3)
                eo.timeout_ms = o->ttl_s * 1000u / 3;
        r = etcd_open(&eo, &e->c, err);
        if (r < 0)
                return r;
        pthread_mutex_init(&e->lock, NULL);
        fsutil_cond_init_mono(&e->changed);
        r = pthread_create(&e->thread, NULL, campaign_main, e);
        if (r != 0) {
                e->c = etcd_close(e->c);
                pthread_cond_destroy(&e->changed);
                pthread_mutex_destroy(&e->lock);
                return lserr_set(err, -r, "election: cannot start its thread: %s", strerror(r));
        }
        e->started = 1;
        *ret = TAKE_PTR(e);
        return 0;
}

struct election *election_stop(struct election *e, int resign)
{
        lserr err = {0};

        if (!e)
                return NULL;
        pthread_mutex_lock(&e->lock);
        e->stop = 1;
        pthread_cond_broadcast(&e->changed);
        pthread_mutex_unlock(&e->lock);
        if (e->started)
                pthread_join(e->thread, NULL);
        /* Revoked, the key goes now: the next leader need not wait the TTL. */
        if (resign && e->lease && etcd_lease_revoke(e->c, e->lease, &err) < 0)
                log_warn("election: resign: %s", err.msg);
        etcd_close(e->c);
        pthread_cond_destroy(&e->changed);
        pthread_mutex_destroy(&e->lock);
        free(e);
        return NULL;
}

/* Under lock: leading by our clock. */
static int leading_now(const struct election *e)
{
        return e->v.leading && boot_us() < e->valid_until_us;
}

int election_leading(struct election *e, uint64_t *epoch)
{
        int r;

        pthread_mutex_lock(&e->lock);
        r = leading_now(e);
        if (epoch)
                *epoch = r ? e->v.epoch : 0;
        pthread_mutex_unlock(&e->lock);
        return r;
}

void election_view(struct election *e, struct election_view *ret)
{
        pthread_mutex_lock(&e->lock);
        *ret = e->v;
        ret->leading = leading_now(e);
        if (!ret->leading)
                ret->epoch = 0;
        pthread_mutex_unlock(&e->lock);
}

int election_wait_leading(struct election *e, unsigned timeout_ms, uint64_t *epoch)
{
        long long deadline = fsutil_mono_us() + (long long)timeout_ms * 1000;
        int r;

        pthread_mutex_lock(&e->lock);
        while (!(r = leading_now(e)) && fsutil_mono_us() < deadline) {
                struct timespec ts = fsutil_mono_after(50 * 1000);
                pthread_cond_timedwait(&e->changed, &e->lock, &ts);
        }
        if (epoch)
                *epoch = r ? e->v.epoch : 0;
        pthread_mutex_unlock(&e->lock);
        return r;
}
