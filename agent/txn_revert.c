/* txn_revert: the revert protocol (PREPARE, then STOP, SWITCH, START tier by
 * tier, then DECIDE: keep, or roll back onto the pre-revert branch), and the
 * removal of a pre-revert branch that a DELETE asks for. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "branch.h"
#include "cleanup.h"
#include "failpoint.h"
#include "fsutil.h"
#include "imgfile.h"
#include "log.h"
#include "txn_priv.h"

#define REVERT_START_WAIT_US (120LL * 1000000)

/* A record from before formats were kept: the branch top's format is the
 * disk's own when the disk runs on it, qcow2 when lockstep named it (only
 * lockstep makes such files, and only as qcow2); else it stays unknown and
 * the undo is refused rather than guessed. */
static void old_record_format(const char *vm, const struct hv_domain *d, struct hv_image *im)
{
        char id[LS_NAME_MAX + 1];

        for (unsigned k = 0; !im->format[0] && k < d->n_disks; k++)
                if (!strcmp(d->disks[k].target, im->target) && !strcmp(d->disks[k].path, im->before))
                        snprintf(im->format, sizeof(im->format), "%s", d->disks[k].format);
        if (!im->format[0] && imgfile_layer_txid(im->before, vm, im->target, id, sizeof(id)) == 0)
                snprintf(im->format, sizeof(im->format), "qcow2");
}

/* Undo: the disks go back to what revert `of` found them on. */
static int read_branch(struct txn_mgr *mg, const char *of, struct member *mb, lserr *err)
{
        struct hv_image rec[HV_MAX_DISKS];
        struct hv_domain d;
        size_t n = 0;
        int r = branch_record_read(mg->cfg->journal_dir, of, mb->vm, rec, &n, err);

        if (r == -ENOENT) {
                char path[4200];
                branch_record_path(mg->cfg->journal_dir, of, mb->vm, path, sizeof(path));
                return lserr_set(err, LS_EIMAGE, "prepare: no pre-revert branch of revert %s here (\"%s\")", of, path);
        }
        if (r < 0)
                return r;
        r = hv_lookup(mg->hv, mb->vm, &d, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct hv_image *im = &mb->imgs[i];
                memset(im, 0, sizeof(*im));
                memcpy(im->target, rec[i].target, sizeof(im->target));
                memcpy(im->before, rec[i].branch, sizeof(im->before));
                memcpy(im->format, rec[i].branch_format, sizeof(im->format));
                for (unsigned k = 0; k < d.n_disks; k++)
                        if (!strcmp(d.disks[k].target, im->target))
                                snprintf(im->branch, sizeof(im->branch), "%s", d.disks[k].path);
                old_record_format(mb->vm, &d, im);
        }
        mb->n_imgs = n;
        return hv_check_images(mg->hv, mb->vm, mb->imgs, mb->n_imgs, err);
}

static const Lockstep__MemberDisks *images_of(const Lockstep__RevertPrepareRequest *rp, const char *vm)
{
        for (size_t i = 0; i < rp->n_images; i++)
                if (rp->images[i]->vm && !strcmp(rp->images[i]->vm, vm))
                        return rp->images[i];
        return NULL;
}

/* The catalog's image per disk of vm, as hints: only compared with what the
 * agent resolves, or (a cut older than that) matched against files of chains
 * it knows. Never a path used as given. */
static int hints_of(const Lockstep__MemberDisks *md, struct hv_image *ret, size_t *ret_n, lserr *err)
{
        *ret_n = 0;
        for (size_t k = 0; md && k < md->n_disks; k++) {
                const Lockstep__DiskImage *di = md->disks[k];
                if (*ret_n == HV_MAX_DISKS)
                        return lserr_set(err, LS_EIMAGE, "prepare: the catalog names more than %d disks", HV_MAX_DISKS);
                if (!di->disk || !di->before || strlen(di->disk) >= HV_TARGET_MAX || strlen(di->before) >= HV_PATH_MAX)
                        return lserr_set(err, LS_EIMAGE, "prepare: the catalog's image of a disk is not a disk and a path");
                memset(&ret[*ret_n], 0, sizeof(ret[*ret_n]));
                snprintf(ret[*ret_n].target, HV_TARGET_MAX, "%s", di->disk);
                snprintf(ret[*ret_n].before, HV_PATH_MAX, "%s", di->before);
                (*ret_n)++;
        }
        return 0;
}

/* Each hint must name the file the agent resolved for that disk. */
static int hints_agree(const struct member *mb, const struct hv_image *hints, size_t n_hints, lserr *err)
{
        for (size_t h = 0; h < n_hints; h++) {
                const struct hv_image *im = NULL;
                for (size_t i = 0; i < mb->n_imgs; i++)
                        if (!strcmp(mb->imgs[i].target, hints[h].target))
                                im = &mb->imgs[i];
                if (!im)
                        return lserr_set(err, LS_EIMAGE, "prepare: disk \"%s\" of the catalog is not a disk of the domain",
                                         hints[h].target);
                if (strcmp(im->before, hints[h].before))
                        return lserr_set(err, LS_EIMAGE,
                                         "prepare: disk %s: the catalog names \"%s\" as the cut's image, the agent's "
                                         "records and chains give \"%s\": refused",
                                         im->target, hints[h].before, im->before);
        }
        return 0;
}

/* The cut's images resolved from the agent's own records: the disks' chains
 * and the branches recorded for mb's domain. */
static int resolve_images(struct txn_mgr *mg, struct txn *t, struct member *mb, const Lockstep__MemberDisks *md,
                          lserr *err)
{
        struct hv_image hints[HV_MAX_DISKS];
        _cleanup_free_ struct hv_image *branches = NULL;
        struct hv_cut_where w = {0};
        int r = hints_of(md, hints, &w.n_hints, err);

        if (r == 0)
                r = branch_record_all(mg->cfg->journal_dir, mb->vm, &branches, &w.n_branches, err);
        if (r < 0)
                return r;
        w.branches = branches;
        w.hints = hints;
        r = hv_cut_images(mg->hv, mb->vm, t->cut, t->snap, &w, mb->imgs, &mb->n_imgs, err);
        if (r < 0)
                return r;
        return hints_agree(mb, hints, w.n_hints, err);
}

/* What a member will be switched onto: checked here, before anything is touched. */
static int prepare_member(struct txn_mgr *mg, struct txn *t, const Lockstep__RevertPrepareRequest *rp,
                          struct member *mb)
{
        const Lockstep__MemberDisks *md = images_of(rp, mb->vm);
        struct hv_domain d;
        lserr err = {0};
        int r = hv_lookup(mg->hv, mb->vm, &d, &err);

        if (r == 0) {
                mb->was_running = d.state == HV_RUNNING || d.state == HV_PAUSED;
                if (t->undo)
                        r = read_branch(mg, rp->cut_txid, mb, &err);
                else
                        r = resolve_images(mg, t, mb, md, &err);
        }
        if (r < 0)
                txn_member_fail(mg, mb, txn_wire_code(r), "%s", err.msg);
        return r;
}

int txn_revert_prepare(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const Lockstep__RevertPrepareRequest *rp = cmd->revert_prepare;
        char message[TXN_MSG_MAX] = "";
        _cleanup_txn_ struct txn *t = NULL;
        int failed, r;

        if (rp->n_members == 0)
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                       "revert: no members given", ret, ret_len);
        t = txn_new_members(cmd->txid, rp->members, rp->n_members);
        if (!t)
                return -ENOMEM;
        snprintf(t->snap, sizeof(t->snap), "%s", rp->snapshot);
        snprintf(t->cut, sizeof(t->cut), "%s", rp->cut_txid);
        t->revert = 1;
        t->undo = rp->undo;
        failed = txn_enlist(mg, t, LOCKSTEP__JOURNAL_STATE__J_R_PREPARED, "revert");
        if (failed < 0)
                return txn_plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BUSY,
                                       "revert: this transaction is being prepared; resend", ret, ret_len);
        struct txn *listed = TAKE_PTR(t); /* the manager's now */
        for (size_t i = 0; !failed && i < listed->n; i++)
                failed = prepare_member(mg, listed, rp, &listed->m[i]) < 0;
        if (failed) {
                listed->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                listed->finished_mono = fsutil_mono_us();
                snprintf(message, sizeof(message), "%s: revert: prepare failed; nothing was touched", mg->cfg->id);
        } else {
                log_info("txid=%s step=REVERT_PREPARE %s of %s: %zu member(s) ready", listed->txid,
                         listed->undo ? "undo" : "revert", rp->cut_txid, listed->n);
        }
        r = txn_finish_step(mg, listed, cmd->step, 0, failed ? txn_first_code(listed) : LOCKSTEP__ERROR_CODE__OK,
                            message, ret, ret_len);
        pthread_mutex_unlock(&listed->lock);
        return r;
}

static int revert_stop(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                       size_t *ret_len)
{
        unsigned tier = cmd->revert_stop->tier, timeout = cmd->revert_stop->shutdown_timeout_ms;
        int failed = 0;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_PREPARED && t->state != LOCKSTEP__JOURNAL_STATE__J_R_STOPPED)
                return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                       "revert: stop is allowed only after prepare", ret, ret_len);
        t->state = LOCKSTEP__JOURNAL_STATE__J_R_STOPPED;
        for (size_t i = 0; i < t->n; i++) {
                struct member *mb = &t->m[i];
                lserr err = {0};
                long long t0 = fsutil_mono_us();
                if (mb->tier != tier)
                        continue;
                if (hv_stop(mg->hv, mb->vm, timeout ? timeout : 60000, &err) < 0) {
                        txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_INTERNAL, "%s", err.msg);
                        failed = 1;
                } else if (mb->was_running) {
                        txn_member_note(mb, "stopped in %.1f s", (double)(fsutil_mono_us() - t0) / 1e6);
                } else {
                        txn_member_note(mb, "was shut off already");
                }
                log_info("txid=%s step=REVERT_STOP vm=%s tier=%u dur_ms=%.1f", t->txid, mb->vm, tier,
                         (double)(fsutil_mono_us() - t0) / 1000.0);
        }
        return txn_finish_step(mg, t, cmd->step, tier, failed ? txn_first_code(t) : LOCKSTEP__ERROR_CODE__OK, "", ret,
                               ret_len);
}

/* Records the branch and points mb's disks at the cut. */
static int switch_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        int r = branch_record_write(mg->cfg->journal_dir, t->txid, mb->vm, mb->imgs, mb->n_imgs, &err);

        if (r == 0) {
                mb->switched = 1; /* before the act: recovery undoes what may have happened */
                r = hv_point_disks(mg->hv, mb->vm, mb->imgs, mb->n_imgs, t->undo ? NULL : t->txid, &err);
        }
        if (r < 0)
                txn_member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_INTERNAL, "%s", err.msg);
        else if (mb->n_imgs)
                txn_member_note(mb, "%zu disk(s) on %s", mb->n_imgs,
                                t->undo || !mb->imgs[0].after[0] ? mb->imgs[0].before : mb->imgs[0].after);
        txn_persist_or_log(mg, t); /* which members are switched, and onto what */
        log_info("txid=%s step=REVERT_SWITCH vm=%s %s", t->txid, mb->vm, r < 0 ? "failed" : "ok");
        return r;
}

static int revert_switch(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                         size_t *ret_len)
{
        int failed = 0;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_STOPPED)
                return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                       "revert: switch is allowed only after stop", ret, ret_len);
        /* The intent first: a crash from here on goes back to the branch. */
        t->state = LOCKSTEP__JOURNAL_STATE__J_R_SWITCHING;
        if (txn_persist_or_log(mg, t) < 0)
                return txn_finish_step(mg, t, cmd->step, 0, LOCKSTEP__ERROR_CODE__E_INTERNAL,
                                       "revert: journal cannot be written; nothing switched", ret, ret_len);
        for (size_t i = 0; !failed && i < t->n; i++) {
                failed = switch_member(mg, t, &t->m[i]) < 0;
                /* Crash tests: one member switched and the others not. */
                if (i == 0)
                        failpoint_stop("agent-mid-switch");
        }
        t->state = LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED;
        return txn_finish_step(mg, t, cmd->step, 0, failed ? txn_first_code(t) : LOCKSTEP__ERROR_CODE__OK, "", ret,
                               ret_len);
}

/* The memory state a memory-mode cut saved beside its first image, under
 * either naming scheme, into mem; "" when there is none to restore from. */
static void memory_state(const struct txn *t, const struct member *mb, char *mem, size_t n)
{
        mem[0] = '\0';
        if (t->undo || !mb->n_imgs)
                return;
        if (imgfile_memory(mb->imgs[0].before, mb->vm, t->cut, mem, n) == 0 && access(mem, R_OK) == 0)
                return;
        if (imgfile_legacy(mb->imgs[0].before, t->snap, "mem", mem, n) < 0 || access(mem, R_OK) < 0)
                mem[0] = '\0';
}

/* Starts a member and waits until its guest agent answers (crash-consistent
 * members have none to wait for); *ret_how says how it came back. */
static int start_member(struct txn_mgr *mg, struct txn *t, struct member *mb, const char **ret_how, lserr *err)
{
        long long deadline = fsutil_mono_us() + REVERT_START_WAIT_US;
        char mem[HV_PATH_MAX];
        int r;

        /* A memory-mode cut comes back running from its memory state, without
         * a reboot. */
        memory_state(t, mb, mem, sizeof(mem));
        *ret_how = "booted";
        if (mem[0]) {
                *ret_how = "restored running from its memory state";
                r = hv_restore(mg->hv, mb->vm, mem, err);
                log_info("txid=%s vm=%s restored from memory state %s: %s", t->txid, mb->vm, mem,
                         r < 0 ? "failed" : "ok");
        } else {
                r = hv_start(mg->hv, mb->vm, err);
        }
        if (r < 0 || mb->crash)
                return r;
        for (;;) {
                lserr e2 = {0};
                if (hv_ga_ping(mg->hv, mb->vm, 2, &e2) == 0)
                        return 0;
                if (fsutil_mono_us() > deadline)
                        return lserr_set(err, LS_ENOGA, "start: guest agent did not answer within %lld s",
                                         REVERT_START_WAIT_US / 1000000);
                usleep(250000);
        }
}

static int revert_start(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                        size_t *ret_len)
{
        unsigned tier = cmd->revert_start->tier;
        int failed = 0;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED && t->state != LOCKSTEP__JOURNAL_STATE__J_R_STARTED)
                return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                       "revert: start is allowed only after switch", ret, ret_len);
        t->state = LOCKSTEP__JOURNAL_STATE__J_R_STARTED;
        for (size_t i = 0; i < t->n; i++) {
                struct member *mb = &t->m[i];
                const char *how = "";
                lserr err = {0};
                long long t0 = fsutil_mono_us();
                if (mb->tier != tier)
                        continue;
                /* Members that were shut off at cut time stay off. */
                if (!mb->was_running) {
                        txn_member_note(mb, "left shut off, as it was");
                        continue;
                }
                if (start_member(mg, t, mb, &how, &err) < 0) {
                        txn_member_fail(mg, mb, txn_wire_code(err.code), "%s", err.msg);
                        failed = 1;
                } else {
                        txn_member_note(mb, "%s, %s after %.1f s", how,
                                        mb->crash ? "running (no guest agent to wait for)" : "guest agent answered",
                                        (double)(fsutil_mono_us() - t0) / 1e6);
                }
                log_info("txid=%s step=REVERT_START vm=%s tier=%u dur_ms=%.1f", t->txid, mb->vm, tier,
                         (double)(fsutil_mono_us() - t0) / 1000.0);
        }
        return txn_finish_step(mg, t, cmd->step, tier, failed ? txn_first_code(t) : LOCKSTEP__ERROR_CODE__OK, "", ret,
                               ret_len);
}

/* The branch's formats for a member recovered from the journal (which
 * keeps paths only): from the record the switch wrote first. */
static void branch_formats(struct txn_mgr *mg, const struct txn *t, const struct member *mb, struct hv_image *back)
{
        struct hv_image rec[HV_MAX_DISKS];
        size_t n = 0;
        lserr e2 = {0};

        if (branch_record_read(mg->cfg->journal_dir, t->txid, mb->vm, rec, &n, &e2) < 0)
                return;
        for (size_t k = 0; k < mb->n_imgs; k++)
                for (size_t j = 0; !back[k].format[0] && j < n; j++)
                        if (!strcmp(rec[j].target, back[k].target) && !strcmp(rec[j].branch, back[k].before))
                                snprintf(back[k].format, sizeof(back[k].format), "%s", rec[j].branch_format);
}

/* Points a switched member's disks back at its branch, removing the overlay
 * made on the cut. */
static int switch_back(struct txn_mgr *mg, struct txn *t, struct member *mb, lserr *err)
{
        struct hv_image back[HV_MAX_DISKS];
        int r = hv_stop(mg->hv, mb->vm, 30000, err);

        for (size_t k = 0; k < mb->n_imgs; k++) {
                memset(&back[k], 0, sizeof(back[k]));
                snprintf(back[k].target, HV_TARGET_MAX, "%s", mb->imgs[k].target);
                snprintf(back[k].before, HV_PATH_MAX, "%s", mb->imgs[k].branch);
                snprintf(back[k].format, sizeof(back[k].format), "%s", mb->imgs[k].branch_format);
        }
        branch_formats(mg, t, mb, back);
        if (r == 0)
                r = hv_point_disks(mg->hv, mb->vm, back, mb->n_imgs, NULL, err);
        /* The overlay made on the cut is ours to remove; an undo made none. */
        for (size_t k = 0; r == 0 && !t->undo && k < mb->n_imgs; k++)
                if (mb->imgs[k].after[0] && strcmp(mb->imgs[k].after, mb->imgs[k].branch) &&
                    unlink(mb->imgs[k].after) < 0 && errno != ENOENT)
                        r = lserr_set(err, -errno, "remove \"%s\": %m", mb->imgs[k].after);
        if (r == 0)
                mb->switched = 0;
        return r;
}

int txn_revert_rollback(struct txn_mgr *mg, struct txn *t)
{
        int failed = 0;

        for (size_t i = 0; i < t->n; i++) {
                struct member *mb = &t->m[i];
                lserr err = {0};
                int r = mb->switched ? switch_back(mg, t, mb, &err) : 0;
                if (r == 0 && mb->was_running) {
                        struct hv_domain d;
                        if (hv_lookup(mg->hv, mb->vm, &d, &err) == 0 && d.state == HV_SHUTOFF)
                                r = hv_start(mg->hv, mb->vm, &err);
                }
                if (r < 0) {
                        log_err("txid=%s vm=%s rollback to the pre-revert branch failed: %s", t->txid, mb->vm, err.msg);
                        failed = 1;
                }
        }
        /* Back on the branches: no record of them is left to keep. */
        for (size_t i = 0; !failed && i < t->n; i++) {
                lserr err = {0};
                branch_record_remove(mg->cfg->journal_dir, t->txid, t->m[i].vm, &err);
        }
        txn_persist_or_log(mg, t);
        return failed ? -EIO : 0;
}

static int revert_decide(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                         size_t *ret_len)
{
        int commit = cmd->revert_decide->decision == LOCKSTEP__DECISION__DECISION_COMMIT;
        char message[TXN_MSG_MAX] = "";

        if (commit) {
                if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_STARTED && t->state != LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED) {
                        snprintf(message, sizeof(message), "%s: revert %s cannot commit: not switched", mg->cfg->id,
                                 t->txid);
                        return txn_plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret,
                                               ret_len);
                }
                t->state = LOCKSTEP__JOURNAL_STATE__J_COMMITTED;
                log_info("txid=%s step=REVERT_DECIDE committed", t->txid);
                /* After an undo the VMs run on what revert t->cut kept: no
                 * branch of its is left to keep (this undo keeps its own). */
                for (size_t i = 0; t->undo && i < t->n; i++) {
                        lserr err = {0};
                        branch_record_remove(mg->cfg->journal_dir, t->cut, t->m[i].vm, &err);
                }
        } else {
                if (txn_revert_rollback(mg, t) < 0) {
                        snprintf(message, sizeof(message), "%s: revert %s: rollback to the pre-revert branch failed",
                                 mg->cfg->id, t->txid);
                        return txn_pack_reply(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__E_INTERNAL, message, ret,
                                              ret_len);
                }
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                log_info("txid=%s step=REVERT_DECIDE aborted: members back on their pre-revert branch", t->txid);
        }
        t->decided = 1;
        t->finished_mono = fsutil_mono_us();
        return txn_finish_step(mg, t, cmd->step, 0, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
}

int txn_revert_step(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                    size_t *ret_len)
{
        switch (cmd->step) {
        case LOCKSTEP__STEP__STEP_REVERT_STOP:
                return revert_stop(mg, t, cmd, ret, ret_len);
        case LOCKSTEP__STEP__STEP_REVERT_SWITCH:
                return revert_switch(mg, t, cmd, ret, ret_len);
        case LOCKSTEP__STEP__STEP_REVERT_START:
                return revert_start(mg, t, cmd, ret, ret_len);
        case LOCKSTEP__STEP__STEP_REVERT_DECIDE:
                return revert_decide(mg, t, cmd, ret, ret_len);
        default:
                assert(!"txn_revert_step: not a step of an open revert");
                return -EINVAL;
        }
}

/* Deletes the pre-revert branch revert t->cut kept for mb: what only it holds
 * goes, what the domain runs on or another kept branch holds stays. Done when
 * the record is gone, so a resent DELETE finds nothing left to do. */
int txn_drop_branch(struct txn_mgr *mg, struct txn *t, struct member *mb, lserr *err)
{
        struct hv_image tops[HV_MAX_DISKS];
        _cleanup_free_ char(*keep)[HV_PATH_MAX] = NULL;
        _cleanup_free_ const char **keepp = NULL;
        size_t n = 0, n_keep = 0;
        int r = branch_record_read(mg->cfg->journal_dir, t->cut, mb->vm, tops, &n, err);

        if (r == -ENOENT || (r == 0 && n == 0)) {
                txn_member_note(mb, "no pre-revert branch of %s here (deleted already)", t->cut);
                return 0;
        }
        if (r < 0)
                return r;
        r = branch_record_others(mg->cfg->journal_dir, mb->vm, t->cut, &keep, &n_keep, err);
        if (r < 0)
                return r;
        keepp = calloc(n_keep + 1, sizeof(*keepp));
        if (!keepp)
                return -ENOMEM;
        for (size_t j = 0; j < n_keep; j++)
                keepp[j] = keep[j];
        r = hv_drop_branch(mg->hv, mb->vm, tops, n, keepp, n_keep, &mb->removed, &mb->n_removed, err);
        if (r == 0)
                r = branch_record_remove(mg->cfg->journal_dir, t->cut, mb->vm, err);
        if (r == 0)
                txn_member_note(mb, "pre-revert branch of %s deleted: %zu file(s) removed", t->cut, mb->n_removed);
        return r;
}
