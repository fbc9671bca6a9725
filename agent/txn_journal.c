/* txn_journal: a transaction's journal record, written before each state
 * change it records is acted on, and read back after a restart to finish or
 * undo what the crash cut short. */
#include <stdio.h>

#include "cleanup.h"
#include "fsutil.h"
#include "imgfile.h"
#include "journal.h"
#include "log.h"
#include "txn_priv.h"

/* Each field is named once, for both directions: to the wire it is pointed
 * at (strings) or copied, from the wire it is copied back. */
#define MAP(d, mine, wire)                                                                                          \
        do {                                                                                                        \
                if ((d) == TXN_TO_WIRE)                                                                             \
                        (wire) = (mine);                                                                            \
                else                                                                                                \
                        (mine) = (wire);                                                                            \
        } while (0)
#define MAP_STR(d, mine, wire)                                                                                      \
        do {                                                                                                        \
                if ((d) == TXN_TO_WIRE)                                                                             \
                        (wire) = (char *)(mine);                                                                    \
                else                                                                                                \
                        snprintf((mine), sizeof(mine), "%s", (wire) ? (wire) : "");                                 \
        } while (0)

void txn_map_timings(enum txn_dir d, struct member *mb, Lockstep__Timings *tm)
{
        if (d == TXN_TO_WIRE)
                lockstep__timings__init(tm);
        MAP(d, mb->freeze_us, tm->freeze_us);
        MAP(d, mb->snapshot_us, tm->snapshot_us);
        MAP(d, mb->thaw_us, tm->thaw_us);
        MAP(d, mb->frozen_at_us, tm->frozen_at_us);
        MAP(d, mb->thawed_at_us, tm->thawed_at_us);
}

void txn_map_disk(enum txn_dir d, struct hv_image *im, Lockstep__DiskImage *di)
{
        if (d == TXN_TO_WIRE)
                lockstep__disk_image__init(di);
        else
                memset(im, 0, sizeof(*im));
        MAP_STR(d, im->target, di->disk);
        MAP_STR(d, im->before, di->before);
        MAP_STR(d, im->after, di->after);
        MAP_STR(d, im->branch, di->branch);
}

/* Room for one member's wire form (to the wire only). */
struct member_wire {
        Lockstep__JournalMember jm;
        Lockstep__Member mem;
        Lockstep__Timings tm;
        Lockstep__DiskImage di[HV_MAX_DISKS];
        Lockstep__DiskImage *dip[HV_MAX_DISKS];
};

static void map_member(enum txn_dir d, const struct txn *t, struct member *mb, Lockstep__JournalMember *jm,
                       struct member_wire *w)
{
        if (d == TXN_TO_WIRE) {
                lockstep__journal_member__init(jm);
                lockstep__member__init(&w->mem);
                jm->member = &w->mem;
                jm->timings = &w->tm;
                jm->disks = w->dip;
                jm->n_disks = mb->n_imgs;
                jm->member->consistency = mb->crash ? LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH
                                                    : LOCKSTEP__CONSISTENCY__CONSISTENCY_QUIESCE;
                for (size_t k = 0; k < mb->n_imgs; k++)
                        jm->disks[k] = &w->di[k];
        } else {
                mb->n_imgs = jm->n_disks;
                mb->crash = jm->member->consistency == LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
        }
        MAP_STR(d, mb->vm, jm->member->vm);
        MAP(d, mb->tier, jm->member->tier);
        MAP(d, mb->quiesced, jm->quiesced);
        MAP(d, mb->paused, jm->paused);
        MAP(d, mb->code, jm->code);
        MAP_STR(d, mb->msg, jm->message);
        MAP(d, mb->was_running, jm->was_running);
        MAP(d, mb->switched, jm->switched);
        if (jm->timings)
                txn_map_timings(d, mb, jm->timings);
        for (size_t k = 0; k < mb->n_imgs; k++)
                txn_map_disk(d, &mb->imgs[k], jm->disks[k]);
        /* Intent, not only fact: recovery undoes what may have happened. */
        if (d == TXN_TO_WIRE && t->state == LOCKSTEP__JOURNAL_STATE__J_FREEZING) {
                jm->quiesced |= mb->want_freeze;
                jm->paused |= mb->want_pause;
        }
}

static void map_txn(enum txn_dir d, struct txn *t, Lockstep__JournalTxn *jt)
{
        MAP_STR(d, t->txid, jt->txid);
        MAP_STR(d, t->snap, jt->snapshot);
        MAP_STR(d, t->cut, jt->cut_txid);
        MAP(d, t->mode, jt->mode);
        MAP(d, t->state, jt->state);
        MAP(d, t->lease_deadline_unix, jt->lease_deadline_us);
        MAP(d, t->decided, jt->decided);
        MAP(d, t->lease_expired, jt->lease_expired);
        MAP(d, t->revert, jt->revert);
        MAP(d, t->undo, jt->undo);
}

int txn_persist(struct txn_mgr *mg, const struct txn *t, lserr *err)
{
        Lockstep__JournalTxn jt = LOCKSTEP__JOURNAL_TXN__INIT;
        _cleanup_free_ struct member_wire *w = calloc(t->n ? t->n : 1, sizeof(*w));
        _cleanup_free_ Lockstep__JournalMember **jmp = calloc(t->n ? t->n : 1, sizeof(*jmp));
        Lockstep__JournalReply jr[TXN_MAX_STORED], *jrp[TXN_MAX_STORED];

        if (!w || !jmp)
                return lserr_set(err, -ENOMEM, "journal: out of memory");
        for (size_t i = 0; i < t->n; i++) {
                map_member(TXN_TO_WIRE, t, &t->m[i], &w[i].jm, &w[i]);
                jmp[i] = &w[i].jm;
        }
        for (size_t i = 0; i < t->n_replies; i++) {
                lockstep__journal_reply__init(&jr[i]);
                jr[i].step = t->replies[i].step;
                jr[i].sub = t->replies[i].sub;
                jr[i].reply.data = t->replies[i].buf;
                jr[i].reply.len = t->replies[i].len;
                jrp[i] = &jr[i];
        }
        map_txn(TXN_TO_WIRE, (struct txn *)t, &jt);
        jt.version = JOURNAL_VERSION;
        jt.n_members = t->n;
        jt.members = jmp;
        jt.n_replies = t->n_replies;
        jt.replies = jrp;
        jt.updated_us = fsutil_now_us();
        return journal_write(mg->cfg->journal_dir, &jt, err);
}

int txn_persist_or_log(struct txn_mgr *mg, const struct txn *t)
{
        lserr err = {0};
        int r = txn_persist(mg, t, &err);

        if (r < 0)
                log_err("txid=%s journal write failed: %s", t->txid, err.msg);
        return r;
}

struct txn *txn_from_journal(const Lockstep__JournalTxn *jt)
{
        _cleanup_txn_ struct txn *t = NULL;

        /* More than this agent ever writes: not a record of ours. */
        if (jt->n_replies > TXN_MAX_STORED)
                return NULL;
        for (size_t i = 0; i < jt->n_members; i++)
                if (jt->members[i]->n_disks > HV_MAX_DISKS)
                        return NULL;
        t = txn_new(jt->txid, jt->n_members);
        if (!t)
                return NULL;
        map_txn(TXN_FROM_WIRE, t, (Lockstep__JournalTxn *)jt); /* read only */
        for (size_t i = 0; i < t->n; i++)
                map_member(TXN_FROM_WIRE, t, &t->m[i], jt->members[i], NULL);
        for (size_t i = 0; i < jt->n_replies; i++) {
                struct stored *s = &t->replies[i];
                s->buf = malloc(jt->replies[i]->reply.len ? jt->replies[i]->reply.len : 1);
                if (!s->buf)
                        return NULL;
                if (jt->replies[i]->reply.len) /* an empty bytes field has no data pointer */
                        memcpy(s->buf, jt->replies[i]->reply.data, jt->replies[i]->reply.len);
                s->len = jt->replies[i]->reply.len;
                s->step = jt->replies[i]->step;
                s->sub = jt->replies[i]->sub;
                t->n_replies++;
        }
        return TAKE_PTR(t);
}

/* ---- recovery ---- */

struct recover_ctx {
        struct txn_mgr *mg;
        int bad;
};

/* Finds the overlays of this transaction that the domain runs on now, with
 * the images below them as the hypervisor reports them: what a crash during
 * SNAPPING may have left. */
static void find_overlays(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        struct hv_domain d;
        lserr err = {0};

        if (mb->n_imgs || hv_lookup(mg->hv, mb->vm, &d, &err) < 0)
                return;
        for (unsigned k = 0; k < d.n_disks && mb->n_imgs < HV_MAX_DISKS; k++) {
                if (!imgfile_is_layer(d.disks[k].path, t->txid) || !d.disks[k].backing[0])
                        continue;
                struct hv_image *im = &mb->imgs[mb->n_imgs++];
                snprintf(im->target, sizeof(im->target), "%s", d.disks[k].target);
                snprintf(im->after, sizeof(im->after), "%s", d.disks[k].path);
                snprintf(im->before, sizeof(im->before), "%s", d.disks[k].backing);
        }
}

static void finish_aborted(struct txn_mgr *mg, struct txn *t)
{
        t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
        t->finished_mono = fsutil_mono_us();
        txn_persist_or_log(mg, t);
}

/* A crash may have hit between a switch and its journal record: every member
 * counts as switched (pointing a disk at its branch again is harmless) onto
 * the overlay the switch names for this revert. */
static void assume_switched(struct txn *t)
{
        for (size_t i = 0; i < t->n; i++) {
                t->m[i].switched = 1;
                for (size_t k = 0; !t->undo && k < t->m[i].n_imgs; k++) {
                        struct hv_image *im = &t->m[i].imgs[k];
                        if (!im->after[0] &&
                            imgfile_overlay(im->before, t->m[i].vm, im->target, t->txid, im->after, sizeof(im->after)) <
                                    0)
                                im->after[0] = '\0';
                }
        }
}

static void recover_revert(struct txn_mgr *mg, struct txn *t)
{
        switch (t->state) {
        case LOCKSTEP__JOURNAL_STATE__J_R_SWITCHING:
        case LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED:
                assume_switched(t);
                /* fall through */
        case LOCKSTEP__JOURNAL_STATE__J_R_PREPARED:
        case LOCKSTEP__JOURNAL_STATE__J_R_STOPPED:
                log_warn("txid=%s recovered a revert before START: back to the pre-revert branch", t->txid);
                txn_revert_rollback(mg, t);
                finish_aborted(mg, t);
                break;
        case LOCKSTEP__JOURNAL_STATE__J_R_STARTED:
                if (!t->decided)
                        log_info("txid=%s recovered a started revert: waiting for the decision", t->txid);
                break;
        default:
                t->finished_mono = fsutil_mono_us();
                break;
        }
}

static void recover_cut(struct txn_mgr *mg, struct txn *t)
{
        switch (t->state) {
        case LOCKSTEP__JOURNAL_STATE__J_FREEZING:
        case LOCKSTEP__JOURNAL_STATE__J_FROZEN:
                /* The lease cannot be trusted across a restart: thaw, abort only. */
                log_warn("txid=%s recovered FROZEN: thawing, the transaction can only abort", t->txid);
                txn_expire_lease(mg, t);
                break;
        case LOCKSTEP__JOURNAL_STATE__J_SNAPPING:
                /* Its reply was never sent, so no COMMIT can exist: discard. */
                log_warn("txid=%s recovered while snapshotting: thawing and discarding", t->txid);
                txn_undo_all(mg, t);
                for (size_t i = 0; i < t->n; i++) {
                        find_overlays(mg, t, &t->m[i]);
                        txn_discard_member(mg, t, &t->m[i]);
                }
                t->lease_expired = 1;
                finish_aborted(mg, t);
                break;
        case LOCKSTEP__JOURNAL_STATE__J_SNAPPED:
                txn_undo_all(mg, t);
                if (!t->decided)
                        log_info("txid=%s recovered SNAPPED: overlays pending, waiting for the decision", t->txid);
                break;
        default:
                txn_undo_all(mg, t);
                t->finished_mono = fsutil_mono_us();
                break;
        }
}

static void recover_one(void *arg, const Lockstep__JournalTxn *jt)
{
        struct recover_ctx *rc = arg;
        struct txn *t = txn_from_journal(jt);

        if (!t) {
                log_err("journal: txid=%s: cannot take the record back (out of memory or out of bounds)", jt->txid);
                rc->bad++;
                return;
        }
        if (t->revert)
                recover_revert(rc->mg, t);
        else
                recover_cut(rc->mg, t);
        /* Up to TXN_KEEP_MAX finished ones are read back: holding all their
         * members at once cost the agent ~140 KiB each after a restart. */
        txn_compact(t);
        pthread_mutex_lock(&rc->mg->lock);
        t->next = rc->mg->list;
        rc->mg->list = t;
        pthread_mutex_unlock(&rc->mg->lock);
}

static void recover_bad(void *arg, const char *path, const char *why)
{
        struct recover_ctx *rc = arg;

        rc->bad++;
        log_err("journal: \"%s\": %s; left in place for inspection", path, why);
}

int txn_mgr_recover(struct txn_mgr *mg, lserr *err)
{
        struct recover_ctx rc = {.mg = mg};
        int r = journal_load(mg->cfg->journal_dir, recover_one, recover_bad, &rc, err);

        /* What recovery left (a thaw to retry) is the lease thread's now. */
        txn_lease_kick(mg);
        return r;
}
