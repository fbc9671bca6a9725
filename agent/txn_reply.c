/* txn_reply: the Reply of a step, built from the transaction's members, stored
 * so that a resent command gets the very same answer. */
#include <assert.h>

#include "cleanup.h"
#include "txn_priv.h"

Lockstep__TxnState txn_wire_state(Lockstep__JournalState s)
{
        switch (s) {
        case LOCKSTEP__JOURNAL_STATE__J_FREEZING:
        case LOCKSTEP__JOURNAL_STATE__J_FROZEN:
                return LOCKSTEP__TXN_STATE__TXN_FROZEN;
        case LOCKSTEP__JOURNAL_STATE__J_SNAPPING:
        case LOCKSTEP__JOURNAL_STATE__J_SNAPPED:
                return LOCKSTEP__TXN_STATE__TXN_SNAPPED;
        case LOCKSTEP__JOURNAL_STATE__J_COMMITTED:
                return LOCKSTEP__TXN_STATE__TXN_COMMITTED;
        case LOCKSTEP__JOURNAL_STATE__J_ABORTED:
                return LOCKSTEP__TXN_STATE__TXN_ABORTED;
        case LOCKSTEP__JOURNAL_STATE__J_R_PREPARED:
        case LOCKSTEP__JOURNAL_STATE__J_R_STOPPED:
        case LOCKSTEP__JOURNAL_STATE__J_R_SWITCHING:
        case LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED:
        case LOCKSTEP__JOURNAL_STATE__J_R_STARTED:
                return LOCKSTEP__TXN_STATE__TXN_REVERTING;
        default:
                return LOCKSTEP__TXN_STATE__TXN_IDLE;
        }
}

/* Packs rep into a malloc'd buffer. */
static int pack(const Lockstep__Reply *rep, uint8_t **ret, size_t *ret_len)
{
        size_t n = lockstep__reply__get_packed_size(rep);

        *ret = malloc(n ? n : 1);
        if (!*ret)
                return -ENOMEM;
        lockstep__reply__pack(rep, *ret);
        *ret_len = n;
        return 0;
}

/* A member's result: its images, then (a branch delete) each file it removed
 * as an "after". di has room for all of them. Returns the entries used. */
static size_t member_result(const struct member *mb, Lockstep__MemberResult *mr, Lockstep__Timings *tm,
                            Lockstep__DiskImage *di, Lockstep__DiskImage **dip)
{
        size_t nd = 0;

        lockstep__member_result__init(mr);
        txn_map_timings(TXN_TO_WIRE, (struct member *)mb, tm);
        if (mb->thaw_done_mono && mb->freeze_start_mono)
                tm->frozen_for_us = (uint64_t)(mb->thaw_done_mono - mb->freeze_start_mono);
        mr->vm = (char *)mb->vm;
        mr->code = mb->code;
        mr->message = (char *)mb->msg;
        mr->timings = tm;
        mr->disks = dip;
        for (size_t k = 0; k < mb->n_imgs; k++, nd++) {
                txn_map_disk(TXN_TO_WIRE, (struct hv_image *)&mb->imgs[k], &di[nd]);
                dip[nd] = &di[nd];
        }
        for (size_t k = 0; k < mb->n_removed; k++, nd++) {
                lockstep__disk_image__init(&di[nd]);
                di[nd].disk = (char *)mb->removed[k].target;
                di[nd].after = (char *)mb->removed[k].path;
                dip[nd] = &di[nd];
        }
        mr->n_disks = nd;
        return nd;
}

int txn_pack_reply(const struct txn_mgr *mg, const struct txn *t, Lockstep__Step step, Lockstep__ErrorCode code,
                   const char *message, uint8_t **ret, size_t *ret_len)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        size_t n_disks = 1, nd = 0;

        for (size_t i = 0; i < t->n; i++)
                n_disks += t->m[i].n_imgs + t->m[i].n_removed;
        _cleanup_free_ Lockstep__MemberResult *mr = calloc(t->n ? t->n : 1, sizeof(*mr));
        _cleanup_free_ Lockstep__MemberResult **mrp = calloc(t->n ? t->n : 1, sizeof(*mrp));
        _cleanup_free_ Lockstep__Timings *tm = calloc(t->n ? t->n : 1, sizeof(*tm));
        _cleanup_free_ Lockstep__DiskImage *di = calloc(n_disks, sizeof(*di));
        _cleanup_free_ Lockstep__DiskImage **dip = calloc(n_disks, sizeof(*dip));

        if (!mr || !mrp || !tm || !di || !dip)
                return -ENOMEM;
        for (size_t i = 0; i < t->n; i++) {
                nd += member_result(&t->m[i], &mr[i], &tm[i], &di[nd], &dip[nd]);
                mrp[i] = &mr[i];
        }
        rep.txid = (char *)t->txid;
        rep.step = step;
        rep.code = code;
        rep.message = (char *)(message ? message : "");
        rep.state = txn_wire_state(t->state);
        rep.lease_max_ms = t->check ? mg->cfg->lease_max_s * 1000u : 0;
        rep.n_members = t->n;
        rep.members = mrp;
        return pack(&rep, ret, ret_len);
}

int txn_plain_reply(const char *txid, Lockstep__Step step, Lockstep__ErrorCode code, const char *message,
                    uint8_t **ret, size_t *ret_len)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;

        rep.txid = (char *)txid;
        rep.step = step;
        rep.code = code;
        rep.message = (char *)message;
        return pack(&rep, ret, ret_len);
}

int txn_finish_step(struct txn_mgr *mg, struct txn *t, Lockstep__Step step, uint32_t sub, Lockstep__ErrorCode code,
                    const char *message, uint8_t **ret, size_t *ret_len)
{
        struct stored *s;
        uint8_t *buf;
        size_t len;
        int r = txn_pack_reply(mg, t, step, code, message, &buf, &len);

        if (r < 0)
                return r;
        /* Each (step, tier) is stored once and tiers are at most 64 (the
         * envelope refuses more): a full table is a bug, not a peer's doing. */
        assert(t->n_replies < TXN_MAX_STORED);
        s = &t->replies[t->n_replies++];
        *s = (struct stored){.step = step, .sub = sub, .buf = buf, .len = len};
        txn_persist_or_log(mg, t);
        *ret = malloc(len ? len : 1);
        if (!*ret)
                return -ENOMEM;
        memcpy(*ret, buf, len);
        *ret_len = len;
        return 0;
}

const struct stored *txn_stored_reply(const struct txn *t, Lockstep__Step step, uint32_t sub)
{
        for (size_t i = 0; i < t->n_replies; i++)
                if (t->replies[i].step == step && t->replies[i].sub == sub)
                        return &t->replies[i];
        return NULL;
}
