/* engine_delete: deleting a committed cut (each member's overlay of it merged
 * into its backing image while the VMs run) and deleting the pre-revert
 * branch a revert kept (the files only that branch holds removed). One DELETE
 * round; no vote to tell: every chain stays valid whatever each agent did. */
#include "engine_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"
#include "report.h"
#include "slots.h"

/* Merging can take a while on big overlays: a longer deadline. */
#define DELETE_TIMEOUT_FACTOR 10

/* What every agent's DELETE says. */
struct del_spec {
        const char *cut_txid, *snapshot;
        int branch;
        char **reverts; /* hints: NULL when none (see DeleteRequest.images) */
        size_t n_reverts;
};

static void delete_fill(struct item *it, const void *ctx)
{
        const struct del_spec *s = ctx;
        Lockstep__DeleteRequest *dr = &it->pl.del;

        dr->cut_txid = (char *)s->cut_txid;
        dr->snapshot = (char *)s->snapshot;
        dr->branch = s->branch;
        dr->n_members = it->n_members;
        dr->members = it->memberp;
        if (s->reverts) {
                dr->n_images = it->n_mdisks;
                dr->images = it->mdiskp;
                dr->n_reverts = s->n_reverts;
                dr->reverts = s->reverts;
        }
}

static void delete_say(const struct round *rd, const struct item *it, const char *why)
{
        const struct del_spec *s = rd->ctx;
        const char *id = agentlink_id(it->link);

        if (why)
                engine_emit(rd->p, "DELETE   %-12s FAILED: %s", id, why);
        else if (s->branch)
                engine_emit(rd->p, "DELETE   %-12s branch removed, %zu member(s)", id, it->rep->n_members);
        else
                engine_emit(rd->p, "DELETE   %-12s merged, %zu member(s)", id, it->rep->n_members);
}

/* Runs the DELETE round of transaction t; 1 when every agent succeeded, 0
 * when some failed, -1 when nothing was sent: an agent had no connection, and
 * a delete that merged on the other hosts only would leave the cut half gone. */
static int delete_round(struct engine *e, const struct cat_txn *t, const struct del_spec *s, struct items *its,
                        const struct progress *p, char reason[ENGINE_REASON_MAX])
{
        struct round rd = {.e = e, .txid = t->txid, .step = LOCKSTEP__STEP__STEP_DELETE, .fill = delete_fill,
                           .say = delete_say, .ctx = s, .p = p,
                           .timeout_ms = engine_step_ms(e) * DELETE_TIMEOUT_FACTOR};
        int ok;

        if (!engine_reach_all(&rd, its->v, its->n)) {
                snprintf(reason, ENGINE_REASON_MAX, "%s", rd.reason);
                return -1;
        }
        ok = engine_round(&rd, its->v, its->n);
        snprintf(reason, ENGINE_REASON_MAX, "%s", rd.reason);
        return ok;
}

/* The delete transaction's decision, logged and finished at once: there is
 * nothing to tell the agents. A failure to log it is logged here; recovery
 * marks the delete interrupted. */
static void delete_outcome(struct engine *e, const char *txid, int ok, const char *reason)
{
        lserr err = {0};

        if (cat_txn_decide(e->cat, txid, ok, ok ? "" : reason, &err) < 0 || cat_txn_finish(e->cat, txid, &err) < 0)
                log_err("%s", err.msg);
}

/* Bookkeeping of a delete's outcome (a cut's or a branch's status): the
 * delete happened on the agents whatever the catalog says, so a failure is
 * logged here and the delete's result stands. */
static void set_status(struct engine *e, int branch, const char *txid, const char *status, const char *reason)
{
        lserr err = {0};
        int r = branch ? cat_branch_set_status(e->cat, txid, status, reason, &err)
                       : cat_cut_set_status(e->cat, txid, status, reason, &err);

        if (r < 0)
                log_err("%s", err.msg);
}

/* ---- the pre-revert branch of a revert --------------------------------------- */

/* Whether the replies list file path of agent/vm as removed. */
static int was_removed(const struct items *its, const char *agent, const char *vm, const char *path)
{
        for (size_t i = 0; i < its->n; i++) {
                const Lockstep__Reply *rep = its->v[i].rep;
                if (!rep || strcmp(agentlink_id(its->v[i].link), agent))
                        continue;
                for (size_t k = 0; k < rep->n_members; k++) {
                        const Lockstep__MemberResult *mr = rep->members[k];
                        for (size_t d = 0; !strcmp(mr->vm, vm) && d < mr->n_disks; d++)
                                if (!strcmp(mr->disks[d]->after, path))
                                        return 1;
                }
        }
        return 0;
}

/* Cut cut_txid had an image among the files removed: deleted when all its
 * images went, delete-failed otherwise, so that deleting it merges what is
 * left of it (on a VM the branch did not hold). 1 when deleted. */
static int drop_cut(struct engine *e, const struct items *its, const char *cut_txid, const char *why)
{
        _cleanup_free_ struct cat_image *im = NULL;
        size_t ni = 0;
        lserr err = {0};
        int all = 1;

        if (cat_images(e->cat, cut_txid, &im, &ni, &err) < 0) {
                log_err("%s", err.msg);
                return 0;
        }
        for (size_t q = 0; q < ni; q++)
                all &= was_removed(its, im[q].agent, im[q].vm, im[q].before);
        set_status(e, 0, cut_txid, all ? "deleted" : "delete-failed", why);
        return all;
}

/* A branch delete removed files: every cut one of whose images was among
 * them cannot be restored any more (drop_cut). Returns how many cuts became
 * deleted; adds the files removed to *ret_removed. */
static int drop_cuts_on(struct engine *e, const struct items *its, const char *why, size_t *ret_removed)
{
        int dropped = 0;

        for (size_t i = 0; i < its->n; i++)
                for (size_t k = 0; its->v[i].rep && k < its->v[i].rep->n_members; k++) {
                        const Lockstep__MemberResult *mr = its->v[i].rep->members[k];
                        *ret_removed += mr->n_disks;
                        for (size_t d = 0; d < mr->n_disks; d++) {
                                _cleanup_free_ char(*cuts)[65] = NULL;
                                size_t nc = 0;
                                lserr err = {0};
                                if (cat_cuts_on_image(e->cat, agentlink_id(its->v[i].link), mr->vm, mr->disks[d]->after,
                                                      &cuts, &nc, &err) < 0)
                                        log_err("%s", err.msg);
                                for (size_t c = 0; c < nc; c++)
                                        dropped += drop_cut(e, its, cuts[c], why);
                        }
                }
        return dropped;
}

/* Why a revert's pre-revert branch cannot be deleted now, or NULL. */
static const char *branch_not_deletable(const struct cat_txn *rev)
{
        if (!rev->committed || rev->state != CAT_TXN_DONE)
                return "it is not a committed revert";
        if (!strcmp(rev->branch_status, "deleted"))
                return "its pre-revert branch is already deleted";
        if (!strcmp(rev->branch_status, "undone"))
                return "it was undone: the VMs run on its pre-revert branch again, there is no other branch to delete";
        return NULL;
}

/* The branch delete, with the group's slot held. */
static int delete_branch_locked(struct engine *e, const struct cat_txn *rev, struct items *its,
                                const struct progress *p, char ret_txid[65], lserr *err)
{
        struct del_spec s = {.cut_txid = rev->txid, .snapshot = rev->txid, .branch = 1};
        struct cat_txn t = {.kind = CAT_KIND_DELETE}, now;
        char reason[ENGINE_REASON_MAX] = "", why_gone[200];
        const char *no;
        size_t removed = 0;
        int ok, dropped, r;

        /* Checked again with the slot held: an undo or a prune may have run. */
        if (cat_txn_get(e->cat, rev->txid, &now, err) < 0)
                return -EIO;
        if ((no = branch_not_deletable(&now)))
                return lserr_set(err, -EINVAL, "revert \"%s\": %s", rev->txid, no);
        snprintf(t.group, sizeof(t.group), "%s", rev->group);
        snprintf(t.name, sizeof(t.name), "%s", rev->txid);
        snprintf(t.mode, sizeof(t.mode), "branch");
        r = engine_begin(e, &t, its, ret_txid, err);
        if (r < 0)
                return r;
        engine_emit(p, "DELETE   %s: pre-revert branch of revert %s (group %s) on %zu agent(s)", t.txid, rev->txid,
                    rev->group, its->n);
        ok = delete_round(e, &t, &s, its, p, reason);
        if (ok < 0) {
                /* Nothing sent: the branch stays as it was, and the delete
                 * could not run, as when its group is busy. */
                delete_outcome(e, t.txid, 0, reason);
                engine_emit(p, "DELETE   pre-revert branch of %s NOT deleted: %s", rev->txid, reason);
                return lserr_set(err, -ENOTCONN, "pre-revert branch of %s not deleted: %s", rev->txid, reason);
        }
        snprintf(why_gone, sizeof(why_gone), "its images were on the pre-revert branch of %s, deleted by %s", rev->txid,
                 t.txid);
        dropped = drop_cuts_on(e, its, why_gone, &removed);
        delete_outcome(e, t.txid, ok, reason);
        set_status(e, 1, rev->txid, ok ? "deleted" : "delete-failed", ok ? "" : reason);
        if (ok)
                engine_emit(p, "DELETE   pre-revert branch of %s deleted: %zu file(s) removed, %d cut(s) that only it held marked deleted",
                            rev->txid, removed, dropped);
        else
                engine_emit(p, "DELETE   pre-revert branch of %s NOT fully deleted (delete it again): %zu file(s) removed, %d cut(s) that only it held marked deleted",
                            rev->txid, removed, dropped);
        return ok ? 0 : 1;
}

/* Deletes the pre-revert branch that revert rev kept: on every agent the
 * files only that branch holds are removed; the cuts whose images were among
 * them are marked deleted; the cuts older than the revert are no longer
 * pinned by it. */
static int delete_branch(struct engine *e, const struct cat_txn *rev, const struct progress *p, char ret_txid[65],
                         lserr *err)
{
        _cleanup_free_ struct cat_member *m = NULL;
        _cleanup_(items_freep) struct items its = {0};
        const char *no = branch_not_deletable(rev);
        size_t nm = 0;
        int r;

        if (no)
                return lserr_set(err, !strcmp(rev->branch_status, "deleted") ? -EALREADY : -EINVAL, "revert \"%s\": %s",
                                 rev->txid, no);
        r = engine_items_of(e, rev->txid, NULL, &m, &nm, &its, err);
        if (r < 0)
                return r;
        r = engine_take_slot_cat(e, rev->group, m, nm, p, err);
        if (r < 0)
                return r;
        r = delete_branch_locked(e, rev, &its, p, ret_txid, err);
        slots_drop(e->slots, rev->group);
        return r;
}

/* ---- a cut ---------------------------------------------------------------------- */

/* The cut's images as hints for its delete (see DeleteRequest.images), but
 * only those no other live cut holds: above such an image sits that cut's
 * data, never something this delete may merge. */
static int attach_delete_hints(struct engine *e, const char *txid, struct items *its, struct cat_image **ret_im,
                               lserr *err)
{
        int r = engine_attach_cut_images(e, txid, its, ret_im, err);

        for (size_t i = 0; r == 0 && i < its->n; i++) {
                struct item *it = &its->v[i];
                for (size_t k = 0; k < it->n_mdisks; k++) {
                        Lockstep__MemberDisks *md = it->mdiskp[k];
                        size_t keep = 0;
                        for (size_t d = 0; d < md->n_disks; d++) {
                                lserr e2 = {0};
                                int users = cat_image_users(e->cat, agentlink_id(it->link), md->vm,
                                                            md->disks[d]->before, txid, &e2);
                                if (users == 0)
                                        md->disks[keep++] = md->disks[d];
                                else if (users < 0)
                                        log_err("%s", e2.msg); /* a hint less: the agent looks in the chain */
                        }
                        md->n_disks = keep;
                }
        }
        return r;
}

/* Whether cut (a committed snapshot) may be deleted now. */
static int cut_deletable(struct engine *e, const struct cat_txn *cut, lserr *err)
{
        char rev[65];
        int r;

        if (cut->kind != CAT_KIND_SNAPSHOT)
                return lserr_set(err, -EINVAL, "\"%s\" is not a committed cut (it is not a snapshot)", cut->txid);
        if (!cut->committed || cut->state != CAT_TXN_DONE)
                return lserr_set(err, -EINVAL, "\"%s\" is not a committed cut (it is %s)", cut->txid,
                                 report_state_word(cut));
        if (!strcmp(cut->cut_status, "deleted"))
                return lserr_set(err, -EALREADY, "cut \"%s\" is already deleted", cut->txid);
        r = cat_reverts_since(e->cat, cut->txid, cut->started_us, rev, err);
        if (r < 0)
                return r;
        /* The chains branched at the revert: this cut's layers are in the
         * pre-revert branch it kept (and a revert's overlay may sit on them).
         * Merging would change what that branch holds. */
        if (r > 0)
                return lserr_set(err, -EBUSY,
                                 "cut \"%s\" is older than %d revert(s) of its VMs (newest %s): its layers are shared "
                                 "with the pre-revert branch kept for --undo; it cannot be deleted while that branch "
                                 "is kept",
                                 cut->txid, r, rev);
        return 0;
}

/* Checked again with the slot held: while this waited for it, another delete
 * (a prune) may have finished the cut, or a revert branched it. */
static int cut_still_deletable(struct engine *e, const struct cat_txn *cut, lserr *err)
{
        struct cat_txn now;
        char rev[65];
        int r;

        if (cat_txn_get(e->cat, cut->txid, &now, err) < 0)
                return -EIO;
        if (!strcmp(now.cut_status, "deleted"))
                return lserr_set(err, -EALREADY, "cut \"%s\" was deleted while this waited", cut->txid);
        r = cat_reverts_since(e->cat, cut->txid, cut->started_us, rev, err);
        if (r > 0)
                return lserr_set(err, -EBUSY, "cut \"%s\": revert %s of its VMs committed while this waited",
                                 cut->txid, rev);
        return r;
}

/* Later cuts that held a merged layer hold its base now. */
static void repath_merged(struct engine *e, const struct items *its)
{
        for (size_t i = 0; i < its->n; i++)
                for (size_t k = 0; its->v[i].rep && k < its->v[i].rep->n_members; k++) {
                        const Lockstep__MemberResult *mr = its->v[i].rep->members[k];
                        for (size_t d = 0; d < mr->n_disks; d++) {
                                lserr err = {0};
                                if (cat_image_repath(e->cat, agentlink_id(its->v[i].link), mr->vm, mr->disks[d]->after,
                                                     mr->disks[d]->before, &err) < 0)
                                        log_err("%s", err.msg);
                        }
                }
}

/* The cut's delete, with the group's slot held. */
static int delete_cut_locked(struct engine *e, const struct cat_txn *cut, struct items *its,
                             const struct progress *p, char ret_txid[65], lserr *err)
{
        _cleanup_free_ struct cat_image *im = NULL;
        _cleanup_free_ char(*reverts)[65] = NULL;
        _cleanup_free_ char **revp = NULL;
        struct del_spec s = {.cut_txid = cut->txid, .snapshot = cut->name};
        struct cat_txn t = {.kind = CAT_KIND_DELETE};
        char reason[ENGINE_REASON_MAX] = "";
        size_t n_reverts = 0;
        int ok, r = cut_still_deletable(e, cut, err);

        /* Hints only where a revert to this cut may have left its overlay on
         * the cut's image: the agent merges nothing but such an overlay. */
        if (r == 0)
                r = cat_reverts_to(e->cat, cut->txid, &reverts, &n_reverts, err);
        if (r == 0 && n_reverts) {
                revp = calloc(n_reverts, sizeof(*revp));
                r = revp ? attach_delete_hints(e, cut->txid, its, &im, err) : -ENOMEM;
                for (size_t i = 0; revp && i < n_reverts; i++)
                        revp[i] = reverts[i];
                s.reverts = revp;
                s.n_reverts = n_reverts;
        }
        if (r < 0)
                return r;
        snprintf(t.group, sizeof(t.group), "%s", cut->group);
        snprintf(t.name, sizeof(t.name), "%s", cut->txid); /* the cut it deletes */
        snprintf(t.mode, sizeof(t.mode), "%s", cut->mode);
        r = engine_begin(e, &t, its, ret_txid, err);
        if (r < 0)
                return r;
        engine_emit(p, "DELETE   %s: cut %s (%s) of group %s on %zu agent(s)", t.txid, cut->txid, cut->name, cut->group,
                    its->n);
        ok = delete_round(e, &t, &s, its, p, reason);
        if (ok < 0) {
                /* Nothing sent: the cut stays as it was, committed, and the
                 * delete could not run, as when its group is busy. */
                delete_outcome(e, t.txid, 0, reason);
                engine_emit(p, "DELETE   cut %s NOT deleted: %s", cut->txid, reason);
                return lserr_set(err, -ENOTCONN, "cut %s not deleted: %s", cut->txid, reason);
        }
        repath_merged(e, its);
        delete_outcome(e, t.txid, ok, reason);
        set_status(e, 0, cut->txid, ok ? "deleted" : "delete-failed", ok ? "" : reason);
        if (ok)
                engine_emit(p, "DELETE   cut %s deleted", cut->txid);
        else
                engine_emit(p, "DELETE   cut %s NOT deleted: every chain is valid; delete it again", cut->txid);
        return ok ? 0 : 1;
}

int engine_delete(struct engine *e, const char *cut_txid, engine_event_fn ev, void *arg, char ret_txid[65],
                  lserr *err)
{
        const struct progress p = {ev, arg};
        _cleanup_free_ struct cat_member *m = NULL;
        _cleanup_(items_freep) struct items its = {0};
        struct cat_txn cut;
        size_t nm = 0;
        lserr why = {0};
        int r = cat_txn_get(e->cat, cut_txid, &cut, &why);

        /* The catalog's words for any other failure; ours for "no such cut". */
        if (r == -ENOENT)
                return lserr_set(err, -ENOENT, "no cut \"%s\" in the catalog", cut_txid);
        if (r < 0)
                return lserr_set(err, r, "%s", why.msg);
        if (cut.kind == CAT_KIND_REVERT)
                return delete_branch(e, &cut, &p, ret_txid, err);
        r = cut_deletable(e, &cut, err);
        if (r < 0)
                return r;
        r = engine_items_of(e, cut_txid, NULL, &m, &nm, &its, err);
        if (r < 0)
                return r;
        r = engine_take_slot_cat(e, cut.group, m, nm, &p, err);
        if (r < 0)
                return r;
        r = delete_cut_locked(e, &cut, &its, &p, ret_txid, err);
        slots_drop(e->slots, cut.group);
        return r;
}
