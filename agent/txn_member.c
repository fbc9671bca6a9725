/* txn_member: what every step does to a member: its result and message, thaw
 * and resume, discard, and a tier's members run through the pool. */
#include <stdarg.h>
#include <stdio.h>

#include "fsutil.h"
#include "log.h"
#include "txn_priv.h"

Lockstep__ErrorCode txn_wire_code(int r)
{
        switch (r) {
        case 0: return LOCKSTEP__ERROR_CODE__OK;
        case LS_ENODOMAIN: return LOCKSTEP__ERROR_CODE__E_NO_DOMAIN;
        case LS_ENOTRUNNING: return LOCKSTEP__ERROR_CODE__E_NOT_RUNNING;
        case LS_EPAUSED: return LOCKSTEP__ERROR_CODE__E_PAUSED;
        case LS_ENOGA: return LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT;
        case LS_EGATIMEOUT: return LOCKSTEP__ERROR_CODE__E_GUEST_AGENT_TIMEOUT;
        case LS_EDISK: return LOCKSTEP__ERROR_CODE__E_DISK_UNSUPPORTED;
        case LS_EOVERLAYEXISTS: return LOCKSTEP__ERROR_CODE__E_OVERLAY_EXISTS;
        case LS_ENOSPACE: case -ENOSPC: return LOCKSTEP__ERROR_CODE__E_NO_SPACE;
        case LS_ETHAWEDEARLY: return LOCKSTEP__ERROR_CODE__E_THAWED_EARLY;
        case LS_EHOOK: return LOCKSTEP__ERROR_CODE__E_HOOK_FAILED;
        case LS_EIMAGE: return LOCKSTEP__ERROR_CODE__E_IMAGE_MISSING;
        case LS_ECORRUPT: return LOCKSTEP__ERROR_CODE__E_IMAGE_CORRUPT;
        default: return LOCKSTEP__ERROR_CODE__E_INTERNAL;
        }
}

void txn_member_fail(const struct txn_mgr *mg, struct member *mb, Lockstep__ErrorCode code, const char *fmt, ...)
{
        char text[TXN_MSG_MAX - 2 * LS_NAME_MAX - 8]; /* room for the "<vm>@<host>: " prefix */
        va_list ap;

        if (mb->code != LOCKSTEP__ERROR_CODE__OK)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        mb->code = code;
        snprintf(mb->msg, sizeof(mb->msg), "%s@%s: %s", mb->vm, mg->cfg->id, text);
}

void txn_member_note(struct member *mb, const char *fmt, ...)
{
        va_list ap;

        if (mb->code != LOCKSTEP__ERROR_CODE__OK)
                return;
        va_start(ap, fmt);
        vsnprintf(mb->msg, sizeof(mb->msg), fmt, ap);
        va_end(ap);
}

Lockstep__ErrorCode txn_first_code(const struct txn *t)
{
        for (size_t i = 0; i < t->n; i++)
                if (t->m[i].code != LOCKSTEP__ERROR_CODE__OK)
                        return t->m[i].code;
        return LOCKSTEP__ERROR_CODE__OK;
}

int txn_any_failed(const struct txn *t)
{
        return txn_first_code(t) != LOCKSTEP__ERROR_CODE__OK;
}

/* A domain that is shut off holds no frozen filesystem and no paused vCPU
 * of ours any more: its QEMU went, and that state with it. (libvirt says "not
 * running" of a paused domain too, which still needs its thaw.) */
static int gone_off(struct txn_mgr *mg, const char *vm)
{
        struct hv_domain d;
        lserr err = {0};

        return hv_lookup(mg->hv, vm, &d, &err) == 0 && d.state == HV_SHUTOFF;
}

/* Thaws (thaw) or resumes a member; 0 when nothing of ours is left of it. */
static int undo_one(struct txn_mgr *mg, struct txn *t, struct member *mb, int thaw, int report_early)
{
        lserr err = {0};
        int r = thaw ? hv_thaw(mg->hv, mb->vm, &err) : hv_resume(mg->hv, mb->vm, &err);

        /* In a cut's own thaw (report_early) a domain that went is the
         * member's failure: the cut must not commit without it. */
        if (r == LS_ENOTRUNNING && !report_early && gone_off(mg, mb->vm)) {
                log_warn("txid=%s vm=%s shut off while %s: nothing left to undo", t->txid, mb->vm,
                         thaw ? "frozen" : "paused");
                r = LS_ENODOMAIN;
        }
        if (r < 0 && r != LS_ENODOMAIN) {
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_THAW_FAILED, "%s", err.msg);
                if (thaw)
                        log_err("txid=%s vm=%s thaw failed, will retry: %s", t->txid, mb->vm, err.msg);
                else
                        log_err("txid=%s vm=%s resume failed, will retry: %s", t->txid, mb->vm, err.msg);
                return r;
        }
        if (!thaw) {
                mb->paused = 0;
                return 0;
        }
        mb->quiesced = 0;
        /* A guest that thawed on its own before its snapshot makes that
         * snapshot untrusted. */
        if (r == 0 && report_early)
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_THAWED_EARLY,
                                "thaw: filesystems were no longer frozen: the guest thawed on its own before the "
                                "snapshot");
        return 0;
}

int txn_undo_member(struct txn_mgr *mg, struct txn *t, struct member *mb, int report_early)
{
        long long t0 = fsutil_mono_us();
        int r, rc = 0;

        if (mb->paused)
                rc = undo_one(mg, t, mb, 0, 0);
        if (mb->quiesced) {
                r = undo_one(mg, t, mb, 1, report_early);
                rc = rc ? rc : r;
        }
        if (rc == 0) {
                mb->thaw_us = fsutil_mono_us() - t0;
                mb->thaw_done_mono = fsutil_mono_us();
                mb->thawed_at_us = fsutil_now_us();
                if (mg->g)
                        guardian_disarm(mg->g, t->txid, mb->vm);
        }
        return rc;
}

static int held(const struct member *mb, unsigned unused)
{
        (void)unused;
        return mb->quiesced || mb->paused;
}

static int undo_held(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        return txn_undo_member(mg, t, mb, 0);
}

void txn_undo_all(struct txn_mgr *mg, struct txn *t)
{
        /* Every member at once, whatever parallel_per_host: an undo makes no
         * cut, so no order to keep; thaws and resumes are guest-agent and
         * monitor calls, and the sooner each guest runs again the better. */
        txn_pool_run(mg, t, held, 0, 1, TXN_POOL_WIDE, undo_held);
}

int txn_discard_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        int r;

        if (mb->n_imgs == 0)
                return 0;
        r = hv_discard(mg->hv, mb->vm, t->txid, mb->imgs, mb->n_imgs, &err);
        if (r < 0) {
                log_err("txid=%s vm=%s discard failed: %s", t->txid, mb->vm, err.msg);
                /* This failure is the one to report, whatever came before it. */
                mb->code = LOCKSTEP__ERROR_CODE__OK;
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_DISCARD_FAILED, "%s", err.msg);
                return r;
        }
        log_info("txid=%s step=DECIDE vm=%s discarded %zu overlay(s)", t->txid, mb->vm, mb->n_imgs);
        mb->n_imgs = 0;
        return 0;
}

static int has_overlays(const struct member *mb, unsigned unused)
{
        (void)unused;
        return mb->n_imgs != 0;
}

void txn_discard_all(struct txn_mgr *mg, struct txn *t)
{
        txn_pool_run(mg, t, has_overlays, 0, 0, 0, txn_discard_member);
}

static int in_tier(const struct member *mb, unsigned tier)
{
        return mb->tier == tier;
}

void txn_run_tier(struct txn_mgr *mg, struct txn *t, unsigned tier, txn_member_fn fn)
{
        txn_pool_run(mg, t, in_tier, tier, 0, 0, fn);
}

void txn_run_tier_wide(struct txn_mgr *mg, struct txn *t, unsigned tier, txn_member_fn fn)
{
        txn_pool_run(mg, t, in_tier, tier, 0, TXN_POOL_WIDE, fn);
}

static int any_member(const struct member *mb, unsigned unused)
{
        (void)mb;
        (void)unused;
        return 1;
}

void txn_run_all(struct txn_mgr *mg, struct txn *t, txn_member_fn fn)
{
        txn_pool_run(mg, t, any_member, 0, 0, TXN_POOL_WIDE, fn);
}

unsigned txn_max_tier(const struct txn *t)
{
        unsigned mx = 0;

        for (size_t i = 0; i < t->n; i++)
                if (t->m[i].tier > mx)
                        mx = t->m[i].tier;
        return mx;
}
