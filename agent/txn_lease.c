/* txn_lease: the lease thread: ends leases that ran out, keeps thawing hung
 * guests, and forgets finished transactions (TXN_KEEP_US, TXN_KEEP_MAX). */
#include <time.h>

#include "failpoint.h"
#include "fsutil.h"
#include "journal.h"
#include "log.h"
#include "notify.h"
#include "txn_priv.h"

void txn_expire_lease(struct txn_mgr *mg, struct txn *t)
{
        txn_undo_all(mg, t);
        t->lease_expired = 1;
        t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
        t->finished_mono = fsutil_mono_us();
        txn_persist_or_log(mg, t);
        log_warn("txid=%s lease expired while frozen: thawed, the transaction can only abort", t->txid);
}

/* A decided transaction only answers resends from its stored replies: its
 * members (tens of KiB each) go, so an hour of remembered transactions stays
 * small. Not while a guest of it is still frozen or paused. */
void txn_compact(struct txn *t)
{
        if (!t->m || !t->finished_mono || !t->decided)
                return;
        for (size_t i = 0; i < t->n; i++)
                if (t->m[i].quiesced || t->m[i].paused)
                        return;
        for (size_t i = 0; i < t->n; i++)
                free(t->m[i].removed);
        free(t->m);
        t->m = NULL;
        t->n = 0;
}

/* One transaction's lease work (t->lock held). */
static void tick_one(struct txn_mgr *mg, struct txn *t, long long now)
{
        if (t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN && now >= t->lease_deadline_mono &&
            !failpoint_on("no-lease"))
                txn_expire_lease(mg, t);
        /* Hung guests: keep trying until what we froze is thawed. */
        for (size_t i = 0; i < t->n; i++)
                if ((t->m[i].quiesced || t->m[i].paused) && t->state != LOCKSTEP__JOURNAL_STATE__J_FROZEN &&
                    t->state != LOCKSTEP__JOURNAL_STATE__J_FREEZING && t->state != LOCKSTEP__JOURNAL_STATE__J_SNAPPING &&
                    txn_undo_member(mg, t, &t->m[i], 0) == 0)
                        txn_persist_or_log(mg, t);
        /* A second after the end: a late resend still finds its members. */
        if (t->finished_mono && now - t->finished_mono > TXN_COMPACT_US)
                txn_compact(t);
}

/* Whether t gives the lease thread work within a tick: a lease running, a
 * guest to thaw again, members to free a second after the end. */
static int needs_tick(const struct txn *t)
{
        if (t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN)
                return 1;
        for (size_t i = 0; i < t->n; i++)
                if (t->m[i].quiesced || t->m[i].paused)
                        return 1;
        return t->finished_mono && t->decided && t->m;
}

/* Whether a finished transaction is forgotten now; kept counts the finished
 * ones seen so far, newest first (the list's order). */
static int forget(const struct txn_mgr *mg, const struct txn *t, long long now, size_t *kept)
{
        long long age = now - t->finished_mono;

        if (!t->finished_mono || !t->decided)
                return 0;
        ++*kept;
        return age > TXN_KEEP_US ||
               (*kept > TXN_KEEP_MAX && age > 2LL * mg->cfg->time_window_s * 1000000LL);
}

long long txn_lease_tick(struct txn_mgr *mg)
{
        long long now = fsutil_mono_us();
        size_t kept = 0;
        struct txn **pp;
        int busy = 0;

        pthread_mutex_lock(&mg->lock);
        for (pp = &mg->list; *pp;) {
                struct txn *t = *pp;
                /* A step in progress checks the lease itself; what it leaves
                 * is seen on the next tick. */
                if (pthread_mutex_trylock(&t->lock) != 0) {
                        busy = 1;
                        pp = &t->next;
                        continue;
                }
                tick_one(mg, t, now);
                busy |= needs_tick(t);
                if (forget(mg, t, now, &kept)) {
                        lserr err = {0};
                        *pp = t->next;
                        journal_remove(mg->cfg->journal_dir, t->txid, &err);
                        pthread_mutex_unlock(&t->lock);
                        txn_free(t);
                        continue;
                }
                pthread_mutex_unlock(&t->lock);
                pp = &t->next;
        }
        pthread_mutex_unlock(&mg->lock);
        return busy ? TXN_TICK_US : TXN_IDLE_US;
}

void txn_lease_kick(struct txn_mgr *mg)
{
        pthread_mutex_lock(&mg->lock);
        mg->kicked = 1;
        pthread_cond_signal(&mg->wake);
        pthread_mutex_unlock(&mg->lock);
}

/* The realtime clock `us` from now, for pthread_cond_timedwait. */
static struct timespec after_us(long long us)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(us / 1000000);
        ts.tv_nsec += (long)(us % 1000000) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

static void *reaper_main(void *p)
{
        struct txn_mgr *mg = p;
        /* The systemd watchdog watches this loop: it is the one that ends
         * leases, so a stall here is what must get the agent restarted. */
        long long wd_us = (long long)notify_watchdog_ms() * 500, last_ping = 0, next = TXN_TICK_US;

        pthread_mutex_lock(&mg->lock);
        while (!mg->stop) {
                /* Idle, it sleeps until a step kicks it (or the watchdog is
                 * due): an idle agent takes no CPU. A kick while it ticked is
                 * not lost: it ticks again at once. */
                struct timespec ts = after_us(wd_us && wd_us < next ? wd_us : next);
                if (!mg->kicked)
                        pthread_cond_timedwait(&mg->wake, &mg->lock, &ts);
                mg->kicked = 0;
                if (mg->stop)
                        break;
                pthread_mutex_unlock(&mg->lock);
                next = txn_lease_tick(mg);
                if (wd_us && fsutil_mono_us() - last_ping >= wd_us) {
                        notify_watchdog();
                        last_ping = fsutil_mono_us();
                }
                pthread_mutex_lock(&mg->lock);
        }
        pthread_mutex_unlock(&mg->lock);
        return NULL;
}

int txn_lease_start(struct txn_mgr *mg, lserr *err)
{
        if (pthread_create(&mg->reaper, NULL, reaper_main, mg) != 0)
                return lserr_set(err, -EAGAIN, "transactions: cannot start the lease thread");
        mg->reaper_started = 1;
        return 0;
}

void txn_lease_stop(struct txn_mgr *mg)
{
        if (!mg->reaper_started)
                return;
        pthread_mutex_lock(&mg->lock);
        mg->stop = 1;
        pthread_cond_signal(&mg->wake);
        pthread_mutex_unlock(&mg->lock);
        pthread_join(mg->reaper, NULL);
        mg->reaper_started = 0;
}
