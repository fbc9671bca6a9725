/* txn: per-transaction state, the three snapshot steps, the lease thread and
 * recovery from the journal. */
#include "txn.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envelope.h"
#include "fsutil.h"
#include "imgfile.h"
#include "journal.h"
#include "log.h"
#include "notify.h"
#include "names.h"

#define MAX_PARALLEL 16
#define MSG_MAX 600

struct member {
        char vm[LS_NAME_MAX + 1];
        unsigned tier;
        int crash;       /* consistency: crash, paused instead of frozen */
        int want_freeze; /* fsfreeze is part of this member's cut */
        int want_pause;  /* vCPUs are suspended for this member's cut */
        int quiesced;    /* frozen by us and not yet thawed */
        int paused;      /* paused by us and not yet resumed */
        struct hv_image imgs[HV_MAX_DISKS];
        size_t n_imgs;
        long long freeze_us, snapshot_us, thaw_us, frozen_at_us, thawed_at_us;
        long long freeze_start_mono, thaw_done_mono;
        int code; /* Lockstep__ErrorCode */
        char msg[MSG_MAX];
        int was_running; /* revert: running at PREPARE, started again */
        int switched;    /* revert: disks point at the cut */
        struct hv_removed *removed; /* branch delete: the files removed (malloc'd) */
        size_t n_removed;
};

struct stored {
        Lockstep__Step step;
        uint32_t sub; /* the tier, for revert STOP/START */
        uint8_t *buf;
        size_t len;
};

/* FREEZE, SNAPSHOT, DECIDE; or PREPARE, STOP and START per tier, SWITCH, DECIDE. */
#define MAX_STORED (4 + 2 * 65)

struct txn {
        char txid[LS_NAME_MAX + 1];
        char snap[LS_NAME_MAX + 1]; /* the cut's name: only older cuts' files carry it */
        char cut[LS_NAME_MAX + 1];  /* the cut's txid (delete, revert): files carry it */
        Lockstep__Mode mode;
        Lockstep__JournalState state;
        int decided, lease_expired;
        long long lease_deadline_mono, lease_deadline_unix;
        long long finished_mono; /* when it reached COMMITTED/ABORTED, for pruning */
        struct member *m;
        size_t n;
        struct stored replies[MAX_STORED];
        size_t n_replies;
        int revert, undo;
        int check; /* a CHECK: validated only, never listed */
        int branch; /* a DELETE of revert `cut`'s pre-revert branch */
        char *pre_hook, *post_hook; /* FREEZE's guest hooks, NULL for none */
        unsigned hook_timeout_ms;
        pthread_mutex_t lock; /* one step at a time */
        struct txn *next;
};

struct txn_mgr {
        const struct cfg_agent *cfg;
        struct hv *hv;
        struct guardian *g;
        pthread_mutex_t lock; /* the list and member ownership */
        struct txn *list;
        pthread_t reaper;
        pthread_cond_t wake;
        int stop, reaper_started;
};

/* ---- helpers ---------------------------------------------------------- */

static int hold_members(const Lockstep__JournalState s, int decided)
{
        /* Members stay held while frozen or while overlays wait for a decision. */
        return s == LOCKSTEP__JOURNAL_STATE__J_FREEZING || s == LOCKSTEP__JOURNAL_STATE__J_FROZEN ||
               s == LOCKSTEP__JOURNAL_STATE__J_SNAPPING || s == LOCKSTEP__JOURNAL_STATE__J_DELETING ||
               (s >= LOCKSTEP__JOURNAL_STATE__J_R_PREPARED && s <= LOCKSTEP__JOURNAL_STATE__J_R_STARTED) ||
               (s == LOCKSTEP__JOURNAL_STATE__J_SNAPPED && !decided);
}

static Lockstep__TxnState wire_state(Lockstep__JournalState s)
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

static Lockstep__ErrorCode wire_code(int r)
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

static void member_fail(const struct txn_mgr *mg, struct member *mb, Lockstep__ErrorCode code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Records the first failure of a member, prefixed "<vm>@<host>: ". */
static void member_fail(const struct txn_mgr *mg, struct member *mb, Lockstep__ErrorCode code, const char *fmt, ...)
{
        char text[MSG_MAX - 2 * LS_NAME_MAX - 8]; /* room for the "<vm>@<host>: " prefix */
        va_list ap;

        if (mb->code != LOCKSTEP__ERROR_CODE__OK)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        mb->code = code;
        snprintf(mb->msg, sizeof(mb->msg), "%s@%s: %s", mb->vm, mg->cfg->id, text);
}

static void member_note(struct member *mb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What a step did to a member that went well: the operator's progress per
 * member. A failure's message (member_fail) is never overwritten. */
static void member_note(struct member *mb, const char *fmt, ...)
{
        va_list ap;

        if (mb->code != LOCKSTEP__ERROR_CODE__OK)
                return;
        va_start(ap, fmt);
        vsnprintf(mb->msg, sizeof(mb->msg), fmt, ap);
        va_end(ap);
}

static Lockstep__ErrorCode first_code(const struct txn *t)
{
        for (size_t i = 0; i < t->n; i++)
                if (t->m[i].code != LOCKSTEP__ERROR_CODE__OK)
                        return t->m[i].code;
        return LOCKSTEP__ERROR_CODE__OK;
}

static struct txn *find_txn(struct txn_mgr *mg, const char *txid)
{
        for (struct txn *t = mg->list; t; t = t->next)
                if (!strcmp(t->txid, txid))
                        return t;
        return NULL;
}

/* Which open transaction holds vm, if any (mg->lock held). */
static struct txn *holder(struct txn_mgr *mg, const char *vm, const struct txn *except)
{
        for (struct txn *t = mg->list; t; t = t->next) {
                if (t == except || !hold_members(t->state, t->decided))
                        continue;
                for (size_t i = 0; i < t->n; i++)
                        if (!strcmp(t->m[i].vm, vm))
                                return t;
        }
        return NULL;
}

static struct txn *txn_new(const char *txid)
{
        struct txn *t = calloc(1, sizeof(*t));

        if (!t)
                return NULL;
        snprintf(t->txid, sizeof(t->txid), "%s", txid);
        pthread_mutex_init(&t->lock, NULL);
        return t;
}

static void txn_free(struct txn *t)
{
        free(t->pre_hook);
        free(t->post_hook);
        for (size_t i = 0; i < t->n_replies; i++)
                free(t->replies[i].buf);
        pthread_mutex_destroy(&t->lock);
        for (size_t i = 0; t->m && i < t->n; i++)
                free(t->m[i].removed);
        free(t->m);
        free(t);
}

static const struct stored *stored_reply(const struct txn *t, Lockstep__Step step, uint32_t sub)
{
        for (size_t i = 0; i < t->n_replies; i++)
                if (t->replies[i].step == step && t->replies[i].sub == sub)
                        return &t->replies[i];
        return NULL;
}

/* The tier a revert STOP/START acts on: it keys the stored reply. */
static uint32_t step_sub(const Lockstep__Command *cmd)
{
        if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_STOP)
                return cmd->revert_stop->tier;
        if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_START)
                return cmd->revert_start->tier;
        return 0;
}

/* ---- journal and replies ------------------------------------------------ */

/* The reply of a step, from the transaction's members. Packed, malloc'd. */
static int pack_reply(const struct txn_mgr *mg, const struct txn *t, Lockstep__Step step, Lockstep__ErrorCode code,
                      const char *message, uint8_t **ret, size_t *ret_len)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        Lockstep__MemberResult *mr = calloc(t->n ? t->n : 1, sizeof(*mr));
        Lockstep__MemberResult **mrp = calloc(t->n ? t->n : 1, sizeof(*mrp));
        Lockstep__Timings *tm = calloc(t->n ? t->n : 1, sizeof(*tm));
        size_t n_removed = 0;
        for (size_t i = 0; i < t->n; i++)
                n_removed += t->m[i].n_removed;
        Lockstep__DiskImage *di = calloc(t->n * HV_MAX_DISKS + n_removed + 1, sizeof(*di));
        Lockstep__DiskImage **dip = calloc(t->n * HV_MAX_DISKS + n_removed + 1, sizeof(*dip));
        size_t nd = 0, n;
        int r = 0;

        if (!mr || !mrp || !tm || !di || !dip) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < t->n; i++) {
                const struct member *mb = &t->m[i];
                lockstep__member_result__init(&mr[i]);
                lockstep__timings__init(&tm[i]);
                tm[i].freeze_us = (uint64_t)mb->freeze_us;
                tm[i].snapshot_us = (uint64_t)mb->snapshot_us;
                tm[i].thaw_us = (uint64_t)mb->thaw_us;
                tm[i].frozen_at_us = mb->frozen_at_us;
                tm[i].thawed_at_us = mb->thawed_at_us;
                if (mb->thaw_done_mono && mb->freeze_start_mono)
                        tm[i].frozen_for_us = (uint64_t)(mb->thaw_done_mono - mb->freeze_start_mono);
                mr[i].vm = (char *)mb->vm;
                mr[i].code = mb->code;
                mr[i].message = (char *)mb->msg;
                mr[i].timings = &tm[i];
                mr[i].disks = &dip[nd];
                for (size_t k = 0; k < mb->n_imgs; k++) {
                        lockstep__disk_image__init(&di[nd]);
                        di[nd].disk = (char *)mb->imgs[k].target;
                        di[nd].before = (char *)mb->imgs[k].before;
                        di[nd].after = (char *)mb->imgs[k].after;
                        di[nd].branch = (char *)mb->imgs[k].branch;
                        dip[nd] = &di[nd];
                        nd++;
                        mr[i].n_disks++;
                }
                /* A branch delete lists each file it removed as an "after". */
                for (size_t k = 0; k < mb->n_removed; k++) {
                        lockstep__disk_image__init(&di[nd]);
                        di[nd].disk = (char *)mb->removed[k].target;
                        di[nd].after = (char *)mb->removed[k].path;
                        dip[nd] = &di[nd];
                        nd++;
                        mr[i].n_disks++;
                }
                mrp[i] = &mr[i];
        }
        rep.txid = (char *)t->txid;
        rep.step = step;
        rep.code = code;
        rep.message = (char *)(message ? message : "");
        rep.state = wire_state(t->state);
        rep.lease_max_ms = t->check ? mg->cfg->lease_max_s * 1000u : 0;
        rep.n_members = t->n;
        rep.members = mrp;
        n = lockstep__reply__get_packed_size(&rep);
        *ret = malloc(n ? n : 1);
        if (!*ret) {
                r = -ENOMEM;
                goto out;
        }
        lockstep__reply__pack(&rep, *ret);
        *ret_len = n;
out:
        free(mr);
        free(mrp);
        free(tm);
        free(di);
        free(dip);
        return r;
}

/* Writes the transaction's journal record. */
static int persist(struct txn_mgr *mg, const struct txn *t, lserr *err)
{
        Lockstep__JournalTxn jt = LOCKSTEP__JOURNAL_TXN__INIT;
        Lockstep__JournalMember *jm = calloc(t->n ? t->n : 1, sizeof(*jm));
        Lockstep__JournalMember **jmp = calloc(t->n ? t->n : 1, sizeof(*jmp));
        Lockstep__Member *mem = calloc(t->n ? t->n : 1, sizeof(*mem));
        Lockstep__Timings *tm = calloc(t->n ? t->n : 1, sizeof(*tm));
        Lockstep__DiskImage *di = calloc(t->n * HV_MAX_DISKS + 1, sizeof(*di));
        Lockstep__DiskImage **dip = calloc(t->n * HV_MAX_DISKS + 1, sizeof(*dip));
        Lockstep__JournalReply jr[MAX_STORED], *jrp[MAX_STORED];
        size_t nd = 0;
        int r;

        if (!jm || !jmp || !mem || !tm || !di || !dip) {
                r = lserr_set(err, -ENOMEM, "journal: out of memory");
                goto out;
        }
        for (size_t i = 0; i < t->n; i++) {
                const struct member *mb = &t->m[i];
                lockstep__journal_member__init(&jm[i]);
                lockstep__member__init(&mem[i]);
                lockstep__timings__init(&tm[i]);
                mem[i].vm = (char *)mb->vm;
                mem[i].tier = mb->tier;
                mem[i].consistency = mb->crash ? LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH
                                               : LOCKSTEP__CONSISTENCY__CONSISTENCY_QUIESCE;
                tm[i].freeze_us = (uint64_t)mb->freeze_us;
                tm[i].snapshot_us = (uint64_t)mb->snapshot_us;
                tm[i].thaw_us = (uint64_t)mb->thaw_us;
                tm[i].frozen_at_us = mb->frozen_at_us;
                tm[i].thawed_at_us = mb->thawed_at_us;
                jm[i].member = &mem[i];
                /* Intent, not only fact: recovery undoes what may have happened. */
                jm[i].quiesced = mb->quiesced || (t->state == LOCKSTEP__JOURNAL_STATE__J_FREEZING && mb->want_freeze);
                jm[i].paused = mb->paused || (t->state == LOCKSTEP__JOURNAL_STATE__J_FREEZING && mb->want_pause);
                jm[i].timings = &tm[i];
                jm[i].code = mb->code;
                jm[i].message = (char *)mb->msg;
                jm[i].was_running = mb->was_running;
                jm[i].switched = mb->switched;
                jm[i].disks = &dip[nd];
                for (size_t k = 0; k < mb->n_imgs; k++) {
                        lockstep__disk_image__init(&di[nd]);
                        di[nd].disk = (char *)mb->imgs[k].target;
                        di[nd].before = (char *)mb->imgs[k].before;
                        di[nd].after = (char *)mb->imgs[k].after;
                        di[nd].branch = (char *)mb->imgs[k].branch;
                        dip[nd] = &di[nd];
                        nd++;
                        jm[i].n_disks++;
                }
                jmp[i] = &jm[i];
        }
        for (size_t i = 0; i < t->n_replies; i++) {
                lockstep__journal_reply__init(&jr[i]);
                jr[i].step = t->replies[i].step;
                jr[i].sub = t->replies[i].sub;
                jr[i].reply.data = t->replies[i].buf;
                jr[i].reply.len = t->replies[i].len;
                jrp[i] = &jr[i];
        }
        jt.version = JOURNAL_VERSION;
        jt.txid = (char *)t->txid;
        jt.snapshot = (char *)t->snap;
        jt.cut_txid = (char *)t->cut;
        jt.mode = t->mode;
        jt.state = t->state;
        jt.lease_deadline_us = t->lease_deadline_unix;
        jt.n_members = t->n;
        jt.members = jmp;
        jt.n_replies = t->n_replies;
        jt.replies = jrp;
        jt.decided = t->decided;
        jt.lease_expired = t->lease_expired;
        jt.revert = t->revert;
        jt.undo = t->undo;
        jt.updated_us = fsutil_now_us();
        r = journal_write(mg->cfg->journal_dir, &jt, err);
out:
        free(jm);
        free(jmp);
        free(mem);
        free(tm);
        free(di);
        free(dip);
        return r;
}

/* Journals, or logs loudly: a journal that cannot be written is a disk problem
 * the operator must see, but the guests must still be thawed. */
static int persist_or_log(struct txn_mgr *mg, const struct txn *t)
{
        lserr err = {0};
        int r = persist(mg, t, &err);

        if (r < 0)
                log_err("txid=%s journal write failed: %s", t->txid, err.msg);
        return r;
}

/* Stores the reply of a step and journals it with the state, then hands a copy
 * to the caller. */
static int finish_step_sub(struct txn_mgr *mg, struct txn *t, Lockstep__Step step, uint32_t sub,
                           Lockstep__ErrorCode code, const char *message, uint8_t **ret, size_t *ret_len)
{
        uint8_t *buf;
        size_t len;
        int r = pack_reply(mg, t, step, code, message, &buf, &len);

        if (r < 0)
                return r;
        if (t->n_replies < MAX_STORED) {
                t->replies[t->n_replies].step = step;
                t->replies[t->n_replies].sub = sub;
                t->replies[t->n_replies].buf = buf;
                t->replies[t->n_replies].len = len;
                t->n_replies++;
        }
        persist_or_log(mg, t);
        *ret = malloc(len ? len : 1);
        if (!*ret)
                return -ENOMEM;
        memcpy(*ret, buf, len);
        *ret_len = len;
        if (t->n_replies == 0 || t->replies[t->n_replies - 1].buf != buf)
                free(buf);
        return 0;
}

static int finish_step(struct txn_mgr *mg, struct txn *t, Lockstep__Step step, Lockstep__ErrorCode code,
                       const char *message, uint8_t **ret, size_t *ret_len)
{
        return finish_step_sub(mg, t, step, 0, code, message, ret, ret_len);
}

/* A reply for a command that never became a transaction step. */
static int plain_reply(const char *txid, Lockstep__Step step, Lockstep__ErrorCode code, const char *message,
                       uint8_t **ret, size_t *ret_len)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        size_t n;

        rep.txid = (char *)txid;
        rep.step = step;
        rep.code = code;
        rep.message = (char *)message;
        n = lockstep__reply__get_packed_size(&rep);
        *ret = malloc(n ? n : 1);
        if (!*ret)
                return -ENOMEM;
        lockstep__reply__pack(&rep, *ret);
        *ret_len = n;
        return 0;
}

/* ---- undo: thaw and resume ---------------------------------------------- */

/* Thaws/resumes one member. Returns 0 when nothing of ours is left on it. */
static int undo_member(struct txn_mgr *mg, struct txn *t, struct member *mb, int report_early)
{
        lserr err = {0};
        long long t0 = fsutil_mono_us();
        int r, rc = 0;

        if (mb->paused) {
                r = hv_resume(mg->hv, mb->vm, &err);
                if (r < 0 && r != LS_ENODOMAIN) {
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_THAW_FAILED, "resume: %s", err.msg);
                        log_err("txid=%s vm=%s resume failed, will retry: %s", t->txid, mb->vm, err.msg);
                        rc = r;
                } else {
                        mb->paused = 0;
                }
        }
        if (mb->quiesced) {
                lserr_clear(&err);
                r = hv_thaw(mg->hv, mb->vm, &err);
                if (r < 0 && r != LS_ENODOMAIN) {
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_THAW_FAILED, "thaw: %s", err.msg);
                        log_err("txid=%s vm=%s thaw failed, will retry: %s", t->txid, mb->vm, err.msg);
                        rc = rc ? rc : r;
                } else {
                        mb->quiesced = 0;
                        /* A guest that thawed on its own before its snapshot makes
                         * that snapshot untrusted. */
                        if (r == 0 && report_early)
                                member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_THAWED_EARLY,
                                            "thaw: filesystems were no longer frozen: the guest thawed on its own "
                                            "before the snapshot");
                }
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

static void undo_all(struct txn_mgr *mg, struct txn *t)
{
        for (size_t i = t->n; i-- > 0;)
                if (t->m[i].quiesced || t->m[i].paused)
                        undo_member(mg, t, &t->m[i], 0);
}

/* ---- parallel helpers ----------------------------------------------------- */

struct job {
        struct txn_mgr *mg;
        struct txn *t;
        struct member *mb;
        int (*fn)(struct txn_mgr *, struct txn *, struct member *);
        int result;
};

static void *job_main(void *p)
{
        struct job *j = p;

        j->result = j->fn(j->mg, j->t, j->mb);
        return NULL;
}

/* Runs fn on every member of tier `tier`, up to MAX_PARALLEL at once. */
static void run_tier(struct txn_mgr *mg, struct txn *t, unsigned tier,
                     int (*fn)(struct txn_mgr *, struct txn *, struct member *))
{
        struct job jobs[MAX_PARALLEL];
        pthread_t th[MAX_PARALLEL];
        size_t i = 0;

        while (i < t->n) {
                int k = 0;
                for (; i < t->n && k < MAX_PARALLEL; i++) {
                        if (t->m[i].tier != tier)
                                continue;
                        jobs[k] = (struct job){.mg = mg, .t = t, .mb = &t->m[i], .fn = fn};
                        if (pthread_create(&th[k], NULL, job_main, &jobs[k]) != 0)
                                job_main(&jobs[k]), th[k] = 0;
                        k++;
                }
                for (int j = 0; j < k; j++)
                        if (th[j])
                                pthread_join(th[j], NULL);
        }
}

static unsigned max_tier(const struct txn *t)
{
        unsigned mx = 0;

        for (size_t i = 0; i < t->n; i++)
                if (t->m[i].tier > mx)
                        mx = t->m[i].tier;
        return mx;
}

/* Adds a new transaction to the open ones, taking its members: a member that
 * another open transaction holds is marked E_BUSY. Returns with t->lock held,
 * t in state `state` (or ABORTED when a member was busy) and 1 when a member
 * was busy; -EEXIST (t not added) when the same txid is being worked on by a
 * resend right now: the caller answers "resend" and frees t. */
static int enlist(struct txn_mgr *mg, struct txn *t, Lockstep__JournalState state, const char *step)
{
        int busy = 0;

        pthread_mutex_lock(&mg->lock);
        if (find_txn(mg, t->txid)) {
                pthread_mutex_unlock(&mg->lock);
                return -EEXIST;
        }
        for (size_t i = 0; i < t->n; i++) {
                struct txn *h = holder(mg, t->m[i].vm, NULL);
                if (h) {
                        member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BUSY,
                                    "%s: held by transaction %s; try again when it is finished", step, h->txid);
                        busy = 1;
                }
        }
        pthread_mutex_lock(&t->lock);
        t->state = busy ? LOCKSTEP__JOURNAL_STATE__J_ABORTED : state;
        t->next = mg->list;
        mg->list = t;
        pthread_mutex_unlock(&mg->lock);
        return busy;
}

/* ---- FREEZE --------------------------------------------------------------- */

static int validate_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        int r;

        mb->want_pause = mb->crash || t->mode != LOCKSTEP__MODE__MODE_QUIESCE;
        mb->want_freeze = !mb->crash && t->mode != LOCKSTEP__MODE__MODE_MEMORY;
        /* Every file the cut will create is checked here, before any guest of
         * this agent is frozen: a cut that cannot succeed freezes nobody. */
        r = hv_check(mg->hv, mb->vm, t->txid,
                     (mb->want_freeze ? HV_CHECK_QUIESCE : 0u) |
                             (t->mode == LOCKSTEP__MODE__MODE_MEMORY ? HV_CHECK_MEMORY : 0u),
                     &err);
        if (r < 0) {
                member_fail(mg, mb, wire_code(r), "validate: %s", err.msg);
                return r;
        }
        if (!mb->want_freeze)
                return 0;
        lserr_clear(&err);
        r = hv_ga_ping(mg->hv, mb->vm, (int)mg->cfg->guest_agent_timeout_s, &err);
        if (r < 0 && t->mode == LOCKSTEP__MODE__MODE_PAUSE) {
                /* Pause mode freezes filesystems only where a guest agent answers. */
                mb->want_freeze = 0;
                return 0;
        }
        if (r < 0)
                member_fail(mg, mb, wire_code(r), "validate: %s", err.msg);
        return r;
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
                member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_INTERNAL,
                            "freeze: the lease guardian process is gone; refusing to freeze without it");
                return -EPIPE;
        }
        /* The group's pre-freeze hook (flush a database...): a failure is a no. */
        if (t->pre_hook && !mb->crash) {
                r = hv_guest_run(mg->hv, mb->vm, t->pre_hook, t->hook_timeout_ms, &err);
                if (r < 0) {
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED, "pre-freeze hook: %s", err.msg);
                        return r;
                }
                lserr_clear(&err);
        }
        if (mb->want_freeze) {
                /* Marked before the call: a freeze that times out may still land. */
                mb->quiesced = 1;
                r = hv_freeze(mg->hv, mb->vm, &err);
                if (r < 0) {
                        member_fail(mg, mb, r == LS_EGATIMEOUT ? LOCKSTEP__ERROR_CODE__E_GUEST_AGENT_TIMEOUT
                                                               : LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED,
                                    "freeze: %s", err.msg);
                        return r;
                }
        }
        if (mb->want_pause) {
                lserr_clear(&err);
                mb->paused = 1;
                r = hv_suspend(mg->hv, mb->vm, &err);
                if (r < 0) {
                        mb->paused = 0;
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, "suspend: %s", err.msg);
                        return r;
                }
        }
        mb->freeze_us = fsutil_mono_us() - mb->freeze_start_mono;
        /* Said in the result, so the report shows how each member was held. */
        if (mb->crash)
                snprintf(mb->msg, sizeof(mb->msg), "paused, not frozen (consistency: crash, no guest agent)");
        else if (mb->want_pause)
                snprintf(mb->msg, sizeof(mb->msg), "%s", mb->want_freeze ? "frozen and paused" : "paused (no guest agent answered)");
        log_info("txid=%s step=FREEZE vm=%s %s dur_ms=%.1f", t->txid, mb->vm,
                 mb->want_freeze && mb->want_pause ? "frozen+paused" : mb->want_pause ? "paused" : "frozen",
                 (double)mb->freeze_us / 1000.0);
        return 0;
}

static int do_freeze(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const Lockstep__FreezeRequest *fr = cmd->freeze;
        unsigned lease_ms = fr->lease_ms;
        char message[MSG_MAX] = "";
        struct txn *t;
        int failed = 0;

        if (lease_ms > mg->cfg->lease_max_s * 1000u)
                lease_ms = mg->cfg->lease_max_s * 1000u;
        if (fr->n_members == 0)
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                   "freeze: no members given", ret, ret_len);
        t = txn_new(cmd->txid);
        if (!t)
                return -ENOMEM;
        t->m = calloc(fr->n_members, sizeof(*t->m));
        if (!t->m) {
                txn_free(t);
                return -ENOMEM;
        }
        snprintf(t->snap, sizeof(t->snap), "%s", fr->snapshot);
        snprintf(t->cut, sizeof(t->cut), "%s", cmd->txid);
        t->mode = fr->mode;
        t->pre_hook = fr->pre_freeze_hook[0] ? strdup(fr->pre_freeze_hook) : NULL;
        t->post_hook = fr->post_thaw_hook[0] ? strdup(fr->post_thaw_hook) : NULL;
        t->hook_timeout_ms = fr->hook_timeout_ms ? fr->hook_timeout_ms : 10000;
        t->n = fr->n_members;
        t->state = LOCKSTEP__JOURNAL_STATE__J_NONE;
        for (size_t i = 0; i < t->n; i++) {
                snprintf(t->m[i].vm, sizeof(t->m[i].vm), "%s", fr->members[i]->vm);
                t->m[i].tier = fr->members[i]->tier;
                t->m[i].crash = fr->members[i]->consistency == LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
                for (size_t k = 0; k < i; k++)
                        if (!strcmp(t->m[k].vm, t->m[i].vm))
                                member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                            "freeze: listed twice in one transaction");
        }

        /* Take the members or refuse: a member in another open transaction. */
        failed = enlist(mg, t, LOCKSTEP__JOURNAL_STATE__J_FREEZING, "freeze");
        if (failed < 0) {
                /* Raced with a resend of the same FREEZE: the caller retries and
                 * gets the stored reply. */
                txn_free(t);
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BUSY,
                                   "freeze: this transaction is being prepared; resend", ret, ret_len);
        }
        for (size_t i = 0; i < t->n; i++)
                failed |= t->m[i].code != LOCKSTEP__ERROR_CODE__OK;
        /* Validate everything before touching any guest. */
        for (unsigned tier = 0; !failed && tier <= max_tier(t); tier++)
                run_tier(mg, t, tier, validate_member);
        for (size_t i = 0; i < t->n; i++)
                failed |= t->m[i].code != LOCKSTEP__ERROR_CODE__OK;

        if (!failed) {
                t->lease_deadline_mono = fsutil_mono_us() + (long long)lease_ms * 1000;
                t->lease_deadline_unix = fsutil_now_us() + (long long)lease_ms * 1000;
                t->state = LOCKSTEP__JOURNAL_STATE__J_FREEZING;
                if (persist_or_log(mg, t) < 0) {
                        snprintf(message, sizeof(message), "%s: freeze: journal cannot be written; nothing frozen",
                                 mg->cfg->id);
                        failed = 1;
                }
        }
        /* Front tiers first; members of one tier in parallel. */
        for (unsigned tier = 0; !failed && tier <= max_tier(t); tier++) {
                run_tier(mg, t, tier, freeze_member);
                for (size_t i = 0; i < t->n; i++)
                        failed |= t->m[i].code != LOCKSTEP__ERROR_CODE__OK;
        }
        if (failed) {
                /* A partial freeze is undone before voting no. */
                undo_all(mg, t);
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                t->finished_mono = fsutil_mono_us();
                if (!message[0])
                        snprintf(message, sizeof(message), "%s: freeze: voted no", mg->cfg->id);
                log_warn("txid=%s step=FREEZE voted no", t->txid);
        } else {
                t->state = LOCKSTEP__JOURNAL_STATE__J_FROZEN;
                log_info("txid=%s step=FREEZE voted yes members=%zu lease_ms=%u", t->txid, t->n, lease_ms);
        }
        int r = finish_step(mg, t, cmd->step, failed ? LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED : LOCKSTEP__ERROR_CODE__OK,
                            message, ret, ret_len);
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* ---- CHECK ---------------------------------------------------------------- */

/* FREEZE's validation of every member, and nothing else: no member is taken,
 * frozen or journaled, and nothing is remembered of the check. A member that
 * an open transaction holds is reported busy, as FREEZE would find it. */
static int do_check(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const Lockstep__CheckRequest *cr = cmd->check;
        char message[MSG_MAX] = "";
        Lockstep__ErrorCode code = LOCKSTEP__ERROR_CODE__OK;
        struct txn *t;
        int r;

        if (cr->n_members == 0)
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, "check: no members given",
                                   ret, ret_len);
        t = txn_new(cmd->txid);
        if (!t || !(t->m = calloc(cr->n_members, sizeof(*t->m)))) {
                if (t)
                        txn_free(t);
                return -ENOMEM;
        }
        t->check = 1;
        t->mode = cr->mode;
        snprintf(t->cut, sizeof(t->cut), "%s", cmd->txid);
        t->n = cr->n_members;
        pthread_mutex_lock(&mg->lock);
        for (size_t i = 0; i < t->n; i++) {
                struct txn *h;
                snprintf(t->m[i].vm, sizeof(t->m[i].vm), "%s", cr->members[i]->vm);
                t->m[i].tier = cr->members[i]->tier;
                t->m[i].crash = cr->members[i]->consistency == LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
                h = holder(mg, t->m[i].vm, NULL);
                if (h)
                        member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BUSY,
                                    "check: held by transaction %s; a cut now would be refused", h->txid);
        }
        pthread_mutex_unlock(&mg->lock);
        for (unsigned tier = 0; tier <= max_tier(t); tier++)
                run_tier(mg, t, tier, validate_member);
        /* FREEZE would quietly shorten a longer lease: the operator should know
         * first, on every member it would hold. */
        for (size_t i = 0; cr->lease_ms > mg->cfg->lease_max_s * 1000u && i < t->n; i++)
                member_fail(mg, &t->m[i], LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                            "check: lease of %u s is above this agent's lease_max_s %u: a cut would be held at most "
                            "%u s",
                            cr->lease_ms / 1000, mg->cfg->lease_max_s, mg->cfg->lease_max_s);
        code = first_code(t);
        if (code != LOCKSTEP__ERROR_CODE__OK)
                snprintf(message, sizeof(message), "%s: check: a cut would be refused", mg->cfg->id);
        r = pack_reply(mg, t, cmd->step, code, message, ret, ret_len);
        log_info("txid=%s step=CHECK members=%zu %s", t->txid, t->n,
                 code == LOCKSTEP__ERROR_CODE__OK ? "ok" : "would refuse");
        txn_free(t);
        return r;
}

/* ---- SNAPSHOT ------------------------------------------------------------- */

static void expire_lease(struct txn_mgr *mg, struct txn *t)
{
        undo_all(mg, t);
        t->lease_expired = 1;
        t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
        t->finished_mono = fsutil_mono_us();
        persist_or_log(mg, t);
        log_warn("txid=%s lease expired while frozen: thawed, the transaction can only abort", t->txid);
}

static int snapshot_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        long long t0;
        int r;

        /* A late snapshot would break the cut: never take one after the lease. */
        if (fsutil_mono_us() >= t->lease_deadline_mono) {
                member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED, "snapshot: lease expired before it");
                return LS_ETIMEDOUT;
        }
        t0 = fsutil_mono_us();
        r = hv_snapshot(mg->hv, mb->vm, t->txid, t->mode == LOCKSTEP__MODE__MODE_MEMORY, mb->imgs, &mb->n_imgs, &err);
        mb->snapshot_us = fsutil_mono_us() - t0;
        if (r < 0)
                member_fail(mg, mb, r == LS_ENOSPACE || r == -ENOSPC ? LOCKSTEP__ERROR_CODE__E_NO_SPACE
                                                                     : LOCKSTEP__ERROR_CODE__E_SNAPSHOT_FAILED,
                            "snapshot: %s", err.msg);
        /* Thaw at once: a member is frozen only until its own snapshot. */
        undo_member(mg, t, mb, r == 0);
        if (t->post_hook && !mb->crash && !mb->quiesced && !mb->paused) {
                lserr hook_err = {0};
                /* After the thaw: a failure is reported, the cut stands. */
                if (hv_guest_run(mg->hv, mb->vm, t->post_hook, t->hook_timeout_ms, &hook_err) < 0) {
                        log_warn("txid=%s vm=%s post-thaw hook failed: %s", t->txid, mb->vm, hook_err.msg);
                        snprintf(mb->msg, sizeof(mb->msg), "post-thaw hook failed: %.400s", hook_err.msg);
                }
        }
        log_info("txid=%s step=SNAPSHOT vm=%s %s snap_ms=%.1f thaw_ms=%.1f frozen_ms=%.1f", t->txid, mb->vm,
                 mb->code == LOCKSTEP__ERROR_CODE__OK ? "ok" : "failed", (double)mb->snapshot_us / 1000.0,
                 (double)mb->thaw_us / 1000.0, (double)(mb->thaw_done_mono - mb->freeze_start_mono) / 1000.0);
        return r;
}

static int do_snapshot(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                       size_t *ret_len)
{
        char message[MSG_MAX] = "";
        int failed = 0;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_FROZEN || t->lease_expired ||
            fsutil_mono_us() >= t->lease_deadline_mono) {
                int expired = t->lease_expired || t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN;
                if (t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN)
                        expire_lease(mg, t);
                snprintf(message, sizeof(message), "%s: snapshot: %s", mg->cfg->id,
                         expired ? "lease expired: members were thawed, the cut can only abort"
                                 : "refused: the transaction is not frozen");
                return finish_step(mg, t, cmd->step,
                                   expired ? LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED : LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                   message, ret, ret_len);
        }
        t->state = LOCKSTEP__JOURNAL_STATE__J_SNAPPING;
        if (persist_or_log(mg, t) < 0) {
                undo_all(mg, t);
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                t->finished_mono = fsutil_mono_us();
                snprintf(message, sizeof(message), "%s: snapshot: journal cannot be written; thawed", mg->cfg->id);
                return finish_step(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__E_INTERNAL, message, ret, ret_len);
        }
        /* Back tiers first; one member at a time, each thawed right after its own
         * snapshot. */
        for (unsigned tier = max_tier(t) + 1; tier-- > 0;)
                for (size_t i = 0; i < t->n; i++)
                        if (t->m[i].tier == tier && snapshot_member(mg, t, &t->m[i]) < 0)
                                failed = 1;
        for (size_t i = 0; i < t->n; i++)
                failed |= t->m[i].code != LOCKSTEP__ERROR_CODE__OK;
        undo_all(mg, t); /* anything a failure left frozen */
        t->state = LOCKSTEP__JOURNAL_STATE__J_SNAPPED;
        if (failed)
                snprintf(message, sizeof(message), "%s: snapshot: failed for at least one member", mg->cfg->id);
        return finish_step(mg, t, cmd->step, failed ? LOCKSTEP__ERROR_CODE__E_SNAPSHOT_FAILED : LOCKSTEP__ERROR_CODE__OK,
                           message, ret, ret_len);
}

/* ---- DECIDE --------------------------------------------------------------- */

static int discard_member(struct txn_mgr *mg, struct txn *t, struct member *mb)
{
        lserr err = {0};
        int r;

        if (mb->n_imgs == 0)
                return 0;
        r = hv_discard(mg->hv, mb->vm, t->txid, mb->imgs, mb->n_imgs, &err);
        if (r < 0) {
                /* Keep the images: a resent ABORT tries again. */
                log_err("txid=%s vm=%s discard failed: %s", t->txid, mb->vm, err.msg);
                snprintf(mb->msg, sizeof(mb->msg), "%s@%s: discard: %s", mb->vm, mg->cfg->id, err.msg);
                mb->code = LOCKSTEP__ERROR_CODE__E_DISCARD_FAILED;
                return r;
        }
        log_info("txid=%s step=DECIDE vm=%s discarded %zu overlay(s)", t->txid, mb->vm, mb->n_imgs);
        mb->n_imgs = 0;
        return 0;
}

static int do_decide(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                     size_t *ret_len)
{
        int commit = cmd->decide->decision == LOCKSTEP__DECISION__DECISION_COMMIT;
        char message[MSG_MAX] = "";
        int failed = 0;

        if (commit) {
                int ok = t->state == LOCKSTEP__JOURNAL_STATE__J_SNAPPED;
                for (size_t i = 0; ok && i < t->n; i++)
                        ok = t->m[i].code == LOCKSTEP__ERROR_CODE__OK;
                if (!ok) {
                        snprintf(message, sizeof(message),
                                 "%s: decide: cannot commit transaction %s: it is not fully snapshotted", mg->cfg->id,
                                 t->txid);
                        return plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret,
                                           ret_len);
                }
                t->decided = 1;
                t->state = LOCKSTEP__JOURNAL_STATE__J_COMMITTED;
                log_info("txid=%s step=DECIDE committed", t->txid);
        } else {
                undo_all(mg, t);
                for (size_t i = 0; i < t->n; i++)
                        if (discard_member(mg, t, &t->m[i]) < 0)
                                failed = 1;
                if (failed) {
                        /* Not stored: a resent ABORT must try again. */
                        persist_or_log(mg, t);
                        snprintf(message, sizeof(message), "%s: decide: abort could not discard every overlay",
                                 mg->cfg->id);
                        return pack_reply(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__E_DISCARD_FAILED, message, ret,
                                          ret_len);
                }
                t->decided = 1;
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                log_info("txid=%s step=DECIDE aborted", t->txid);
        }
        t->finished_mono = fsutil_mono_us();
        return finish_step(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
}

/* ---- DELETE ------------------------------------------------------------- */

static int drop_branch(struct txn_mgr *mg, struct txn *t, struct member *mb, lserr *err);

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

/* Merges a committed cut's overlays into their backing images, member by
 * member. Each member's chain stays valid at every step and a resent or
 * repeated DELETE finishes what a failure left, so nothing is journaled but the
 * reply. Members are held while it runs. */
static int do_delete(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const Lockstep__DeleteRequest *dr = cmd->delete_;
        char message[MSG_MAX] = "";
        struct txn *t;
        int failed = 0;

        if (dr->n_members == 0)
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, "delete: no members given",
                                   ret, ret_len);
        t = txn_new(cmd->txid);
        if (!t || !(t->m = calloc(dr->n_members, sizeof(*t->m)))) {
                if (t)
                        txn_free(t);
                return -ENOMEM;
        }
        snprintf(t->snap, sizeof(t->snap), "%s", dr->snapshot);
        snprintf(t->cut, sizeof(t->cut), "%s", dr->cut_txid);
        t->branch = dr->branch;
        t->n = dr->n_members;
        for (size_t i = 0; i < t->n; i++) {
                snprintf(t->m[i].vm, sizeof(t->m[i].vm), "%s", dr->members[i]->vm);
                t->m[i].tier = dr->members[i]->tier;
        }
        failed = enlist(mg, t, LOCKSTEP__JOURNAL_STATE__J_DELETING, "delete");
        if (failed < 0) {
                txn_free(t);
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BUSY,
                                   "delete: this transaction is in progress; resend", ret, ret_len);
        }

        for (size_t i = 0; t->branch && !failed && i < t->n; i++) {
                struct member *mb = &t->m[i];
                lserr err = {0};
                long long t0 = fsutil_mono_us();
                int r = drop_branch(mg, t, mb, &err);
                mb->snapshot_us = fsutil_mono_us() - t0;
                if (r < 0) {
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_DELETE_FAILED, "delete branch: %s", err.msg);
                        failed = 1;
                }
                log_info("txid=%s step=DELETE vm=%s branch of %s %s removed=%zu dur_ms=%.1f", t->txid, mb->vm, t->cut,
                         r < 0 ? "failed" : "ok", mb->n_removed, (double)mb->snapshot_us / 1000.0);
        }
        for (size_t i = 0; !t->branch && !failed && i < t->n; i++) {
                struct member *mb = &t->m[i];
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
                if (r < 0) {
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_DELETE_FAILED, "delete: %s", err.msg);
                        failed = 1;
                }
                log_info("txid=%s step=DELETE vm=%s cut=%s %s merged=%zu dur_ms=%.1f", t->txid, mb->vm, t->cut,
                         r < 0 ? "failed" : "ok", mb->n_imgs, (double)mb->snapshot_us / 1000.0);
        }
        t->decided = 1;
        t->state = failed ? LOCKSTEP__JOURNAL_STATE__J_ABORTED : LOCKSTEP__JOURNAL_STATE__J_COMMITTED;
        t->finished_mono = fsutil_mono_us();
        if (failed)
                snprintf(message, sizeof(message), "%s: delete of cut %s did not finish; every chain is valid, "
                         "deleting again finishes it", mg->cfg->id, t->cut);
        int r = finish_step(mg, t, cmd->step, failed ? LOCKSTEP__ERROR_CODE__E_DELETE_FAILED : LOCKSTEP__ERROR_CODE__OK,
                            message, ret, ret_len);
        pthread_mutex_unlock(&t->lock);
        return r;
}

/* ---- REVERT ------------------------------------------------------------- */

#define REVERT_START_WAIT_US (120LL * 1000000)

/* Where a revert keeps each member's pre-revert branch, durably and beyond the
 * journal's pruning, so "revert --undo" can find it months later. */
static int branch_path(const struct txn_mgr *mg, const char *txid, const char *vm, char *out, size_t n)
{
        return snprintf(out, n, "%s/branches/%s.%s", mg->cfg->journal_dir, txid, vm) >= (int)n ? -ENAMETOOLONG : 0;
}

static int write_branch(struct txn_mgr *mg, const struct txn *t, const struct member *mb, lserr *err)
{
        char dir[4200], path[4200], text[HV_MAX_DISKS * (HV_PATH_MAX + HV_TARGET_MAX + 4)];
        size_t off = 0;
        int r;

        snprintf(dir, sizeof(dir), "%s/branches", mg->cfg->journal_dir);
        r = fsutil_mkdir_p(dir, 0700, err);
        if (r < 0)
                return r;
        if (branch_path(mg, t->txid, mb->vm, path, sizeof(path)) < 0)
                return lserr_set(err, -ENAMETOOLONG, "revert: branch record path too long");
        for (size_t k = 0; k < mb->n_imgs; k++)
                off += (size_t)snprintf(text + off, sizeof(text) - off, "%s %s\n", mb->imgs[k].target,
                                        mb->imgs[k].branch);
        return fsutil_write_atomic(path, text, off, 0600, 0, err);
}

/* The disk tops a branch record of revert `of` names for mb ("target path" lines);
 * 0 with n 0 when there is no record. */
static int branch_record(struct txn_mgr *mg, const char *of, const char *vm, struct hv_image *ret, size_t *ret_n,
                         lserr *err)
{
        char path[4200], *buf = NULL, *line, *save = NULL;
        size_t len;
        int r;

        *ret_n = 0;
        if (branch_path(mg, of, vm, path, sizeof(path)) < 0)
                return lserr_set(err, -ENAMETOOLONG, "branch record path too long");
        r = fsutil_read_all(path, 1 << 20, &buf, &len, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return lserr_set(err, r, "%s: branch record \"%s\": cannot read it", vm, path);
        for (line = strtok_r(buf, "\n", &save); line && *ret_n < HV_MAX_DISKS; line = strtok_r(NULL, "\n", &save)) {
                struct hv_image *im = &ret[*ret_n];
                char target[HV_TARGET_MAX], p[HV_PATH_MAX];
                if (sscanf(line, "%31s %1023[^\n]", target, p) != 2)
                        continue;
                memset(im, 0, sizeof(*im));
                snprintf(im->target, sizeof(im->target), "%s", target);
                snprintf(im->branch, sizeof(im->branch), "%s", p);
                (*ret_n)++;
        }
        free(buf);
        return 0;
}

/* Deletes the pre-revert branch revert t->cut kept for mb: what only it holds
 * goes, what the domain runs on or another kept branch holds stays. Done when
 * the record is gone, so a resent DELETE finds nothing left to do. */
static int drop_branch(struct txn_mgr *mg, struct txn *t, struct member *mb, lserr *err)
{
        struct hv_image tops[HV_MAX_DISKS], other[HV_MAX_DISKS];
        char dirpath[4200], rec[4200], suffix[LS_NAME_MAX + 2];
        char(*keep)[HV_PATH_MAX] = NULL;
        const char **keepp = NULL;
        size_t n = 0, n_keep = 0, cap = 0, sl;
        DIR *dir = NULL;
        struct dirent *de;
        int r = branch_record(mg, t->cut, mb->vm, tops, &n, err);

        if (r < 0 || n == 0) {
                if (r == 0)
                        member_note(mb, "no pre-revert branch of %s here (deleted already)", t->cut);
                return r;
        }
        /* Every other branch record of this VM: those branches stay whole. */
        snprintf(dirpath, sizeof(dirpath), "%s/branches", mg->cfg->journal_dir);
        snprintf(suffix, sizeof(suffix), ".%s", mb->vm);
        sl = strlen(suffix);
        dir = opendir(dirpath);
        while (dir && (de = readdir(dir))) {
                size_t nl = strlen(de->d_name), k = 0;
                char of[LS_NAME_MAX + 1];
                if (nl <= sl || strcmp(de->d_name + nl - sl, suffix) || nl - sl > LS_NAME_MAX)
                        continue;
                snprintf(of, sizeof(of), "%.*s", (int)(nl - sl), de->d_name);
                if (!strcmp(of, t->cut))
                        continue;
                r = branch_record(mg, of, mb->vm, other, &k, err);
                for (size_t j = 0; r == 0 && j < k; j++) {
                        if (n_keep == cap) {
                                void *p = realloc(keep, (cap = cap ? cap * 2 : 16) * sizeof(*keep));
                                if (!p) {
                                        r = -ENOMEM;
                                        break;
                                }
                                keep = p;
                        }
                        memcpy(keep[n_keep++], other[j].branch, HV_PATH_MAX);
                }
                if (r < 0)
                        goto out;
        }
        keepp = calloc(n_keep + 1, sizeof(*keepp));
        if (!keepp) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t j = 0; j < n_keep; j++)
                keepp[j] = keep[j];
        r = hv_drop_branch(mg->hv, mb->vm, tops, n, keepp, n_keep, &mb->removed, &mb->n_removed, err);
        if (r == 0 && branch_path(mg, t->cut, mb->vm, rec, sizeof(rec)) == 0 && unlink(rec) < 0 && errno != ENOENT)
                r = lserr_set(err, -errno, "%s: drop branch: remove its record \"%s\": %m", mb->vm, rec);
        if (r == 0)
                member_note(mb, "pre-revert branch of %s deleted: %zu file(s) removed", t->cut, mb->n_removed);
out:
        if (dir)
                closedir(dir);
        free(keep);
        free(keepp);
        return r;
}

/* Undo: the disks go back to what revert `of` found them on. */
static int read_branch(struct txn_mgr *mg, const char *of, struct member *mb, lserr *err)
{
        char path[4200], *buf = NULL, *line, *save = NULL;
        struct hv_domain d;
        size_t len;
        int r;

        if (branch_path(mg, of, mb->vm, path, sizeof(path)) < 0)
                return lserr_set(err, -ENAMETOOLONG, "revert: branch record path too long");
        r = fsutil_read_all(path, 1 << 20, &buf, &len, NULL);
        if (r < 0)
                return lserr_set(err, LS_EIMAGE, "%s: prepare: no pre-revert branch of revert %s here (\"%s\")", mb->vm,
                                 of, path);
        r = hv_lookup(mg->hv, mb->vm, &d, err);
        mb->n_imgs = 0;
        for (line = strtok_r(buf, "\n", &save); r == 0 && line; line = strtok_r(NULL, "\n", &save)) {
                struct hv_image *im = &mb->imgs[mb->n_imgs];
                char target[HV_TARGET_MAX], p[HV_PATH_MAX];
                if (mb->n_imgs == HV_MAX_DISKS || sscanf(line, "%31s %1023[^\n]", target, p) != 2)
                        continue;
                memset(im, 0, sizeof(*im));
                snprintf(im->target, sizeof(im->target), "%s", target);
                snprintf(im->before, sizeof(im->before), "%s", p);
                for (unsigned k = 0; k < d.n_disks; k++)
                        if (!strcmp(d.disks[k].target, target))
                                snprintf(im->branch, sizeof(im->branch), "%s", d.disks[k].path);
                mb->n_imgs++;
        }
        free(buf);
        if (r == 0)
                r = hv_check_images(mg->hv, mb->vm, mb->imgs, mb->n_imgs, err);
        return r;
}

static const Lockstep__MemberDisks *images_of(const Lockstep__RevertPrepareRequest *rp, const char *vm)
{
        for (size_t i = 0; i < rp->n_images; i++)
                if (rp->images[i]->vm && !strcmp(rp->images[i]->vm, vm))
                        return rp->images[i];
        return NULL;
}

/* The cut's images as the coordinator's catalog records them: they hold the
 * cut wherever the disks point now (the cut reverted to once already, a cut on
 * a pre-revert branch). Every disk of the domain must be named once. */
static int given_images(struct txn_mgr *mg, struct member *mb, const struct hv_domain *d,
                        const Lockstep__MemberDisks *md, lserr *err)
{
        if (md->n_disks != d->n_disks)
                return lserr_set(err, LS_EIMAGE, "%s: prepare: the cut has %zu disk(s), the domain has %u", mb->vm,
                                 md->n_disks, d->n_disks);
        for (unsigned i = 0; i < d->n_disks; i++) {
                const Lockstep__DiskImage *di = NULL;
                for (size_t k = 0; k < md->n_disks; k++)
                        if (md->disks[k]->disk && !strcmp(md->disks[k]->disk, d->disks[i].target))
                                di = md->disks[k];
                if (!di)
                        return lserr_set(err, LS_EIMAGE, "%s: prepare: disk %s is not in the cut", mb->vm,
                                         d->disks[i].target);
                if (!di->before || di->before[0] != '/' || strlen(di->before) >= HV_PATH_MAX ||
                    strpbrk(di->before, "\n\r"))
                        return lserr_set(err, LS_EIMAGE, "%s: prepare: disk %s: the cut's image is not an absolute path",
                                         mb->vm, d->disks[i].target);
                memset(&mb->imgs[i], 0, sizeof(mb->imgs[i]));
                snprintf(mb->imgs[i].target, HV_TARGET_MAX, "%s", d->disks[i].target);
                snprintf(mb->imgs[i].before, HV_PATH_MAX, "%s", di->before);
                snprintf(mb->imgs[i].branch, HV_PATH_MAX, "%s", d->disks[i].path);
        }
        mb->n_imgs = d->n_disks;
        return hv_check_images(mg->hv, mb->vm, mb->imgs, mb->n_imgs, err);
}

static int do_revert_prepare(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const Lockstep__RevertPrepareRequest *rp = cmd->revert_prepare;
        char message[MSG_MAX] = "";
        struct txn *t;
        int failed;

        if (rp->n_members == 0)
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, "revert: no members given",
                                   ret, ret_len);
        t = txn_new(cmd->txid);
        if (!t || !(t->m = calloc(rp->n_members, sizeof(*t->m)))) {
                if (t)
                        txn_free(t);
                return -ENOMEM;
        }
        snprintf(t->snap, sizeof(t->snap), "%s", rp->snapshot);
        snprintf(t->cut, sizeof(t->cut), "%s", rp->cut_txid);
        t->n = rp->n_members;
        t->revert = 1;
        t->undo = rp->undo;
        for (size_t i = 0; i < t->n; i++) {
                snprintf(t->m[i].vm, sizeof(t->m[i].vm), "%s", rp->members[i]->vm);
                t->m[i].tier = rp->members[i]->tier;
                t->m[i].crash = rp->members[i]->consistency == LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
        }
        failed = enlist(mg, t, LOCKSTEP__JOURNAL_STATE__J_R_PREPARED, "revert");
        if (failed < 0) {
                txn_free(t);
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BUSY,
                                   "revert: this transaction is being prepared; resend", ret, ret_len);
        }
        /* Everything is checked before anything is touched. */
        for (size_t i = 0; !failed && i < t->n; i++) {
                struct member *mb = &t->m[i];
                struct hv_domain d;
                lserr err = {0};
                int r = hv_lookup(mg->hv, mb->vm, &d, &err);
                if (r == 0) {
                        const Lockstep__MemberDisks *md = images_of(rp, mb->vm);
                        mb->was_running = d.state == HV_RUNNING || d.state == HV_PAUSED;
                        if (t->undo)
                                r = read_branch(mg, rp->cut_txid, mb, &err);
                        else if (md)
                                r = given_images(mg, mb, &d, md, &err);
                        else
                                r = hv_cut_images(mg->hv, mb->vm, t->cut, t->snap, mb->imgs, &mb->n_imgs, &err);
                }
                if (r < 0) {
                        member_fail(mg, mb, wire_code(r), "%s", err.msg);
                        failed = 1;
                }
        }
        if (failed) {
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                t->finished_mono = fsutil_mono_us();
                snprintf(message, sizeof(message), "%s: revert: prepare failed; nothing was touched", mg->cfg->id);
        } else {
                log_info("txid=%s step=REVERT_PREPARE %s of %s: %zu member(s) ready", t->txid,
                         t->undo ? "undo" : "revert", rp->cut_txid, t->n);
        }
        int r = finish_step(mg, t, cmd->step, failed ? first_code(t) : LOCKSTEP__ERROR_CODE__OK, message, ret,
                            ret_len);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int do_revert_stop(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                          size_t *ret_len)
{
        unsigned tier = cmd->revert_stop->tier, timeout = cmd->revert_stop->shutdown_timeout_ms;
        int failed = 0;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_PREPARED && t->state != LOCKSTEP__JOURNAL_STATE__J_R_STOPPED)
                return plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                   "revert: stop is allowed only after prepare", ret, ret_len);
        t->state = LOCKSTEP__JOURNAL_STATE__J_R_STOPPED;
        for (size_t i = 0; i < t->n; i++) {
                struct member *mb = &t->m[i];
                lserr err = {0};
                long long t0 = fsutil_mono_us();
                if (mb->tier != tier)
                        continue;
                if (hv_stop(mg->hv, mb->vm, timeout ? timeout : 60000, &err) < 0) {
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_INTERNAL, "stop: %s", err.msg);
                        failed = 1;
                } else if (mb->was_running) {
                        member_note(mb, "stopped in %.1f s", (double)(fsutil_mono_us() - t0) / 1e6);
                } else {
                        member_note(mb, "was shut off already");
                }
                log_info("txid=%s step=REVERT_STOP vm=%s tier=%u dur_ms=%.1f", t->txid, mb->vm, tier,
                         (double)(fsutil_mono_us() - t0) / 1000.0);
        }
        return finish_step_sub(mg, t, cmd->step, tier, failed ? first_code(t) : LOCKSTEP__ERROR_CODE__OK, "", ret,
                               ret_len);
}

static int do_revert_switch(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                            size_t *ret_len)
{
        int failed = 0;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_STOPPED)
                return plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
                                   "revert: switch is allowed only after stop", ret, ret_len);
        /* The intent first: a crash from here on goes back to the branch. */
        t->state = LOCKSTEP__JOURNAL_STATE__J_R_SWITCHING;
        if (persist_or_log(mg, t) < 0)
                return finish_step(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__E_INTERNAL,
                                   "revert: journal cannot be written; nothing switched", ret, ret_len);
        for (size_t i = 0; !failed && i < t->n; i++) {
                struct member *mb = &t->m[i];
                lserr err = {0};
                int r = write_branch(mg, t, mb, &err);
                if (r == 0) {
                        mb->switched = 1; /* before the act: recovery undoes what may have happened */
                        r = hv_point_disks(mg->hv, mb->vm, mb->imgs, mb->n_imgs, t->undo ? NULL : t->txid, &err);
                }
                if (r < 0) {
                        member_fail(mg, mb, LOCKSTEP__ERROR_CODE__E_INTERNAL, "switch: %s", err.msg);
                        failed = 1;
                } else if (mb->n_imgs) {
                        member_note(mb, "%zu disk(s) on %s", mb->n_imgs,
                                    t->undo || !mb->imgs[0].after[0] ? mb->imgs[0].before : mb->imgs[0].after);
                }
                persist_or_log(mg, t); /* which members are switched, and onto what */
                log_info("txid=%s step=REVERT_SWITCH vm=%s %s", t->txid, mb->vm, r < 0 ? "failed" : "ok");
                /* Crash tests: LOCKSTEP_FAILPOINT=agent-mid-switch stops the agent
                 * with one member switched and the others not, to be killed there. */
                if (i == 0 && getenv("LOCKSTEP_FAILPOINT") && !strcmp(getenv("LOCKSTEP_FAILPOINT"), "agent-mid-switch")) {
                        log_warn("failpoint agent-mid-switch reached: stopping here until killed");
                        for (;;)
                                pause();
                }
        }
        t->state = LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED;
        return finish_step(mg, t, cmd->step, failed ? first_code(t) : LOCKSTEP__ERROR_CODE__OK, "", ret, ret_len);
}

/* Starts a member and waits until its guest agent answers (crash-consistent
 * members have none to wait for); *ret_how says how it came back. */
static int start_member(struct txn_mgr *mg, struct txn *t, struct member *mb, const char **ret_how, lserr *err)
{
        long long deadline = fsutil_mono_us() + REVERT_START_WAIT_US;
        char mem[HV_PATH_MAX] = "";
        int r;

        /* A memory-mode cut saved the memory state beside its first image: the
         * guest comes back running from it, without a reboot. Cuts made before
         * names stopped growing named it after the image and the cut's name. */
        if (!t->undo && mb->n_imgs &&
            (imgfile_memory(mb->imgs[0].before, mb->vm, t->cut, mem, sizeof(mem)) < 0 || access(mem, R_OK) < 0) &&
            imgfile_legacy(mb->imgs[0].before, t->snap, "mem", mem, sizeof(mem)) < 0)
                mem[0] = '\0';
        *ret_how = "booted";
        if (mem[0] && access(mem, R_OK) == 0) {
                *ret_how = "restored running from its memory state";
                r = hv_restore(mg->hv, mb->vm, mem, err);
                log_info("txid=%s vm=%s restored from memory state %s: %s", t->txid, mb->vm, mem, r < 0 ? "failed" : "ok");
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
                        return lserr_set(err, LS_ENOGA, "%s: start: guest agent did not answer within %lld s", mb->vm,
                                         REVERT_START_WAIT_US / 1000000);
                usleep(250000);
        }
}

static int do_revert_start(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                           size_t *ret_len)
{
        unsigned tier = cmd->revert_start->tier;
        int failed = 0;

        if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED && t->state != LOCKSTEP__JOURNAL_STATE__J_R_STARTED)
                return plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE,
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
                        member_note(mb, "left shut off, as it was");
                        continue;
                }
                if (start_member(mg, t, mb, &how, &err) < 0) {
                        member_fail(mg, mb, wire_code(err.code), "start: %s", err.msg);
                        failed = 1;
                } else {
                        member_note(mb, "%s, %s after %.1f s", how,
                                    mb->crash ? "running (no guest agent to wait for)" : "guest agent answered",
                                    (double)(fsutil_mono_us() - t0) / 1e6);
                }
                log_info("txid=%s step=REVERT_START vm=%s tier=%u dur_ms=%.1f", t->txid, mb->vm, tier,
                         (double)(fsutil_mono_us() - t0) / 1000.0);
        }
        return finish_step_sub(mg, t, cmd->step, tier, failed ? first_code(t) : LOCKSTEP__ERROR_CODE__OK, "", ret,
                               ret_len);
}

/* Puts every switched member back on its pre-revert branch and starts what was
 * running: the one undo path, for ABORT and for recovery. */
static int revert_rollback(struct txn_mgr *mg, struct txn *t)
{
        int failed = 0;

        for (size_t i = 0; i < t->n; i++) {
                struct member *mb = &t->m[i];
                struct hv_image back[HV_MAX_DISKS];
                lserr err = {0};
                int r = 0;
                if (mb->switched) {
                        r = hv_stop(mg->hv, mb->vm, 30000, &err);
                        for (size_t k = 0; k < mb->n_imgs; k++) {
                                memset(&back[k], 0, sizeof(back[k]));
                                snprintf(back[k].target, HV_TARGET_MAX, "%s", mb->imgs[k].target);
                                snprintf(back[k].before, HV_PATH_MAX, "%s", mb->imgs[k].branch);
                        }
                        if (r == 0)
                                r = hv_point_disks(mg->hv, mb->vm, back, mb->n_imgs, NULL, &err);
                        /* The overlay made on the cut is ours to remove; an undo made none. */
                        for (size_t k = 0; r == 0 && !t->undo && k < mb->n_imgs; k++)
                                if (mb->imgs[k].after[0] && strcmp(mb->imgs[k].after, mb->imgs[k].branch) &&
                                    unlink(mb->imgs[k].after) < 0 && errno != ENOENT)
                                        r = lserr_set(&err, -errno, "remove \"%s\": %m", mb->imgs[k].after);
                        if (r == 0)
                                mb->switched = 0;
                }
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
                char rec[4200];
                if (branch_path(mg, t->txid, t->m[i].vm, rec, sizeof(rec)) == 0)
                        unlink(rec);
        }
        persist_or_log(mg, t);
        return failed ? -EIO : 0;
}

static int do_revert_decide(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                            size_t *ret_len)
{
        int commit = cmd->revert_decide->decision == LOCKSTEP__DECISION__DECISION_COMMIT;
        char message[MSG_MAX] = "";

        if (commit) {
                if (t->state != LOCKSTEP__JOURNAL_STATE__J_R_STARTED && t->state != LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED) {
                        snprintf(message, sizeof(message), "%s: revert %s cannot commit: not switched", mg->cfg->id,
                                 t->txid);
                        return plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret, ret_len);
                }
                t->state = LOCKSTEP__JOURNAL_STATE__J_COMMITTED;
                log_info("txid=%s step=REVERT_DECIDE committed", t->txid);
                /* After an undo the VMs run on what revert t->cut kept: no
                 * branch of its is left to keep (this undo keeps its own). */
                for (size_t i = 0; t->undo && i < t->n; i++) {
                        char rec[4200];
                        if (branch_path(mg, t->cut, t->m[i].vm, rec, sizeof(rec)) == 0)
                                unlink(rec);
                }
        } else {
                if (revert_rollback(mg, t) < 0) {
                        snprintf(message, sizeof(message), "%s: revert %s: rollback to the pre-revert branch failed",
                                 mg->cfg->id, t->txid);
                        return pack_reply(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__E_INTERNAL, message, ret, ret_len);
                }
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                log_info("txid=%s step=REVERT_DECIDE aborted: members back on their pre-revert branch", t->txid);
        }
        t->decided = 1;
        t->finished_mono = fsutil_mono_us();
        return finish_step(mg, t, cmd->step, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
}

/* ---- entry points ---------------------------------------------------------- */

int txn_step(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len)
{
        const struct stored *s;
        struct txn *t;
        char message[MSG_MAX];
        int r;

        pthread_mutex_lock(&mg->lock);
        t = find_txn(mg, cmd->txid);
        pthread_mutex_unlock(&mg->lock);
        if (!t) {
                if (cmd->step == LOCKSTEP__STEP__STEP_FREEZE)
                        return do_freeze(mg, cmd, ret, ret_len);
                if (cmd->step == LOCKSTEP__STEP__STEP_CHECK)
                        return do_check(mg, cmd, ret, ret_len);
                if (cmd->step == LOCKSTEP__STEP__STEP_DELETE)
                        return do_delete(mg, cmd, ret, ret_len);
                if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_PREPARE)
                        return do_revert_prepare(mg, cmd, ret, ret_len);
                if (cmd->step == LOCKSTEP__STEP__STEP_REVERT_DECIDE &&
                    cmd->revert_decide->decision == LOCKSTEP__DECISION__DECISION_ABORT) {
                        snprintf(message, sizeof(message), "%s: revert: unknown transaction, nothing to undo",
                                 mg->cfg->id);
                        return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
                }
                if (cmd->step == LOCKSTEP__STEP__STEP_DECIDE &&
                    cmd->decide->decision == LOCKSTEP__DECISION__DECISION_ABORT) {
                        /* Presumed abort: nothing of it ever happened here. */
                        snprintf(message, sizeof(message), "%s: decide: unknown transaction, nothing to undo",
                                 mg->cfg->id);
                        return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__OK, message, ret, ret_len);
                }
                snprintf(message, sizeof(message), "%s: %s: unknown transaction \"%s\"", mg->cfg->id,
                         env_step_name(cmd->step), cmd->txid);
                return plain_reply(cmd->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_UNKNOWN_TXN, message, ret, ret_len);
        }
        /* Lists are only ever prepended and pruned by the reaper under both
         * locks, so t stays valid while we wait for its lock. */
        pthread_mutex_lock(&t->lock);
        s = stored_reply(t, cmd->step, step_sub(cmd));
        if (s && (cmd->step == LOCKSTEP__STEP__STEP_DECIDE || cmd->step == LOCKSTEP__STEP__STEP_REVERT_DECIDE) &&
            ((cmd->step == LOCKSTEP__STEP__STEP_DECIDE ? cmd->decide->decision : cmd->revert_decide->decision) ==
             LOCKSTEP__DECISION__DECISION_COMMIT) != (t->state == LOCKSTEP__JOURNAL_STATE__J_COMMITTED)) {
                /* Same step, other decision: never pretend it went the asked way. */
                snprintf(message, sizeof(message), "%s: decide: transaction %s was already %s", mg->cfg->id, t->txid,
                         t->state == LOCKSTEP__JOURNAL_STATE__J_COMMITTED ? "committed" : "aborted");
                r = plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret, ret_len);
        } else if (s) {
                *ret = malloc(s->len ? s->len : 1);
                r = *ret ? 0 : -ENOMEM;
                if (r == 0) {
                        memcpy(*ret, s->buf, s->len);
                        *ret_len = s->len;
                }
                log_info("txid=%s step=%s resent: same reply", t->txid, env_step_name(cmd->step));
        } else if (t->revert && cmd->step == LOCKSTEP__STEP__STEP_REVERT_STOP) {
                r = do_revert_stop(mg, t, cmd, ret, ret_len);
        } else if (t->revert && cmd->step == LOCKSTEP__STEP__STEP_REVERT_SWITCH) {
                r = do_revert_switch(mg, t, cmd, ret, ret_len);
        } else if (t->revert && cmd->step == LOCKSTEP__STEP__STEP_REVERT_START) {
                r = do_revert_start(mg, t, cmd, ret, ret_len);
        } else if (t->revert && cmd->step == LOCKSTEP__STEP__STEP_REVERT_DECIDE) {
                r = do_revert_decide(mg, t, cmd, ret, ret_len);
        } else if (!t->revert && cmd->step == LOCKSTEP__STEP__STEP_SNAPSHOT) {
                r = do_snapshot(mg, t, cmd, ret, ret_len);
        } else if (!t->revert && cmd->step == LOCKSTEP__STEP__STEP_DECIDE) {
                r = do_decide(mg, t, cmd, ret, ret_len);
        } else {
                snprintf(message, sizeof(message), "%s: %s: not allowed for transaction %s in its state",
                         mg->cfg->id, env_step_name(cmd->step), t->txid);
                r = plain_reply(t->txid, cmd->step, LOCKSTEP__ERROR_CODE__E_BAD_STATE, message, ret, ret_len);
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

int txn_in_doubt(struct txn_mgr *mg, Lockstep__InDoubt ***ret, size_t *ret_n)
{
        Lockstep__InDoubt **v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        pthread_mutex_lock(&mg->lock);
        for (struct txn *t = mg->list; t; t = t->next) {
                Lockstep__InDoubt *d;
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
                d = calloc(1, sizeof(*d));
                if (!d) {
                        r = -ENOMEM;
                        break;
                }
                lockstep__in_doubt__init(d);
                d->txid = strdup(t->txid);
                d->state = wire_state(t->state);
                d->revert = t->revert;
                d->vms = calloc(t->n ? t->n : 1, sizeof(char *));
                v[n++] = d;
                if (!d->txid || !d->vms) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t i = 0; i < t->n; i++)
                        if ((d->vms[d->n_vms] = strdup(t->m[i].vm)))
                                d->n_vms++;
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
        for (size_t i = 0; i < n; i++) {
                for (size_t k = 0; k < v[i]->n_vms; k++)
                        free(v[i]->vms[k]);
                free(v[i]->vms);
                free(v[i]->txid);
                free(v[i]);
        }
        free(v);
}

/* ---- the lease thread ------------------------------------------------------ */

static void tick(struct txn_mgr *mg)
{
        long long now = fsutil_mono_us();
        struct txn **pp;

        pthread_mutex_lock(&mg->lock);
        for (pp = &mg->list; *pp;) {
                struct txn *t = *pp;
                /* A step in progress checks the lease itself. */
                if (pthread_mutex_trylock(&t->lock) != 0) {
                        pp = &t->next;
                        continue;
                }
                if (t->state == LOCKSTEP__JOURNAL_STATE__J_FROZEN && now >= t->lease_deadline_mono)
                        expire_lease(mg, t);
                /* Hung guests: keep trying until what we froze is thawed. */
                for (size_t i = 0; i < t->n; i++)
                        if ((t->m[i].quiesced || t->m[i].paused) && t->state != LOCKSTEP__JOURNAL_STATE__J_FROZEN &&
                            t->state != LOCKSTEP__JOURNAL_STATE__J_FREEZING &&
                            t->state != LOCKSTEP__JOURNAL_STATE__J_SNAPPING && undo_member(mg, t, &t->m[i], 0) == 0)
                                persist_or_log(mg, t);
                /* A decided transaction only answers resends from its stored
                 * replies: its members (tens of KiB each) go a second later, so
                 * an hour of remembered transactions stays small. */
                if (t->m && t->finished_mono && t->decided && now - t->finished_mono > TXN_COMPACT_US) {
                        int held = 0;
                        for (size_t i = 0; i < t->n; i++)
                                held |= t->m[i].quiesced || t->m[i].paused;
                        for (size_t i = 0; !held && i < t->n; i++)
                                free(t->m[i].removed);
                        if (!held) {
                                free(t->m);
                                t->m = NULL;
                                t->n = 0;
                        }
                }
                if (t->finished_mono && t->decided && now - t->finished_mono > TXN_KEEP_US) {
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
}

static void *reaper_main(void *p)
{
        struct txn_mgr *mg = p;
        /* The systemd watchdog watches this loop: it is the one that ends
         * leases, so a stall here is what must get the agent restarted. */
        long long wd_us = (long long)notify_watchdog_ms() * 500, last_ping = 0;

        pthread_mutex_lock(&mg->lock);
        while (!mg->stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += TXN_TICK_US * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&mg->wake, &mg->lock, &ts);
                if (mg->stop)
                        break;
                pthread_mutex_unlock(&mg->lock);
                tick(mg);
                if (wd_us && fsutil_mono_us() - last_ping >= wd_us) {
                        notify_watchdog();
                        last_ping = fsutil_mono_us();
                }
                pthread_mutex_lock(&mg->lock);
        }
        pthread_mutex_unlock(&mg->lock);
        return NULL;
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
        if (pthread_create(&mg->reaper, NULL, reaper_main, mg) != 0) {
                txn_mgr_free(mg);
                return lserr_set(err, -EAGAIN, "transactions: cannot start the lease thread");
        }
        mg->reaper_started = 1;
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
                        expire_lease(mg, t);
                } else {
                        undo_all(mg, t);
                }
                pthread_mutex_unlock(&t->lock);
        }
        pthread_mutex_unlock(&mg->lock);
}

struct txn_mgr *txn_mgr_free(struct txn_mgr *mg)
{
        if (!mg)
                return NULL;
        if (mg->reaper_started) {
                pthread_mutex_lock(&mg->lock);
                mg->stop = 1;
                pthread_cond_signal(&mg->wake);
                pthread_mutex_unlock(&mg->lock);
                pthread_join(mg->reaper, NULL);
        }
        while (mg->list) {
                struct txn *t = mg->list;
                mg->list = t->next;
                txn_free(t);
        }
        pthread_cond_destroy(&mg->wake);
        pthread_mutex_destroy(&mg->lock);
        free(mg);
        return NULL;
}

/* ---- recovery -------------------------------------------------------------- */

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

static void recover_one(void *arg, const Lockstep__JournalTxn *jt)
{
        struct recover_ctx *rc = arg;
        struct txn_mgr *mg = rc->mg;
        struct txn *t = txn_new(jt->txid);

        if (!t || !(t->m = calloc(jt->n_members ? jt->n_members : 1, sizeof(*t->m)))) {
                if (t)
                        txn_free(t);
                rc->bad++;
                return;
        }
        snprintf(t->snap, sizeof(t->snap), "%s", jt->snapshot);
        snprintf(t->cut, sizeof(t->cut), "%s", jt->cut_txid);
        t->mode = jt->mode;
        t->state = jt->state;
        t->decided = jt->decided;
        t->lease_expired = jt->lease_expired;
        t->lease_deadline_unix = jt->lease_deadline_us;
        t->n = jt->n_members;
        for (size_t i = 0; i < t->n; i++) {
                const Lockstep__JournalMember *jm = jt->members[i];
                struct member *mb = &t->m[i];
                snprintf(mb->vm, sizeof(mb->vm), "%s", jm->member->vm);
                mb->tier = jm->member->tier;
                mb->crash = jm->member->consistency == LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH;
                mb->quiesced = jm->quiesced;
                mb->paused = jm->paused;
                mb->code = jm->code;
                snprintf(mb->msg, sizeof(mb->msg), "%s", jm->message);
                mb->was_running = jm->was_running;
                mb->switched = jm->switched;
                if (jm->timings) {
                        mb->freeze_us = (long long)jm->timings->freeze_us;
                        mb->snapshot_us = (long long)jm->timings->snapshot_us;
                        mb->thaw_us = (long long)jm->timings->thaw_us;
                        mb->frozen_at_us = jm->timings->frozen_at_us;
                        mb->thawed_at_us = jm->timings->thawed_at_us;
                }
                for (size_t k = 0; k < jm->n_disks && k < HV_MAX_DISKS; k++) {
                        snprintf(mb->imgs[k].target, HV_TARGET_MAX, "%s", jm->disks[k]->disk);
                        snprintf(mb->imgs[k].before, HV_PATH_MAX, "%s", jm->disks[k]->before);
                        snprintf(mb->imgs[k].after, HV_PATH_MAX, "%s", jm->disks[k]->after);
                        snprintf(mb->imgs[k].branch, HV_PATH_MAX, "%s", jm->disks[k]->branch);
                        mb->n_imgs++;
                }
        }
        t->revert = jt->revert;
        t->undo = jt->undo;
        for (size_t i = 0; i < jt->n_replies && t->n_replies < MAX_STORED; i++) {
                struct stored *s = &t->replies[t->n_replies];
                s->buf = malloc(jt->replies[i]->reply.len ? jt->replies[i]->reply.len : 1);
                if (!s->buf)
                        continue;
                memcpy(s->buf, jt->replies[i]->reply.data, jt->replies[i]->reply.len);
                s->len = jt->replies[i]->reply.len;
                s->step = jt->replies[i]->step;
                s->sub = jt->replies[i]->sub;
                t->n_replies++;
        }

        if (t->revert) {
                switch (t->state) {
                case LOCKSTEP__JOURNAL_STATE__J_R_SWITCHING:
                case LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED:
                        /* A crash may have hit between a switch and its journal
                         * record: treat every member as switched (pointing a disk at
                         * its branch again is harmless) onto the overlay the switch
                         * names for this revert. */
                        for (size_t i = 0; i < t->n; i++) {
                                t->m[i].switched = 1;
                                for (size_t k = 0; !t->undo && k < t->m[i].n_imgs; k++) {
                                        struct hv_image *im = &t->m[i].imgs[k];
                                        if (!im->after[0] &&
                                            imgfile_overlay(im->before, t->m[i].vm, im->target, t->txid, im->after,
                                                            sizeof(im->after)) < 0)
                                                im->after[0] = '\0';
                                }
                        }
                        /* fall through */
                case LOCKSTEP__JOURNAL_STATE__J_R_PREPARED:
                case LOCKSTEP__JOURNAL_STATE__J_R_STOPPED:
                        log_warn("txid=%s recovered a revert before START: back to the pre-revert branch", t->txid);
                        revert_rollback(mg, t);
                        t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                        t->finished_mono = fsutil_mono_us();
                        persist_or_log(mg, t);
                        break;
                case LOCKSTEP__JOURNAL_STATE__J_R_STARTED:
                        if (!t->decided)
                                log_info("txid=%s recovered a started revert: waiting for the decision", t->txid);
                        break;
                default:
                        t->finished_mono = fsutil_mono_us();
                        break;
                }
                goto listed;
        }
        switch (t->state) {
        case LOCKSTEP__JOURNAL_STATE__J_FREEZING:
        case LOCKSTEP__JOURNAL_STATE__J_FROZEN:
                /* The lease cannot be trusted across a restart: thaw, abort only. */
                log_warn("txid=%s recovered FROZEN: thawing, the transaction can only abort", t->txid);
                expire_lease(mg, t);
                break;
        case LOCKSTEP__JOURNAL_STATE__J_SNAPPING:
                /* Its reply was never sent, so no COMMIT can exist: discard. */
                log_warn("txid=%s recovered while snapshotting: thawing and discarding", t->txid);
                undo_all(mg, t);
                for (size_t i = 0; i < t->n; i++) {
                        find_overlays(mg, t, &t->m[i]);
                        discard_member(mg, t, &t->m[i]);
                }
                t->lease_expired = 1;
                t->state = LOCKSTEP__JOURNAL_STATE__J_ABORTED;
                t->finished_mono = fsutil_mono_us();
                persist_or_log(mg, t);
                break;
        case LOCKSTEP__JOURNAL_STATE__J_SNAPPED:
                undo_all(mg, t);
                if (!t->decided)
                        log_info("txid=%s recovered SNAPPED: overlays pending, waiting for the decision", t->txid);
                break;
        default:
                undo_all(mg, t);
                t->finished_mono = fsutil_mono_us();
                break;
        }
listed:
        pthread_mutex_lock(&mg->lock);
        t->next = mg->list;
        mg->list = t;
        pthread_mutex_unlock(&mg->lock);
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

        return journal_load(mg->cfg->journal_dir, recover_one, recover_bad, &rc, err);
}
