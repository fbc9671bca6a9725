/* txn: the cut's state machine (FREEZE, SNAPSHOT, DECIDE; CHECK; DELETE) and
 * txn_step, which routes every command to its transaction's step. */
#include "txn.h"

#include <stdio.h>
#include <unistd.h>

#include "cleanup.h"
#include "envelope.h"
#include "fsutil.h"
#include "imgfile.h"
#include "log.h"
#include "txn_priv.h"

/* ---- FREEZE --------------------------------------------------------------- */

/* The group's hook is a name: its commands are this agent's own (agent.yaml,
 * per VM), so a name it does not know for the VM is refused before anything
 * is frozen. A crash-consistent member has no guest agent and runs none. */
static int validate_hook(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        if (!t->hook[0] || mb->crash)
                return 0;
        mb->hook = agent_hooks_find(mg->cfg->vms, mg->cfg->n_vms, mb->vm, t->hook);
        if (mb->hook)
                return 0;
        txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED,
                        "%s: unknown hook \"%s\": agent.yaml defines no hook of that name for this VM (vms[].hooks[])",
                        t->check ? "check" : "freeze", t->hook);
        return LS_EHOOK;
}

/* Runs one of mb's hook commands, if its hook has that one. */
static int run_hook(struct txn_mgr *mg, struct member *mb, char *const *argv, lserr *err)
{
        if (!mb->hook || !argv)
                return 0;
        return hv_guest_run(mg->hv, mb->vm, mb->hook->name, argv, mb->hook->timeout_s * 1000u, err);
}

/* A guest-ping beside the member's hv_check: both are waits on libvirtd (the
 * ping on the guest's agent, the check on its XML and the host's disks), and
 * in turn they were most of the time from FREEZE to the first freeze. */
struct ping {
        struct txn_mgr *mg;
        const char *vm;
        int r;
        long long us;
        lserr err;
};

static void ping_main(void *arg)
{
        struct ping *p = arg;
        long long t0 = fsutil_mono_us();

        p->r = hv_ga_ping(p->mg->hv, p->vm, (int)p->mg->cfg->guest_agent_timeout_s, &p->err);
        p->us = fsutil_mono_us() - t0;
}

static int validate_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        struct ping p = {.mg = mg, .vm = mb->vm};
        lserr err = {0};
        struct workers_task th;
        int r, pinging = 0;
        long long t0;

        r = validate_hook(mg, t, mb);
        if (r < 0)
                return r;

        mb->want_pause = mb->crash || t->mode != LOCKSTEP__MODE__MODE_QUIESCE;
        mb->want_freeze = !mb->crash && t->mode != LOCKSTEP__MODE__MODE_MEMORY;
        /* A thread that cannot start leaves the ping to after the check. */
        if (mb->want_freeze)
                pinging = workers_spawn(mg->workers, &th, ping_main, &p) == 0;
        /* Every file the cut will create is checked here, before any guest of
         * this agent is frozen: a cut that cannot succeed freezes nobody. */
        t0 = fsutil_mono_us();
        r = hv_check(mg->hv, mb->vm, t->txid,
                     (mb->want_freeze ? HV_CHECK_QUIESCE : 0u) |
                             (t->mode == LOCKSTEP__MODE__MODE_MEMORY ? HV_CHECK_MEMORY : 0u),
                     &err);
        mb->check_us = fsutil_mono_us() - t0;
        if (pinging)
                workers_join(&th);
        else if (mb->want_freeze && r == 0)
                ping_main(&p);
        mb->ping_us = p.us;
        /* The check's refusal says more than the ping's (a missing domain
         * fails both). */
        if (r < 0) {
                txn_member_fail(mg, mb, txn_wire_code(r), "%s", err.msg);
                return r;
        }
        if (!mb->want_freeze)
                return 0;
        if (p.r < 0 && t->mode == LOCKSTEP__MODE__MODE_PAUSE) {
                /* Pause mode freezes filesystems only where a guest agent answers. */
                mb->want_freeze = 0;
                return 0;
        }
        if (p.r < 0)
                txn_member_fail(mg, mb, txn_wire_code(p.r), "%s", p.err.msg);
        return p.r;
}

/* Freezes (fsfreeze) and/or pauses a member, as validate_member chose. */
static int hold_member(struct txn_mgr *mg, struct member *mb)
{
        lserr err = {0};
        int r;

        if (mb->want_freeze) {
                /* Marked before the call: a freeze that times out may still land. */
                mb->quiesced = 1;
                r = hv_freeze(mg->hv, mb->vm, &err);
                if (r < 0) {
                        txn_member_fail(mg, mb,
                                        r == LS_EGATIMEOUT ? LOCKSTEP__ERROR_CODE__E_GUEST_AGENT_TIMEOUT
                                                           : LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED,
                                        "%s", err.msg);
                        return r;
                }
        }
        if (mb->want_pause) {
                lserr_clear(&err);
                mb->paused = 1;
                r = hv_suspend(mg->hv, mb->vm, &err);
                if (r < 0) {
                        mb->paused = 0;
                        txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, "%s", err.msg);
                        return r;
                }
        }
        return 0;
}

static int freeze_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        int r;

        mb->freeze_start_mono = fsutil_mono_us();
        mb->frozen_at_us = fsutil_now_us();
        /* No guest is frozen unless the lease outlives this process. */
        if (mg->g && guardian_arm(mg->g, t->txid, mb->vm, t->lease_deadline_mono + TXN_TICK_US * 10, mb->want_freeze,
                                  mb->want_pause) < 0) {
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_INTERNAL,
                                "freeze: the lease guardian process is gone; refusing to freeze without it");
                return -EPIPE;
        }
        /* The group's pre-freeze hook (flush a database...): a failure is a no. */
        r = run_hook(mg, mb, mb->hook ? mb->hook->pre_freeze : NULL, &err);
        if (r < 0) {
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED, "pre-freeze: %s", err.msg);
                return r;
        }
        r = hold_member(mg, mb);
        if (r < 0)
                return r;
        mb->freeze_us = fsutil_mono_us() - mb->freeze_start_mono;
        mb->held = 1;
        /* Said in the result, so the report shows how each member was held. */
        if (mb->crash)
                snprintf(mb->msg, sizeof(mb->msg), "paused, not frozen (consistency: crash, no guest agent)");
        else if (mb->want_pause && mb->want_freeze)
                snprintf(mb->msg, sizeof(mb->msg), "frozen and paused");
        else if (mb->want_pause)
                snprintf(mb->msg, sizeof(mb->msg), "paused (no guest agent answered)");
        log_info("txid=%s step=FREEZE vm=%s %s dur_ms=%.1f", t->txid, mb->vm,
                 mb->want_freeze && mb->want_pause ? "frozen+paused" : mb->want_pause ? "paused" : "frozen",
                 (double)mb->freeze_us / 1000.0);
        return 0;
}

/* A FREEZE's transaction, not yet listed: members, hooks, mode. */
static struct txn *freeze_txn(struct txn_mgr *mg, const Lockstep__Command *cmd)
{
        const Lockstep__FreezeRequest *fr = cmd->freeze;
        _cleanup_txn_ struct txn *t = txn_new_members(cmd->txid, fr->members, fr->n_members);

        if (!t)
                return NULL;
        snprintf(t->snap, sizeof(t->snap), "%s", fr->snapshot);
        snprintf(t->cut, sizeof(t->cut), "%s", cmd->txid);
        t->mode = fr->mode;
        snprintf(t->hook, sizeof(t->hook), "%s", fr->hook);
        t->state = LOCKSTEP__JOURNAL_STATE__J_NONE;
        for (size_t i = 0; i < t->n; i++)
                for (size_t k = 0; k < i; k++)
                        if (!strcmp(t->m[k].vm, t->m[i].vm))
                                txn_member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                                "freeze: listed twice in one transaction");
        return TAKE_PTR(t);
}

/* What stood between the FREEZE and the first freeze, for an operator who
 * wonders where a window's first milliseconds went. */
static void log_validated(const struct txn *t, long long validate_us, long long journal_us)
{
        long long check = 0, ping = 0;

        for (size_t i = 0; i < t->n; i++) {
                check = t->m[i].check_us > check ? t->m[i].check_us : check;
                ping = t->m[i].ping_us > ping ? t->m[i].ping_us : ping;
        }
        log_info("txid=%s step=FREEZE validated %zu member(s) in %.1f ms (longest check %.1f ms, guest-ping %.1f ms), "
                 "journal %.1f ms",
                 t->txid, t->n, (double)validate_us / 1000.0, (double)check / 1000.0, (double)ping / 1000.0,
                 (double)journal_us / 1000.0);
}

/* Validates every member, journals the intent, then freezes tier by tier
 * (front tiers first, one tier's members in parallel), or only tier `only`
 * (>= 0: a FREEZE by tier, the others come in FREEZEs of their own). 0 when
 * every member asked for is held; the why of a refusal that is no member's
 * goes into message. */
static int freeze_members(struct txn_mgr *mg, struct txn *t, unsigned lease_ms, int only, char *message, size_t n)
{
        int failed = txn_any_failed(t);
        long long t0 = fsutil_mono_us(), t1;

        /* Validation binds no tier order: every member at once, so a host's
         * tiered members are not checked one after another before the first
         * freeze. */
        if (!failed)
                txn_run_all(mg, t, validate_member);
        if (failed || txn_any_failed(t))
                return -1;
        t1 = fsutil_mono_us();
        t->lease_deadline_mono = t1 + (long long)lease_ms * 1000;
        t->lease_deadline_unix = fsutil_now_us() + (long long)lease_ms * 1000;
        t->state = LOCKSTEP__JOURNAL_STATE__J_FREEZING;
        if (txn_persist_or_log(mg, t) < 0) {
                snprintf(message, n, "%s: freeze: journal cannot be written; nothing frozen", mg->cfg->id);
                return -1;
        }
        log_validated(t, t1 - t0, fsutil_mono_us() - t1);
        for (unsigned tier = 0; tier <= txn_max_tier(t); tier++) {
                if (only >= 0 && tier != (unsigned)only)
                        continue;
                txn_run_tier_wide(mg, t, tier, freeze_member);
                if (txn_any_failed(t))
                        return -1;
        }
        return 0;
}

/* A FREEZE that voted no or could not go on: what it froze is undone. */
static void freeze_abort(struct txn_mgr *mg, struct txn *t, char *message, size_t n, const char *why)
{
        txn_undo_all(mg, t);
        t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
        t->finished_mono = fsutil_mono_us();
        if (!message[0])
                snprintf(message, n, "%s: freeze: %s", mg->cfg->id, why);
        log_warn("txid=%s step=FREEZE %s", t->txid, why);
}

/* A FREEZE by tier after the first one of its transaction: the members of
 * that tier only, while the front tiers stay frozen. Validation, the lease
 * and the journal's list of members came with the first. */
static int do_freeze_tier(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                          size_t *ret_len)
{
        const unsigned tier = cmd->freeze->tier;
        char message[TXN_MSG_MAX] = "";
        Lockstep__ErrorCode code = LOCKSTEP__ERROR_CODE__OK;

        if (!cmd->freeze->by_tier || t->revert || t->state != LOCKSTEP__JOURNAL_STATE__J_FROZEN) {
                snprintf(message, sizeof(message), "%s: freeze: tier %u: transaction %s is not frozen by tier",
                         mg->cfg->id, tier, t->txid);
                return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret, ret_len);
        }
        if (t->lease_expired || fsutil_mono_us() >= t->lease_deadline_mono) {
                txn_expire_lease(mg, t);
                snprintf(message, sizeof(message),
                         "%s: freeze: tier %u: lease expired: members were thawed, the cut can only abort",
                         mg->cfg->id, tier);
                return txn_finish_step(mg, t, cmd->step, tier, LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED, message, ret,
                                       ret_len);
        }
        /* The journal says every member may be frozen while this tier freezes:
         * a crash in between leaves a restart that thaws them all. */
        t->state = LOCKSTEP__JOURNAL_STATE__J_FREEZING;
        if (txn_persist_or_log(mg, t) < 0) {
                snprintf(message, sizeof(message), "%s: freeze: tier %u: journal cannot be written; thawed",
                         mg->cfg->id, tier);
                freeze_abort(mg, t, message, sizeof(message), "journal cannot be written");
                return txn_finish_step(mg, t, cmd->step, tier, LOCKSTEP__ERROR_CODE__E_INTERNAL, message, ret,
                                       ret_len);
        }
        txn_run_tier_wide(mg, t, tier, freeze_member);
        if (txn_any_failed(t)) {
                snprintf(message, sizeof(message), "%s: freeze: tier %u: voted no", mg->cfg->id, tier);
                freeze_abort(mg, t, message, sizeof(message), "voted no");
                code = LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED;
        } else {
                t->state = LOCKSTEP__JOURNAL_STATE__J_FROZEN;
                log_info("txid=%s step=FREEZE tier=%u voted yes", t->txid, tier);
        }
        return txn_finish_step(mg, t, cmd->step, tier, code, message, ret, ret_len);
}

/* Fields 5 and 6 of FreezeRequest were hook command text, from a coordinator
 * older than this agent: ignoring them would cut without the hooks the
 * operator asked for. */
static int old_hook_text(const Lockstep__FreezeRequest *fr)
{
        for (unsigned i = 0; i < fr->base.n_unknown_fields; i++)
                if (fr->base.unknown_fields[i].tag == 5 || fr->base.unknown_fields[i].tag == 6)
                        return 1;
        return 0;
}

static int do_freeze(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        unsigned lease_ms = cmd->freeze->lease_ms;
        char message[TXN_MSG_MAX] = "";
        _cleanup_txn_ struct txn *t = NULL;
        int failed, r;

        if (lease_ms > mg->cfg->lease_max_s * 1000u)
                lease_ms = mg->cfg->lease_max_s * 1000u;
        if (cmd->freeze->n_members == 0)
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                       "freeze: no members given", ret, ret_len);
        if (old_hook_text(cmd->freeze))
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED,
                                       "freeze: the command carries hook command text, from a lockstepd older than "
                                       "this agent; hooks are named in agent.yaml now: upgrade lockstepd",
                                       ret, ret_len);
        t = freeze_txn(mg, cmd);
        if (!t)
                return -ENOMEM;
        /* Take the members or refuse: a member in another open transaction. */
        failed = txn_enlist(mg, t, LOCKSTEP__JOURNAL_STATE__J_FREEZING, "freeze");
        if (failed < 0)
                /* Raced with a resend of the same FREEZE: the caller retries and
                 * gets the stored reply. */
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BUSY,
                                       "freeze: this transaction is being prepared; resend", ret, ret_len);
        struct txn *listed = TAKE_PTR(t); /* the manager's now */
        const int only = cmd->freeze->by_tier ? (int)cmd->freeze->tier : -1;
        failed = failed || freeze_members(mg, listed, lease_ms, only, message, sizeof(message)) < 0;
        if (failed) {
                /* A partial freeze is undone before voting no. */
                freeze_abort(mg, listed, message, sizeof(message), "voted no");
        } else {
                listed->state = LOCKSTEP__JOURNAL_STATE__J_FROZEN;
                log_info("txid=%s step=FREEZE voted yes members=%zu lease_ms=%u%s", listed->txid, listed->n, lease_ms,
                         only >= 0 ? " (first tier)" : "");
        }
        r = txn_finish_step(mg, listed, cmd->step, only >= 0 ? (uint32_t)only : 0,
                            failed ? LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED : LOCKSTEP__ERROR_CODE__OK, message, ret,
                            ret_len);
        pthread_mutex_unlock(&listed->lock);
        return r;
}

/* ---- CHECK ---------------------------------------------------------------- */

/* FREEZE's validation of every member, and nothing else: no member is taken,
 * frozen or journaled, and nothing is remembered of the check. A member that
 * an open transaction holds is reported busy, as FREEZE would find it. */
static int do_check(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const Lockstep__CheckRequest *cr = cmd->check;
        char message[TXN_MSG_MAX] = "";
        Lockstep__ErrorCode code;
        _cleanup_txn_ struct txn *t = NULL;
        int r;

        if (cr->n_members == 0)
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                       "check: no members given", ret, ret_len);
        t = txn_new_members(cmd->txid, cr->members, cr->n_members);
        if (!t)
                return -ENOMEM;
        t->check = 1;
        t->mode = cr->mode;
        snprintf(t->hook, sizeof(t->hook), "%s", cr->hook);
        snprintf(t->cut, sizeof(t->cut), "%s", cmd->txid);
        _cleanup_free_ char(*thawing_after)[LS_NAME_MAX + 1] = calloc(t->n, sizeof(*thawing_after));
        if (!thawing_after)
                return -ENOMEM;
        pthread_mutex_lock(&mg->lock);
        for (size_t i = 0; i < t->n; i++) {
                int thawing = 0;
                struct txn *h = txn_holder(mg, t->m[i].vm, &thawing);
                if (h && thawing)
                        snprintf(thawing_after[i], sizeof(thawing_after[i]), "%s", h->txid);
                else if (h)
                        txn_member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BUSY,
                                        "check: held by transaction %s; a cut now would be refused", h->txid);
        }
        pthread_mutex_unlock(&mg->lock);
        txn_run_all(mg, t, validate_member);
        /* After validation: why the thaw keeps failing (a paused domain, a full
         * disk) says more than that it does. */
        for (size_t i = 0; i < t->n; i++)
                if (thawing_after[i][0])
                        txn_member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BUSY,
                                        "check: its thaw after transaction %s failed and is being retried; a cut "
                                        "now would be refused",
                                        thawing_after[i]);
        /* FREEZE would quietly shorten a longer lease: the operator should know
         * first, on every member it would hold. */
        for (size_t i = 0; cr->lease_ms > mg->cfg->lease_max_s * 1000u && i < t->n; i++)
                txn_member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                "check: lease of %u s is above this agent's lease_max_s %u: a cut would be held at "
                                "most %u s",
                                cr->lease_ms / 1000, mg->cfg->lease_max_s, mg->cfg->lease_max_s);
        code = txn_first_code(t);
        if (code != LOCKSTEP__ERROR_CODE__OK)
                snprintf(message, sizeof(message), "%s: check: a cut would be refused", mg->cfg->id);
        r = txn_pack_reply(mg, t, cmd->step, code, message, ret, ret_len);
        log_info("txid=%s step=CHECK members=%zu %s", t->txid, t->n,
                 code == LOCKSTEP__ERROR_CODE__OK ? "ok" : "would refuse");
        return r;
}

/* ---- SNAPSHOT ------------------------------------------------------------- */

static int snapshot_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        long long t0;
        int r;

        /* A late snapshot would break the cut: never take one after the lease. */
        if (fsutil_mono_us() >= t->lease_deadline_mono) {
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED, "snapshot: lease expired before it");
                return LS_ETIMEDOUT;
        }
        t0 = fsutil_mono_us();
        r = hv_snapshot(mg->hv, mb->vm, t->txid, t->mode == LOCKSTEP__MODE__MODE_MEMORY, mb->imgs, &mb->n_imgs, &err);
        mb->snapshot_us = fsutil_mono_us() - t0;
        if (r < 0)
                txn_member_fail(mg, mb,
                                r == LS_ENOSPACE || r == -ENOSPC ? LOCKSTEP__ERROR_CODE__E_NO_SPACE
                                                                 : LOCKSTEP__ERROR_CODE__E_SNAPSHOT_FAILED,
                                "%s", err.msg);
        /* Thaw at once: a member is frozen only until its own snapshot. */
        txn_undo_member(mg, t, mb, r == 0);
        if (mb->hook && !mb->quiesced && !mb->paused) {
                lserr hook_err = {0};
                /* After the thaw: a failure is reported, the cut stands. */
                if (run_hook(mg, mb, mb->hook->post_thaw, &hook_err) < 0) {
                        log_warn("txid=%s vm=%s post-thaw hook failed: %s", t->txid, mb->vm, hook_err.msg);
                        snprintf(mb->msg, sizeof(mb->msg), "post-thaw hook failed: %.400s", hook_err.msg);
                }
        }
        /* A member still frozen (its thaw is being retried) has no frozen time yet. */
        if (mb->quiesced || mb->paused)
                log_info("txid=%s step=SNAPSHOT vm=%s %s snap_ms=%.1f, still frozen: its thaw is retried", t->txid,
                         mb->vm, mb->code == LOCKSTEP__ERROR_CODE__OK ? "ok" : "failed",
                         (double)mb->snapshot_us / 1000.0);
        else
                log_info("txid=%s step=SNAPSHOT vm=%s %s snap_ms=%.1f thaw_ms=%.1f frozen_ms=%.1f", t->txid, mb->vm,
                         mb->code == LOCKSTEP__ERROR_CODE__OK ? "ok" : "failed", (double)mb->snapshot_us / 1000.0,
                         (double)mb->thaw_us / 1000.0, (double)(mb->thaw_done_mono - mb->freeze_start_mono) / 1000.0);
        return r;
}

/* SNAPSHOT of a transaction that is not FROZEN within its lease. */
static int snapshot_refused(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                            size_t *ret_len)
{
        char message[TXN_MSG_MAX];
        int expired = t->lease_expired || t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN;

        if (t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN)
                txn_expire_lease(mg, t);
        if (expired)
                snprintf(message, sizeof(message),
                         "%s: snapshot: lease expired: members were thawed, the cut can only abort", mg->cfg->id);
        else
                snprintf(message, sizeof(message), "%s: snapshot: refused: the transaction is not frozen",
                         mg->cfg->id);
        return txn_finish_step(mg, t, cmd->step, 0,
                               expired ? LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED : LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                               message, ret, ret_len);
}

static int do_snapshot(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                       size_t *ret_len)
{
        char message[TXN_MSG_MAX] = "";
        int failed;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_FROZEN || t->lease_expired ||
            fsutil_mono_us() >= t->lease_deadline_mono)
                return snapshot_refused(mg, t, cmd, ret, ret_len);
        /* A cut by tier whose FREEZE of some tier never came: a snapshot of a
         * running guest is no part of a consistent cut. */
        for (size_t i = 0; i < t->n; i++) {
                if (t->m[i].held)
                        continue;
                snprintf(message, sizeof(message),
                         "%s: snapshot: refused: member %s (tier %u) was never frozen (no FREEZE of its tier); thawed",
                         mg->cfg->id, t->m[i].vm, t->m[i].tier);
                freeze_abort(mg, t, message, sizeof(message), "snapshot refused: a tier was never frozen");
                return txn_finish_step(mg, t, cmd->step, 0, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret, ret_len);
        }
        t->state = LOCKSTEP__JOURNAL_STATE__J_SNAPPING;
        if (txn_persist_or_log(mg, t) < 0) {
                txn_undo_all(mg, t);
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                t->finished_mono = fsutil_mono_us();
                snprintf(message, sizeof(message), "%s: snapshot: journal cannot be written; thawed", mg->cfg->id);
                return txn_finish_step(mg, t, cmd->step, 0, LOCKSTEP__ERROR_CODE__E_INTERNAL, message, ret, ret_len);
        }
        /* Back tiers first; a tier's members at once (parallel_per_host), each
         * thawed right after its own snapshot, not after the others'. */
        for (unsigned tier = txn_max_tier(t) + 1; tier-- > 0;)
                txn_run_tier(mg, t, tier, snapshot_member);
        failed = txn_any_failed(t);
        txn_undo_all(mg, t); /* anything a failure left frozen */
        t->state = LOCKSTEP__JOURNAL_STATE__J_SNAPPED;
        if (failed)
                snprintf(message, sizeof(message), "%s: snapshot: failed for at least one member", mg->cfg->id);
        return txn_finish_step(mg, t, cmd->step, 0,
                               failed ? LOCKSTEP__ERROR_CODE__E_SNAPSHOT_FAILED : LOCKSTEP__ERROR_CODE__OK, message,
                               ret, ret_len);
}

/* ---- DECIDE --------------------------------------------------------------- */

static int do_decide(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                     size_t *ret_len)
{
        char message[TXN_MSG_MAX] = "";
        int failed = 0;

        if (cmd->decide->decision == LOCKSTEP__DECISION__DECISION_COMMIT) {
                if (t->state != LOCKSTEP__JOURNAL_STATE__J_SNAPPED || txn_any_failed(t)) {
                        snprintf(message, sizeof(message),
                                 "%s: decide: cannot commit transaction %s: it is not fully snapshotted", mg->cfg->id,
                                 t->txid);
                        return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret,
                                               ret_len);
                }
                t->decided = 1;
                t->state = LOCKSTEP__JOURNAL_STATE__J_COMMITTED;
                log_info("txid=%s step=DECIDE committed", t->txid);
        } else {
                txn_undo_all(mg, t);
                txn_discard_all(mg, t);
                for (size_t i = 0; i < t->n; i++)
                        failed |= t->m[i].n_imgs != 0; /* an overlay left: its discard failed */
                if (failed) {
                        /* Not stored: a resent ABORT must try again. */
                        txn_persist_or_log(mg, t);
                        snprintf(message, sizeof(message), "%s: decide: abort could not discard every overlay",
                                 mg->cfg->id);
                        return txn_pack_reply(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__E_DISCARD_FAILED, message, ret,
                                              ret_len);
                }
                t->decided = 1;
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                log_info("txid=%s step=DECIDE aborted", t->txid);
        }
        t->finished_mono = fsutil_mono_us();
        return txn_finish_step(mg, t, cmd->step, 0, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
}

/* ---- DELETE ------------------------------------------------------------- */

/* The catalog's image of each of vm's disks, as hints for the backend, which
 * uses one only when it names a file of that disk's chain. Anything that is
 * not a plain absolute path is left out. */
static size_t delete_hints(const Lockstep__DeleteRequest *dr, const char *vm, struct hv_image *ret)
{
        size_t n = 0;

        for (size_t i = 0; i < dr->n_images; i++) {
                const Lockstep__MemberDisks *md = dr->images[i];
                if (!md->vm || strcmp(md->vm, vm))
                        continue;
                for (size_t k = 0; k < md->n_disks && n < HV_MAX_DISKS; k++) {
                        const Lockstep__DiskImage *di = md->disks[k];
                        if (!di->disk || !di->before || di->before[0] != '/' || strlen(di->before) >= HV_PATH_MAX ||
                            strlen(di->disk) >= HV_TARGET_MAX || strpbrk(di->before, "\n\r"))
                                continue;
                        memset(&ret[n], 0, sizeof(ret[n]));
                        snprintf(ret[n].target, HV_TARGET_MAX, "%s", di->disk);
                        snprintf(ret[n].before, HV_PATH_MAX, "%s", di->before);
                        n++;
                }
        }
        return n;
}

/* Deletes revert t->cut's pre-revert branch of one member. */
static int delete_branch_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        long long t0 = fsutil_mono_us();
        int r = txn_drop_branch(mg, t, mb, &err);

        mb->snapshot_us = fsutil_mono_us() - t0;
        if (r < 0)
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_DELETE_FAILED, "%s", err.msg);
        log_info("txid=%s step=DELETE vm=%s branch of %s %s removed=%zu dur_ms=%.1f", t->txid, mb->vm, t->cut,
                 r < 0 ? "failed" : "ok", mb->n_removed, (double)mb->snapshot_us / 1000.0);
        return r;
}

/* Merges cut t->cut's overlays of one member into their backing images. */
static int delete_cut_member(struct txn_mgr *mg, struct txn *t, const Lockstep__DeleteRequest *dr,
                             struct member *mb)
{
        lserr err = {0};
        long long t0 = fsutil_mono_us();
        struct hv_image hint_imgs[HV_MAX_DISKS];
        struct hv_delete_hints hints = {.images = hint_imgs,
                                        .n_images = delete_hints(dr, mb->vm, hint_imgs),
                                        .reverts = (const char *const *)dr->reverts,
                                        .n_reverts = dr->n_reverts};
        /* The reply lists each layer removed and the image it went into. */
        int r = hv_delete_cut(mg->hv, mb->vm, t->cut, t->snap, &hints, mb->imgs, &mb->n_imgs, &err);

        mb->snapshot_us = fsutil_mono_us() - t0;
        /* A memory-mode cut's saved state goes with it, under either scheme's name. */
        if (r == 0 && mb->n_imgs) {
                char mem[HV_PATH_MAX];
                if (imgfile_memory(mb->imgs[0].before, mb->vm, t->cut, mem, sizeof(mem)) == 0)
                        unlink(mem);
                if (imgfile_legacy(mb->imgs[0].before, t->snap, "mem", mem, sizeof(mem)) == 0)
                        unlink(mem);
        }
        if (r < 0)
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_DELETE_FAILED, "%s", err.msg);
        log_info("txid=%s step=DELETE vm=%s cut=%s %s merged=%zu dur_ms=%.1f", t->txid, mb->vm, t->cut,
                 r < 0 ? "failed" : "ok", mb->n_imgs, (double)mb->snapshot_us / 1000.0);
        return r;
}

/* Merges a committed cut's overlays into their backing images, or removes a
 * revert's pre-revert branch, member by member. Each member's chain stays
 * valid at every step and a resent or repeated DELETE finishes what a failure
 * left, so nothing is journaled but the reply. Members are held while it runs. */
static int do_delete(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const Lockstep__DeleteRequest *dr = cmd->delete_;
        char message[TXN_MSG_MAX] = "";
        _cleanup_txn_ struct txn *t = NULL;
        int failed, r;

        if (dr->n_members == 0)
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                       "delete: no members given", ret, ret_len);
        t = txn_new_members(cmd->txid, dr->members, dr->n_members);
        if (!t)
                return -ENOMEM;
        snprintf(t->snap, sizeof(t->snap), "%s", dr->snapshot);
        snprintf(t->cut, sizeof(t->cut), "%s", dr->cut_txid);
        t->branch = dr->branch;
        failed = txn_enlist(mg, t, LOCKSTEP__JOURNAL_STATE__J_DELETING, "delete");
        if (failed < 0)
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BUSY,
                                       "delete: this transaction is in progress; resend", ret, ret_len);
        struct txn *listed = TAKE_PTR(t); /* the manager's now */
        for (size_t i = 0; !failed && i < listed->n; i++)
                failed = (listed->branch ? delete_branch_member(mg, listed, &listed->m[i])
                                         : delete_cut_member(mg, listed, dr, &listed->m[i])) < 0;
        listed->decided = 1;
        listed->state = failed ? LOCKSTEP__JOURNAL_STATE__J_ABORTED : LOCKSTEP__JOURNAL_STATE__J_COMMITTED;
        listed->finished_mono = fsutil_mono_us();
        if (failed)
                snprintf(message, sizeof(message),
                         "%s: delete of cut %s did not finish; every chain is valid, deleting again finishes it",
                         mg->cfg->id, listed->cut);
        r = txn_finish_step(mg, listed, cmd->step, 0,
                            failed ? LOCKSTEP__ERROR_CODE__E_DELETE_FAILED : LOCKSTEP__ERROR_CODE__OK, message, ret,
                            ret_len);
        pthread_mutex_unlock(&listed->lock);
        return r;
}

/* ---- entry point ---------------------------------------------------------- */

/* A command for a transaction this agent does not have: the steps that start
 * one, a presumed abort, or a refusal. */
static int step_new(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        char message[TXN_MSG_MAX];

        switch (cmd->step) {
        case LOCKSTEP__STEP__STEP_FREEZE:
                return do_freeze(mg, cmd, ret, ret_len);
        case LOCKSTEP__STEP__STEP_CHECK:
                return do_check(mg, cmd, ret, ret_len);
        case LOCKSTEP__STEP__STEP_DELETE:
                return do_delete(mg, cmd, ret, ret_len);
        case LOCKSTEP__STEP__STEP_REVERT_PREPARE:
                return txn_revert_prepare(mg, cmd, ret, ret_len);
        default:
                break;
        }
        if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_DECIDE &&
            cmd->revert_decide->decision == LOCKSTEP__DECISION__DECISION_ABORT) {
                snprintf(message, sizeof(message), "%s: revert: unknown transaction, nothing to undo", mg->cfg->id);
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
        }
        if (cmd->step == LOCKSTEP__STEP__STEP_DECIDE && cmd->decide->decision == LOCKSTEP__DECISION__DECISION_ABORT) {
                /* Presumed abort: nothing of it ever happened here. */
                snprintf(message, sizeof(message), "%s: decide: unknown transaction, nothing to undo", mg->cfg->id);
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
        }
        snprintf(message, sizeof(message), "%s: %s: unknown transaction \"%s\"", mg->cfg->id, env_step_name(cmd->step),
                 cmd->txid);
        return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_UNKNOWN_TXN, message, ret, ret_len);
}

/* The tier a revert STOP/START or a FREEZE by tier acts on: it keys the
 * stored reply. */
static uint32_t step_sub(const Lockstep__Command *cmd)
{
        if (cmd->step == LOCKSTEP__STEP__STEP_FREEZE)
                return cmd->freeze->by_tier ? cmd->freeze->tier : 0;
        if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_STOP)
                return cmd->revert_stop->tier;
        if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_START)
                return cmd->revert_start->tier;
        return 0;
}

/* Whether cmd is a DECIDE the other way than t was decided (a stored reply
 * must never pretend it went the asked way). */
static int decided_otherwise(const struct txn *t, const Lockstep__Command *cmd)
{
        Lockstep__Decision d;

        if (cmd->step == LOCKSTEP__STEP__STEP_DECIDE)
                d = cmd->decide->decision;
        else if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_DECIDE)
                d = cmd->revert_decide->decision;
        else
                return 0;
        return (d == LOCKSTEP__DECISION__DECISION_COMMIT) != (t->state == LOCKSTEP__JOURNAL_STATE__J_COMMITTED);
}

static int is_revert_step(Lockstep__Step s)
{
        return s == LOCKSTEP__STEP__STEP_REVERT_STOP || s == LOCKSTEP__STEP__STEP_REVERT_SWITCH ||
               s == LOCKSTEP__STEP__STEP_REVERT_START || s == LOCKSTEP__STEP__STEP_REVERT_DECIDE;
}

/* A command for open transaction t (t->lock held). */
static int step_open(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                     size_t *ret_len)
{
        const struct stored *s = txn_stored_reply(t, cmd->step, step_sub(cmd));
        char message[TXN_MSG_MAX];

        if (s && decided_otherwise(t, cmd)) {
                snprintf(message, sizeof(message), "%s: decide: transaction %s was already %s", mg->cfg->id, t->txid,
                         t->state == LOCKSTEP__JOURNAL_STATE__J_COMMITTED ? "committed" : "aborted");
                return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret, ret_len);
        }
        if (s) {
                *ret = malloc(s->len ? s->len : 1);
                if (!*ret)
                        return -ENOMEM;
                memcpy(*ret, s->buf, s->len);
                *ret_len = s->len;
                log_info("txid=%s step=%s resent: same reply", t->txid, env_step_name(cmd->step));
                return 0;
        }
        if (t->revert && is_revert_step(cmd->step))
                return txn_revert_step(mg, t, cmd, ret, ret_len);
        if (cmd->step == LOCKSTEP__STEP__STEP_FREEZE)
                return do_freeze_tier(mg, t, cmd, ret, ret_len);
        if (!t->revert && cmd->step == LOCKSTEP__STEP__STEP_SNAPSHOT)
                return do_snapshot(mg, t, cmd, ret, ret_len);
        if (!t->revert && cmd->step == LOCKSTEP__STEP__STEP_DECIDE)
                return do_decide(mg, t, cmd, ret, ret_len);
        snprintf(message, sizeof(message), "%s: %s: not allowed for transaction %s in its state", mg->cfg->id,
                 env_step_name(cmd->step), t->txid);
        return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret, ret_len);
}

int txn_step(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        struct txn *t;
        int r;

        pthread_mutex_lock(&mg->lock);
        t = txn_find(mg, cmd->txid);
        pthread_mutex_unlock(&mg->lock);
        if (!t)
                r = step_new(mg, cmd, ret, ret_len);
        else {
                /* Lists are only ever prepended and pruned by the reaper under
                 * both locks, so t stays valid while we wait for its lock. */
                pthread_mutex_lock(&t->lock);
                r = step_open(mg, t, cmd, ret, ret_len);
                pthread_mutex_unlock(&t->lock);
        }
        /* A lease to watch, a thaw to retry, members to free: the lease
         * thread, idle until now, looks again. */
        txn_lease_kick(mg);
        return r;
}
