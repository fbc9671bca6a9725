/* engine_revert: putting a group back on a committed cut, or (undo) back on
 * the pre-revert branch a revert kept, all-or-nothing across hosts: PREPARE,
 * STOP by tier, SWITCH, START by tier, then the decision told to every agent. */
#include "engine_priv.h"
#include "failpoint.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "report.h"
#include "slots.h"

/* Deadlines of the steps that wait for guests: a clean shutdown, a boot. */
#define STOP_TIMEOUT_MS 120000
#define SHUTDOWN_TIMEOUT_MS 60000
#define START_TIMEOUT_MS 180000

/* One revert or undo as it runs. */
struct revert_job {
        const struct cat_txn *target; /* the cut, or for an undo the revert */
        int undo;
        const struct cfg_group *g;    /* NULL when the group left the configuration */
        struct items its;
        size_t n_members;
        unsigned max_tier;
        unsigned tier; /* of the STOP or START in flight */
};

static void revert_job_done(struct revert_job *j)
{
        items_free(&j->its);
}

/* An undo put the VMs back on what revert `id` kept: that branch is the live
 * chain now, it no longer pins older cuts and cannot be deleted as a branch.
 * The undo stands whatever the catalog says: a failure is logged here. */
void engine_mark_undone(struct engine *e, const char *id)
{
        lserr err = {0};

        if (cat_branch_set_status(e->cat, id, "undone", "", &err) < 0)
                log_err("%s", err.msg);
}

static const char *tier_name(const struct cfg_group *g, unsigned tier)
{
        return g && tier < g->n_tiers ? g->tiers[tier] : "-";
}

static void prepare_fill(struct item *it, const void *ctx)
{
        const struct revert_job *j = ctx;
        Lockstep__RevertPrepareRequest *rp = &it->pl.rprep;

        rp->cut_txid = (char *)j->target->txid;
        rp->snapshot = (char *)(j->undo ? j->target->txid : j->target->name);
        rp->undo = j->undo;
        rp->n_members = it->n_members;
        rp->members = it->memberp;
        /* The catalog's images: hints the agent compares with what it
         * resolves from its own records, never paths it uses. */
        rp->n_images = it->n_mdisks;
        rp->images = it->mdiskp;
}

static void prepare_say(const struct round *rd, const struct item *it, const char *why)
{
        if (why)
                engine_emit(rd->p, "PREPARE  %-12s NO: %s", agentlink_id(it->link), why);
        else
                engine_emit(rd->p, "PREPARE  %-12s ready: images there and sound", agentlink_id(it->link));
}

static void tier_fill(struct item *it, const void *ctx)
{
        const struct revert_job *j = ctx;

        if (it->pl.step == LOCKSTEP__STEP__STEP_REVERT_STOP) {
                it->pl.rstop.tier = j->tier;
                it->pl.rstop.shutdown_timeout_ms = SHUTDOWN_TIMEOUT_MS;
        } else if (it->pl.step == LOCKSTEP__STEP__STEP_REVERT_START) {
                it->pl.rstart.tier = j->tier;
        }
}

static unsigned member_tier(const struct item *it, const char *vm)
{
        for (size_t q = 0; q < it->n_members; q++)
                if (!strcmp(it->memberp[q]->vm, vm))
                        return it->memberp[q]->tier;
        return UINT_MAX;
}

/* One progress line per member the step acted on (a STOP or START acts on
 * one tier, SWITCH on all), then the agent's failure if it failed. */
static void tier_say(const struct round *rd, const struct item *it, const char *why)
{
        const struct revert_job *j = rd->ctx;
        Lockstep__Step s = rd->step;

        for (size_t k = 0; it->rep && k < it->rep->n_members; k++) {
                const Lockstep__MemberResult *mr = it->rep->members[k];
                const char *res = mr->code != LOCKSTEP__ERROR_CODE__OK ? "FAILED" : mr->message[0] ? mr->message : "done";
                char who[160];
                if (s != LOCKSTEP__STEP__STEP_REVERT_SWITCH && member_tier(it, mr->vm) != j->tier)
                        continue;
                snprintf(who, sizeof(who), "%s@%s", mr->vm, agentlink_id(it->link));
                engine_emit(rd->p,
                            s == LOCKSTEP__STEP__STEP_REVERT_STOP     ? "STOP     %-20s %s"
                            : s == LOCKSTEP__STEP__STEP_REVERT_SWITCH ? "SWITCH   %-20s %s"
                                                                      : "START    %-20s %s",
                            who, res);
        }
        if (why)
                engine_emit(rd->p,
                            s == LOCKSTEP__STEP__STEP_REVERT_STOP     ? "STOP     %-12s FAILED: %s"
                            : s == LOCKSTEP__STEP__STEP_REVERT_SWITCH ? "SWITCH   %-12s FAILED: %s"
                                                                      : "START    %-12s FAILED: %s",
                            agentlink_id(it->link), why);
}

/* PREPARE everywhere (nothing touched on failure), STOP front tiers first,
 * SWITCH, START back tiers first. 1 when every step succeeded everywhere;
 * reason says why not. */
static int revert_steps(struct engine *e, const char *txid, struct revert_job *j, const struct progress *p,
                        char reason[ENGINE_REASON_MAX])
{
        struct round rd = {.e = e, .txid = txid, .g = j->g, .ctx = j, .p = p, .step = LOCKSTEP__STEP__STEP_REVERT_PREPARE,
                           .fill = prepare_fill, .say = prepare_say, .timeout_ms = engine_step_ms(e)};
        int ok;

        /* An agent without a connection would time PREPARE out, and be told
         * the abort until it is back: the revert ends here, nothing sent. */
        if (!engine_reach_all(&rd, j->its.v, j->its.n)) {
                snprintf(reason, ENGINE_REASON_MAX, "%s", rd.reason);
                return 0;
        }
        ok = engine_round(&rd, j->its.v, j->its.n);

        rd.fill = tier_fill;
        rd.say = tier_say;
        rd.step = LOCKSTEP__STEP__STEP_REVERT_STOP;
        rd.timeout_ms = STOP_TIMEOUT_MS;
        for (j->tier = 0; ok && j->tier <= j->max_tier; j->tier++) {
                ok = engine_round(&rd, j->its.v, j->its.n);
                if (ok)
                        engine_emit(p, "STOP     tier %u (%s) stopped", j->tier, tier_name(j->g, j->tier));
        }
        if (ok) {
                rd.step = LOCKSTEP__STEP__STEP_REVERT_SWITCH;
                rd.timeout_ms = engine_step_ms(e);
                ok = engine_round(&rd, j->its.v, j->its.n);
                if (ok && j->undo)
                        engine_emit(p, "SWITCH   every member now on its pre-revert branch");
                else if (ok)
                        engine_emit(p, "SWITCH   every member now on a new overlay on the cut's image");
                failpoint_stop("revert-after-switch");
        }
        rd.step = LOCKSTEP__STEP__STEP_REVERT_START;
        rd.timeout_ms = START_TIMEOUT_MS;
        for (j->tier = j->max_tier + 1; ok && j->tier-- > 0;) {
                ok = engine_round(&rd, j->its.v, j->its.n);
                if (ok)
                        engine_emit(p, "START    tier %u (%s) running, guest agents answer", j->tier,
                                    tier_name(j->g, j->tier));
        }
        snprintf(reason, ENGINE_REASON_MAX, "%s", rd.reason);
        return ok;
}

/* Why target cannot be reverted to (or, undo, undone), or 0. */
static int revert_target_ok(const struct cat_txn *target, int undo, lserr *err)
{
        const char *id = target->txid;

        if (undo && target->kind != CAT_KIND_REVERT)
                return lserr_set(err, -EINVAL, "\"%s\" is not a revert (give the revert's ID to --undo)", id);
        if (!undo && target->kind != CAT_KIND_SNAPSHOT)
                return lserr_set(err, -EINVAL, "\"%s\" is not a cut", id);
        if (!target->committed || target->state != CAT_TXN_DONE)
                return lserr_set(err, -EINVAL, "\"%s\" is %s, not committed", id, report_state_word(target));
        if (!undo && target->cut_status[0])
                return lserr_set(err, -EINVAL, "cut \"%s\" is %s", id, target->cut_status);
        if (!undo || !target->branch_status[0])
                return 0;
        if (!strcmp(target->branch_status, "undone"))
                return lserr_set(err, -EINVAL,
                                 "revert \"%s\" cannot be undone: its pre-revert branch was put back already (undone)", id);
        if (!strcmp(target->branch_status, "deleted"))
                return lserr_set(err, -EINVAL, "revert \"%s\" cannot be undone: its pre-revert branch was deleted", id);
        return lserr_set(err, -EINVAL,
                         "revert \"%s\" cannot be undone: its pre-revert branch was partly deleted (delete it again)", id);
}

/* Logs the revert as begun, after checking again with the slot held: a
 * delete may have finished the cut while this waited for it. */
static int revert_begin(struct engine *e, struct revert_job *j, struct cat_txn *t, struct cat_image **ret_im,
                        const struct progress *p, char ret_txid[65], lserr *err)
{
        const struct cat_txn *tg = j->target;
        struct cat_txn now;
        int r;

        if (cat_txn_get(e->cat, tg->txid, &now, err) < 0)
                return -EIO;
        if (!j->undo && now.cut_status[0])
                return lserr_set(err, -EINVAL, "cut \"%s\" became %s while this waited", tg->txid, now.cut_status);
        if (!j->undo) {
                r = engine_attach_cut_images(e, tg->txid, &j->its, ret_im, err);
                if (r < 0)
                        return r;
        }
        t->kind = CAT_KIND_REVERT;
        snprintf(t->group, sizeof(t->group), "%s", tg->group);
        snprintf(t->name, sizeof(t->name), "%s", tg->txid);
        snprintf(t->mode, sizeof(t->mode), "%s", j->undo ? "undo" : "revert");
        r = engine_begin(e, t, &j->its, ret_txid, err);
        if (r < 0)
                return r;
        if (j->undo)
                engine_emit(p, "BEGIN    %s: undo: group %s back to the pre-revert branch kept by %s, %zu member(s) on %zu agent(s)",
                            t->txid, tg->group, tg->txid, j->n_members, j->its.n);
        else
                engine_emit(p, "BEGIN    %s: revert group %s to cut %s (%s), %zu member(s) on %zu agent(s)", t->txid,
                            tg->group, tg->txid, tg->name, j->n_members, j->its.n);
        return 0;
}

/* The revert with the group's slot held. A failure before it is decided puts
 * every member back on its pre-revert branch (the agents' ABORT). */
static int revert_locked(struct engine *e, struct revert_job *j, const struct progress *p, char ret_txid[65],
                         lserr *err)
{
        _cleanup_free_ struct cat_image *im = NULL;
        struct cat_txn t = {0};
        char reason[ENGINE_REASON_MAX] = "";
        int ok, r = revert_begin(e, j, &t, &im, p, ret_txid, err);

        if (r < 0)
                return r;
        ok = revert_steps(e, t.txid, j, p, reason);
        r = engine_log_decision(e, t.txid, ok, reason, p, err);
        if (r < 0)
                return r;
        if (ok && j->undo)
                engine_mark_undone(e, j->target->txid);
        engine_tell_items(e, t.txid, j->its.v, j->its.n, ok, 1, p);
        return ok ? 0 : 1;
}

int engine_revert(struct engine *e, const char *id, int undo, engine_event_fn ev, void *arg, char ret_txid[65],
                  lserr *err)
{
        const struct progress p = {ev, arg};
        _cleanup_free_ struct cat_member *m = NULL;
        struct cat_txn target;
        _cleanup_(revert_job_done) struct revert_job j = {.target = &target, .undo = undo};
        lserr why = {0};
        int r = cat_txn_get(e->cat, id, &target, &why);

        /* The catalog's words for any other failure; ours for "no such ID". */
        if (r == -ENOENT && undo)
                return lserr_set(err, -ENOENT, "no revert \"%s\" in the catalog", id);
        if (r == -ENOENT)
                return lserr_set(err, -ENOENT, "no cut \"%s\" in the catalog", id);
        if (r < 0)
                return lserr_set(err, r, "%s", why.msg);
        r = revert_target_ok(&target, undo, err);
        if (r < 0)
                return r;
        j.g = cfg_coord_group(e->cfg, target.group);
        r = engine_items_of(e, id, j.g, &m, &j.n_members, &j.its, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < j.n_members; i++)
                if (m[i].tier > j.max_tier)
                        j.max_tier = m[i].tier;
        r = engine_take_slot_cat(e, target.group, m, j.n_members, &p, err);
        if (r < 0)
                return r;
        r = revert_locked(e, &j, &p, ret_txid, err);
        slots_drop(e->slots, target.group);
        return r;
}
