/* txn_mgr: the manager's list of transactions, which members each holds, and
 * the manager's life (new, shutdown, free, in-doubt list). */
#include <stdio.h>

#include "cleanup.h"
#include "fsutil.h"
#include "journal.h"
#include "log.h"
#include "txn_priv.h"

struct txn *txn_new(const char *txid, size_t n)
{
        _cleanup_free_ struct txn *t = calloc(1, sizeof(*t));

        if (!t)
                return NULL;
        if (n && !(t->m = calloc(n, sizeof(*t->m))))
                return NULL;
        t->n = n;
        snprintf(t->txid, sizeof(t->txid), "%s", txid);
        pthread_mutex_init(&t->lock, NULL);
        return TAKE_PTR(t);
}

/* A new transaction of the members of a FREEZE, CHECK, DELETE or REVERT
 * request, in the order given. */
struct txn *txn_new_members(const char *txid, Lockstep__Member *const *members, size_t n)
{
        struct txn *t = txn_new(txid, n);

        for (size_t i = 0; t && i < n; i++) {
                snprintf(t->m[i].vm, sizeof(t->m[i].vm), "%s", members[i]->vm);
                t->m[i].tier = members[i]->tier;
                t->m[i].crash = members[i]->consistency == LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
        }
        return t;
}

struct txn *txn_free(struct txn *t)
{
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_replies; i++)
                free(t->replies[i].buf);
        pthread_mutex_destroy(&t->lock);
        for (size_t i = 0; t->m && i < t->n; i++)
                free(t->m[i].removed);
        free(t->m);
        free(t);
        return NULL;
}

static int hold_members(const Lockstep__JournalState s, int decided)
{
        /* Members stay held while frozen or while overlays wait for a decision. */
        return s == LOCKSTEP__JOURNAL_STATE__J_FREEZING || s == LOCKSTEP__JOURNAL_STATE__J_FROZEN ||
               s == LOCKSTEP__JOURNAL_STATE__J_SNAPPING || s == LOCKSTEP__JOURNAL_STATE__J_DELETING ||
               (s >= LOCKSTEP__JOURNAL_STATE__J_R_PREPARED && s <= LOCKSTEP__JOURNAL_STATE__J_R_STARTED) ||
               (s == LOCKSTEP__JOURNAL_STATE__J_SNAPPED && !decided);
}

struct txn *txn_find(struct txn_mgr *mg, const char *txid)
{
        for (struct txn *t = mg->list; t; t = t->next)
                if (!strcmp(t->txid, txid))
                        return t;
        return NULL;
}

struct txn *txn_holder(struct txn_mgr *mg, const char *vm, int *ret_thawing)
{
        for (struct txn *t = mg->list; t; t = t->next) {
                int held = hold_members(t->state, t->decided);
                for (size_t i = 0; i < t->n; i++) {
                        if (strcmp(t->m[i].vm, vm) != 0)
                                continue;
                        /* A thaw (or resume) that failed is retried by the lease
                         * thread until it succeeds: a new cut's freeze would be
                         * undone under it. Its answer may have been lost with
                         * the connection, so the guest may well run already. */
                        if (held || t->m[i].quiesced || t->m[i].paused) {
                                if (ret_thawing)
                                        *ret_thawing = !held;
                                return t;
                        }
                }
        }
        return NULL;
}

int txn_enlist(struct txn_mgr *mg, struct txn *t, Lockstep__JournalState state, const char *step)
{
        int busy = 0, late;

        pthread_mutex_lock(&mg->lock);
        if (txn_find(mg, t->txid)) {
                pthread_mutex_unlock(&mg->lock);
                return -EEXIST;
        }
        /* Checked under the lock txn_note_decided takes: a decision and a late
         * opening step of one txid cannot both pass. */
        late = decided_has(mg->decided, t->txid, fsutil_now_us());
        for (size_t i = 0; late && i < t->n; i++)
                txn_member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                "%s: transaction %s was already decided on this agent: a late opening step is refused",
                                step, t->txid);
        busy = late;
        for (size_t i = 0; !late && i < t->n; i++) {
                int thawing = 0;
                struct txn *h = txn_holder(mg, t->m[i].vm, &thawing);
                if (h && thawing)
                        txn_member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BUSY,
                                        "%s: its thaw after transaction %s failed and is being retried (the "
                                        "hypervisor did not answer); try again when it succeeds",
                                        step, h->txid);
                else if (h)
                        txn_member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BUSY,
                                        "%s: held by transaction %s; try again when it is finished", step, h->txid);
                busy |= h != NULL;
        }
        pthread_mutex_lock(&t->lock);
        t->state = busy ? LOCKSTEP__JOURNAL_STATE__J_ABORTED : state;
        t->next = mg->list;
        mg->list = t;
        pthread_mutex_unlock(&mg->lock);
        return busy;
}

int txn_mgr_new(const struct cfg_agent *cfg, struct hv *hv, struct guardian *g, struct txn_mgr **ret, lserr *err)
{
        struct txn_mgr *mg;
        int r = journal_open(cfg->journal_dir, err);

        if (r < 0)
                return r;
        mg = calloc(1, sizeof(*mg));
        if (!mg)
                return -ENOMEM;
        mg->cfg = cfg;
        mg->hv = hv;
        mg->g = g;
        pthread_mutex_init(&mg->lock, NULL);
        pthread_cond_init(&mg->wake, NULL);
        /* A held command is accepted until its issue time + window; it was
         * issued before the decision, which was accepted no earlier than its
         * own issue time - window: twice the window covers it. */
        r = decided_open(cfg->journal_dir, 2LL * cfg->time_window_s * 1000000LL, fsutil_now_us(), &mg->decided, err);
        /* A wide step (every member's freeze, and its guest-ping beside the
         * check) may want two threads per member; they go after a while idle. */
        if (r >= 0 && workers_new(2 * TXN_POOL_MAX, TXN_WORKER_IDLE_MS, &mg->workers) < 0)
                r = lserr_set(err, -ENOMEM, "agent: out of memory");
        if (r >= 0)
                r = txn_lease_start(mg, err);
        if (r < 0) {
                txn_mgr_free(mg);
                return r;
        }
        *ret = mg;
        return 0;
}

void txn_mgr_shutdown(struct txn_mgr *mg)
{
        pthread_mutex_lock(&mg->lock);
        for (struct txn *t = mg->list; t; t = t->next) {
                pthread_mutex_lock(&t->lock);
                if (t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN || t->state == LOCKSTEP__JOURNAL_STATE__J_FREEZING) {
                        log_warn("txid=%s agent stopping while frozen: thawing", t->txid);
                        txn_expire_lease(mg, t);
                } else {
                        txn_undo_all(mg, t);
                }
                pthread_mutex_unlock(&t->lock);
        }
        pthread_mutex_unlock(&mg->lock);
}

struct txn_mgr *txn_mgr_free(struct txn_mgr *mg)
{
        if (!mg)
                return NULL;
        txn_lease_stop(mg);
        /* No member step outlives the transactions it works on. */
        mg->workers = workers_free(mg->workers);
        while (mg->list) {
                struct txn *t = mg->list;
                mg->list = t->next;
                txn_free(t);
        }
        decided_free(mg->decided);
        pthread_cond_destroy(&mg->wake);
        pthread_mutex_destroy(&mg->lock);
        free(mg);
        return NULL;
}

int txn_note_decided(struct txn_mgr *mg, const char *txid, lserr *err)
{
        int r = 0;

        pthread_mutex_lock(&mg->lock);
        if (!txn_find(mg, txid))
                r = decided_add(mg->decided, txid, fsutil_now_us(), err);
        pthread_mutex_unlock(&mg->lock);
        return r;
}

int txn_was_decided(struct txn_mgr *mg, const char *txid)
{
        int r;

        pthread_mutex_lock(&mg->lock);
        r = !txn_find(mg, txid) && decided_has(mg->decided, txid, fsutil_now_us());
        pthread_mutex_unlock(&mg->lock);
        return r;
}

static void in_doubt_free_one(Lockstep__InDoubt *d)
{
        for (size_t k = 0; d->vms && k < d->n_vms; k++)
                free(d->vms[k]);
        free(d->vms);
        free(d->txid);
        free(d);
}

/* One in-doubt entry for t; NULL when out of memory. */
static Lockstep__InDoubt *in_doubt_of(const struct txn *t)
{
        Lockstep__InDoubt *d = calloc(1, sizeof(*d));

        if (!d)
                return NULL;
        lockstep__in_doubt__init(d);
        d->txid = strdup(t->txid);
        d->state = txn_wire_state(t->state);
        d->revert = t->revert;
        d->vms = calloc(t->n ? t->n : 1, sizeof(char *));
        for (size_t i = 0; d->vms && i < t->n; i++)
                if ((d->vms[d->n_vms] = strdup(t->m[i].vm)))
                        d->n_vms++;
        if (!d->txid || !d->vms) {
                in_doubt_free_one(d);
                return NULL;
        }
        return d;
}

int txn_in_doubt(struct txn_mgr *mg, Lockstep__InDoubt ***ret, size_t *ret_n)
{
        Lockstep__InDoubt **v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        pthread_mutex_lock(&mg->lock);
        for (struct txn *t = mg->list; t; t = t->next) {
                if (t->decided || t->state == LOCKSTEP__JOURNAL_STATE__J_NONE)
                        continue;
                if (n == cap) {
                        void *nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof(*v));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                }
                if (!(v[n] = in_doubt_of(t))) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        pthread_mutex_unlock(&mg->lock);
        if (r < 0) {
                txn_in_doubt_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

void txn_in_doubt_free(Lockstep__InDoubt **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                in_doubt_free_one(v[i]);
        free(v);
}
