/* test_txn: the agent's transactions on the simulated hypervisor, step by
 * step: every transition of a cut (freeze yes/no, snapshot, commit, abort,
 * lease expiry, check, delete) and of a revert (prepare, stop, switch, start,
 * decide either way, undo, branch delete). After each step the journal record
 * is read back and must describe the live transaction exactly; crashes are
 * simulated by dropping the manager and recovering a fresh one. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "branch.h"
#include "fsutil.h"
#include "imgfile.h"
#include "journal.h"
#include "testutil.h"
#include "txn_priv.h"

#define SIM_DOMAINS                                                                                                 \
        "domain web1 disks=vda,vdb\n"                                                                               \
        "domain db1\n"                                                                                              \
        "domain noga1 ga=no\n"                                                                                      \
        "domain crash1 ga=no\n"                                                                                     \
        "domain paused1 state=paused\n"

struct fx {
        char *dir, *simcfg;
        char journal[HV_PATH_MAX], simdir[HV_PATH_MAX];
        struct cfg_agent cfg;
        struct hv *hv;
        struct txn_mgr *mg;
        uint8_t *last; /* the packed bytes of the last reply */
        size_t last_len;
        const char *hook; /* the hook FREEZE and CHECK name; NULL for none */
        int by_tier;      /* FREEZE by tier: 1 + the tier of the next freeze(); 0 not by tier */
};

/* agent.yaml's guest hooks: db1 and web1 have "flush" (each its own argv),
 * only db1 has "vacuum". */
static char *db1_flush_pre[] = { (char *)"/usr/bin/db-flush", (char *)"--all", (char *)"a b; c", NULL };
static char *db1_flush_post[] = { (char *)"/usr/bin/db-resume", NULL };
static char *web1_flush_pre[] = { (char *)"/usr/bin/sync", NULL };
static char *db1_vacuum_pre[] = { (char *)"/usr/bin/vacuumdb", NULL };
static struct cfg_hook db1_hooks[] = {
        { .name = (char *)"flush", .pre_freeze = db1_flush_pre, .post_thaw = db1_flush_post, .timeout_s = 5 },
        { .name = (char *)"vacuum", .pre_freeze = db1_vacuum_pre, .timeout_s = 5 },
};
static struct cfg_hook web1_hooks[] = {
        { .name = (char *)"flush", .pre_freeze = web1_flush_pre, .timeout_s = 5 },
};
static struct cfg_vm vms[] = {
        { .name = (char *)"db1", .hooks = db1_hooks, .n_hooks = 2 },
        { .name = (char *)"web1", .hooks = web1_hooks, .n_hooks = 1 },
};

static struct fx F;

static int setup(void **state)
{
        char text[4096];
        lserr err = {0};

        (void)state;
        memset(&F, 0, sizeof(F));
        F.dir = tu_mkdtemp();
        snprintf(F.journal, sizeof(F.journal), "%s/journal", F.dir);
        snprintf(F.simdir, sizeof(F.simdir), "%s/sim", F.dir);
        snprintf(text, sizeof(text), "state_dir %s\n" SIM_DOMAINS, F.simdir);
        F.simcfg = tu_write(F.dir, "sim.txt", text, 0600);
        F.cfg.id = "host-a";
        F.cfg.backend = "sim";
        F.cfg.sim_config = F.simcfg;
        F.cfg.journal_dir = F.journal;
        F.cfg.lease_max_s = 60;
        F.cfg.guest_agent_timeout_s = 1;
        F.cfg.min_free_mb = 1;
        /* Members through the pool, as an agent on a multi-CPU host runs them. */
        F.cfg.parallel_per_host = 4;
        F.cfg.vms = vms;
        F.cfg.n_vms = sizeof(vms) / sizeof(vms[0]);
        assert_int_equal(hv_open(&F.cfg, &F.hv, &err), 0);
        assert_int_equal(txn_mgr_new(&F.cfg, F.hv, NULL, &F.mg, &err), 0);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        F.mg = txn_mgr_free(F.mg);
        F.hv = hv_close(F.hv);
        free(F.last);
        free(F.simcfg);
        tu_rmtree(F.dir);
        return 0;
}

/* ---- the simulated host ---- */

static void sim_add(const char *line)
{
        FILE *f = fopen(F.simcfg, "a");

        assert_non_null(f);
        fprintf(f, "%s\n", line);
        fclose(f);
}

/* Takes every line equal to `line` out of the sim's configuration. */
static void sim_drop(const char *line)
{
        char buf[8192], out[8192] = "", *tok, *save = NULL;
        FILE *f = fopen(F.simcfg, "r");
        size_t n;

        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        for (tok = strtok_r(buf, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save))
                if (strcmp(tok, line) != 0) {
                        strncat(out, tok, sizeof(out) - strlen(out) - 2);
                        strcat(out, "\n");
                }
        /* Replaced whole (write, rename): the sim rereads the file while the
         * test edits it, and must never see it half written. */
        char tmp[HV_PATH_MAX + 8];
        snprintf(tmp, sizeof(tmp), "%s.new", F.simcfg);
        f = fopen(tmp, "w");
        assert_non_null(f);
        fputs(out, f);
        fclose(f);
        assert_int_equal(rename(tmp, F.simcfg), 0);
}

static int sim_state(const char *vm, const char *key, char *out, size_t n)
{
        return tu_sim_state(F.simdir, vm, key, out, n);
}

static int frozen(const char *vm)
{
        char v[16];

        return sim_state(vm, "frozen", v, sizeof(v)) && !strcmp(v, "1");
}

static enum hv_state run_state(const char *vm)
{
        char v[16];

        return sim_state(vm, "state", v, sizeof(v)) ? (enum hv_state)atoi(v) : HV_RUNNING;
}

/* The image disk i of vm runs on now. */
static const char *disk(const char *vm, unsigned i)
{
        static char out[HV_PATH_MAX];
        char key[16];

        snprintf(key, sizeof(key), "disk %u", i);
        if (!sim_state(vm, key, out, sizeof(out)))
                out[0] = '\0';
        return out;
}

static const char *base(const char *vm, const char *target)
{
        static char out[HV_PATH_MAX];

        assert_true(snprintf(out, sizeof(out), "%.900s/img/%s-%s.qcow2", F.simdir, vm, target) < (int)sizeof(out));
        return out;
}

static const char *overlay(const char *image, const char *vm, const char *target, const char *txid)
{
        static char out[HV_PATH_MAX];

        assert_int_equal(imgfile_overlay(image, vm, target, txid, out, sizeof(out)), 0);
        return out;
}

static int exists(const char *path)
{
        return access(path, F_OK) == 0;
}

/* ---- commands ---- */

struct members {
        Lockstep__Member m[8], *p[8];
        char names[8][LS_NAME_MAX + 1];
        size_t n;
};

/* "web1:0 db1:1 crash1:0:c": vm, tier, crash consistency. */
static void members(struct members *ms, const char *spec)
{
        char copy[256], *tok, *save = NULL;

        memset(ms, 0, sizeof(*ms));
        snprintf(copy, sizeof(copy), "%s", spec);
        for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                Lockstep__Member *m = &ms->m[ms->n];
                unsigned tier = 0;
                char crash = 0;
                lockstep__member__init(m);
                assert_true(sscanf(tok, "%63[^:]:%u:%c", ms->names[ms->n], &tier, &crash) >= 2);
                m->vm = ms->names[ms->n];
                m->tier = tier;
                m->consistency = crash == 'c' ? LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH
                                              : LOCKSTEP__CONSISTENCY__CONSISTENCY_QUIESCE;
                ms->p[ms->n] = m;
                ms->n++;
        }
}

/* Runs cmd; the reply, unpacked (the caller frees it), its bytes in F.last. */
static Lockstep__Reply *send(Lockstep__Command *cmd, const char *txid, Lockstep__Step step)
{
        Lockstep__Reply *rep;

        cmd->txid = (char *)txid;
        cmd->step = step;
        free(F.last);
        assert_int_equal(txn_step(F.mg, cmd, &F.last, &F.last_len), 0);
        rep = lockstep__reply__unpack(NULL, F.last_len, F.last);
        assert_non_null(rep);
        assert_string_equal(rep->txid, txid);
        assert_int_equal(rep->step, step);
        return rep;
}

static Lockstep__Reply *freeze(const char *txid, Lockstep__Mode mode, unsigned lease_ms, const char *spec)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__FreezeRequest fr = LOCKSTEP__FREEZE_REQUEST__INIT;
        struct members ms;

        members(&ms, spec);
        fr.snapshot = "s1";
        fr.mode = mode;
        fr.lease_ms = lease_ms;
        fr.members = ms.p;
        fr.n_members = ms.n;
        if (F.hook)
                fr.hook = (char *)F.hook;
        fr.by_tier = F.by_tier > 0;
        fr.tier = F.by_tier > 0 ? (unsigned)F.by_tier - 1 : 0;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
        c.freeze = &fr;
        return send(&c, txid, LOCKSTEP__STEP__STEP_FREEZE);
}

static Lockstep__Reply *snapshot(const char *txid)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__SnapshotRequest sr = LOCKSTEP__SNAPSHOT_REQUEST__INIT;

        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_SNAPSHOT;
        c.snapshot = &sr;
        return send(&c, txid, LOCKSTEP__STEP__STEP_SNAPSHOT);
}

static Lockstep__Decision decision(int commit)
{
        return commit ? LOCKSTEP__DECISION__DECISION_COMMIT : LOCKSTEP__DECISION__DECISION_ABORT;
}

static Lockstep__Reply *decide(const char *txid, int commit)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__DecideRequest dr = LOCKSTEP__DECIDE_REQUEST__INIT;

        dr.decision = decision(commit);
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DECIDE;
        c.decide = &dr;
        return send(&c, txid, LOCKSTEP__STEP__STEP_DECIDE);
}

static Lockstep__Reply *check(const char *txid, unsigned lease_ms, const char *spec)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__CheckRequest cr = LOCKSTEP__CHECK_REQUEST__INIT;
        struct members ms;

        members(&ms, spec);
        cr.mode = LOCKSTEP__MODE__MODE_QUIESCE;
        cr.lease_ms = lease_ms;
        cr.members = ms.p;
        cr.n_members = ms.n;
        if (F.hook)
                cr.hook = (char *)F.hook;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_CHECK;
        c.check = &cr;
        return send(&c, txid, LOCKSTEP__STEP__STEP_CHECK);
}

static Lockstep__Reply *delete(const char *txid, const char *cut, int branch, const char *spec)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__DeleteRequest dr = LOCKSTEP__DELETE_REQUEST__INIT;
        struct members ms;

        members(&ms, spec);
        dr.cut_txid = (char *)cut;
        dr.snapshot = "s1";
        dr.branch = branch;
        dr.members = ms.p;
        dr.n_members = ms.n;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DELETE;
        c.delete_ = &dr;
        return send(&c, txid, LOCKSTEP__STEP__STEP_DELETE);
}

/* A revert's PREPARE; images (may be NULL) name the cut's image of each disk. */
static Lockstep__Reply *prepare(const char *txid, const char *cut, int undo, const char *spec,
                                Lockstep__MemberDisks **images, size_t n_images)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__RevertPrepareRequest rp = LOCKSTEP__REVERT_PREPARE_REQUEST__INIT;
        struct members ms;

        members(&ms, spec);
        rp.cut_txid = (char *)cut;
        rp.snapshot = "s1";
        rp.undo = undo;
        rp.members = ms.p;
        rp.n_members = ms.n;
        rp.images = images;
        rp.n_images = n_images;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_PREPARE;
        c.revert_prepare = &rp;
        return send(&c, txid, LOCKSTEP__STEP__STEP_REVERT_PREPARE);
}

static Lockstep__Reply *rstop(const char *txid, unsigned tier)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__RevertStopRequest rs = LOCKSTEP__REVERT_STOP_REQUEST__INIT;

        rs.tier = tier;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_STOP;
        c.revert_stop = &rs;
        return send(&c, txid, LOCKSTEP__STEP__STEP_REVERT_STOP);
}

static Lockstep__Reply *rswitch(const char *txid)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__RevertSwitchRequest rs = LOCKSTEP__REVERT_SWITCH_REQUEST__INIT;

        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_SWITCH;
        c.revert_switch = &rs;
        return send(&c, txid, LOCKSTEP__STEP__STEP_REVERT_SWITCH);
}

static Lockstep__Reply *rstart(const char *txid, unsigned tier)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__RevertStartRequest rs = LOCKSTEP__REVERT_START_REQUEST__INIT;

        rs.tier = tier;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_START;
        c.revert_start = &rs;
        return send(&c, txid, LOCKSTEP__STEP__STEP_REVERT_START);
}

static Lockstep__Reply *rdecide(const char *txid, int commit)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__RevertDecideRequest rd = LOCKSTEP__REVERT_DECIDE_REQUEST__INIT;

        rd.decision = decision(commit);
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_DECIDE;
        c.revert_decide = &rd;
        return send(&c, txid, LOCKSTEP__STEP__STEP_REVERT_DECIDE);
}

/* Checks a reply's code and wire state, and frees it. */
static void expect(Lockstep__Reply *rep, Lockstep__ErrorCode code, Lockstep__TxnState state)
{
        if (rep->code != code || rep->state != state)
                fprintf(stderr, "reply: code %d state %d message \"%s\" (member 0: \"%s\")\n", rep->code, rep->state,
                        rep->message, rep->n_members ? rep->members[0]->message : "");
        assert_int_equal(rep->code, code);
        assert_int_equal(rep->state, state);
        lockstep__reply__free_unpacked(rep, NULL);
}

static const Lockstep__MemberResult *member_of(const Lockstep__Reply *rep, const char *vm)
{
        for (size_t i = 0; i < rep->n_members; i++)
                if (!strcmp(rep->members[i]->vm, vm))
                        return rep->members[i];
        fail_msg("no member %s in the reply", vm);
        return NULL;
}

static int starts_with(const char *s, const char *prefix)
{
        return !strncmp(s, prefix, strlen(prefix));
}

/* ---- the journal ---- */

static struct txn *live(const char *txid)
{
        struct txn *t;

        pthread_mutex_lock(&F.mg->lock);
        t = txn_find(F.mg, txid);
        pthread_mutex_unlock(&F.mg->lock);
        assert_non_null(t);
        return t;
}

/* The transaction as its journal record describes it: what a restarted
 * agent would take back. NULL when there is no record. */
static struct txn *journaled(const char *txid)
{
        char path[HV_PATH_MAX + 64];
        Lockstep__JournalTxn *jt = NULL;
        struct txn *t;
        lserr err = {0};

        snprintf(path, sizeof(path), "%s/%s.txn", F.journal, txid);
        if (access(path, F_OK) != 0)
                return NULL;
        assert_int_equal(journal_read(path, &jt, &err), 0);
        assert_non_null(jt);
        t = txn_from_journal(jt);
        lockstep__journal_txn__free_unpacked(jt, NULL);
        assert_non_null(t);
        return t;
}

static void assert_same_member(const struct member *a, const struct member *b)
{
        assert_string_equal(a->vm, b->vm);
        assert_int_equal(a->tier, b->tier);
        assert_int_equal(a->crash, b->crash);
        assert_int_equal(a->quiesced, b->quiesced);
        assert_int_equal(a->paused, b->paused);
        assert_int_equal(a->code, b->code);
        assert_string_equal(a->msg, b->msg);
        assert_int_equal(a->was_running, b->was_running);
        assert_int_equal(a->switched, b->switched);
        assert_int_equal(a->freeze_us, b->freeze_us);
        assert_int_equal(a->snapshot_us, b->snapshot_us);
        assert_int_equal(a->thaw_us, b->thaw_us);
        assert_int_equal(a->frozen_at_us, b->frozen_at_us);
        assert_int_equal(a->thawed_at_us, b->thawed_at_us);
        assert_int_equal(a->n_imgs, b->n_imgs);
        for (size_t k = 0; k < a->n_imgs; k++) {
                assert_string_equal(a->imgs[k].target, b->imgs[k].target);
                assert_string_equal(a->imgs[k].before, b->imgs[k].before);
                assert_string_equal(a->imgs[k].after, b->imgs[k].after);
                assert_string_equal(a->imgs[k].branch, b->imgs[k].branch);
        }
}

/* The journal holds exactly what the live transaction holds, and its state is
 * `state`. */
static void journal_is(const char *txid, Lockstep__JournalState state)
{
        struct txn *t = live(txid), *j = journaled(txid);

        assert_non_null(j);
        pthread_mutex_lock(&t->lock);
        assert_int_equal(j->state, state);
        assert_int_equal(t->state, state);
        assert_string_equal(j->txid, t->txid);
        assert_string_equal(j->snap, t->snap);
        assert_string_equal(j->cut, t->cut);
        assert_int_equal(j->mode, t->mode);
        assert_int_equal(j->decided, t->decided);
        assert_int_equal(j->lease_expired, t->lease_expired);
        assert_int_equal(j->lease_deadline_unix, t->lease_deadline_unix);
        assert_int_equal(j->revert, t->revert);
        assert_int_equal(j->undo, t->undo);
        assert_int_equal(j->n, t->n);
        for (size_t i = 0; i < t->n; i++)
                assert_same_member(&t->m[i], &j->m[i]);
        assert_int_equal(j->n_replies, t->n_replies);
        for (size_t i = 0; i < t->n_replies; i++) {
                assert_int_equal(j->replies[i].step, t->replies[i].step);
                assert_int_equal(j->replies[i].sub, t->replies[i].sub);
                assert_int_equal(j->replies[i].len, t->replies[i].len);
                assert_memory_equal(j->replies[i].buf, t->replies[i].buf, t->replies[i].len);
        }
        pthread_mutex_unlock(&t->lock);
        txn_free(j);
}

/* The agent dies without thawing anything and a new one takes the journal back. */
static void crash_and_recover(void)
{
        lserr err = {0};

        F.mg = txn_mgr_free(F.mg);
        assert_int_equal(txn_mgr_new(&F.cfg, F.hv, NULL, &F.mg, &err), 0);
        assert_int_equal(txn_mgr_recover(F.mg, &err), 0);
}

/* ---- cuts ---- */

static void cut(const char *txid, const char *spec)
{
        expect(freeze(txid, LOCKSTEP__MODE__MODE_QUIESCE, 10000, spec), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        expect(snapshot(txid), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        expect(decide(txid, 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
}

static void test_freeze_snapshot_commit(void **state)
{
        Lockstep__Reply *rep;
        uint8_t *first;
        size_t first_len;

        (void)state;
        rep = freeze("t1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1 crash1:1:c");
        assert_string_equal(member_of(rep, "crash1")->message,
                            "paused, not frozen (consistency: crash, no guest agent)");
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_true(frozen("web1") && frozen("db1"));
        assert_false(frozen("crash1"));
        assert_int_equal(run_state("crash1"), HV_PAUSED);
        journal_is("t1", LOCKSTEP__JOURNAL_STATE__J_FROZEN);
        assert_true(live("t1")->m[0].quiesced && live("t1")->m[2].paused);

        /* A resent FREEZE gets the very same bytes and freezes nothing again. */
        first = malloc(F.last_len);
        memcpy(first, F.last, F.last_len);
        first_len = F.last_len;
        lockstep__reply__free_unpacked(freeze("t1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1 crash1:1:c"),
                                       NULL);
        assert_int_equal(F.last_len, first_len);
        assert_memory_equal(F.last, first, first_len);
        free(first);

        rep = snapshot("t1");
        assert_int_equal(member_of(rep, "web1")->n_disks, 2);
        assert_string_equal(member_of(rep, "web1")->disks[1]->after, overlay(base("web1", "vdb"), "web1", "vdb", "t1"));
        assert_true(member_of(rep, "db1")->timings->frozen_for_us > 0);
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        assert_false(frozen("web1") || frozen("db1"));
        assert_int_equal(run_state("crash1"), HV_RUNNING);
        assert_string_equal(disk("web1", 0), overlay(base("web1", "vda"), "web1", "vda", "t1"));
        assert_true(exists(disk("web1", 0)) && exists(disk("db1", 0)));
        journal_is("t1", LOCKSTEP__JOURNAL_STATE__J_SNAPPED);

        /* Snapshotted once: a second cut of the same member is refused while undecided. */
        expect(freeze("t2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0"), LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED,
               LOCKSTEP__TXN_STATE__TXN_ABORTED);

        expect(decide("t1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        journal_is("t1", LOCKSTEP__JOURNAL_STATE__J_COMMITTED);
        assert_true(live("t1")->decided);
        expect(decide("t1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        rep = decide("t1", 0);
        assert_string_equal(rep->message, "host-a: decide: transaction t1 was already committed");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);
        /* Committed overlays stay. */
        assert_true(exists(overlay(base("web1", "vda"), "web1", "vda", "t1")));
}

/* A FREEZE in a thread of its own, so the test can watch it from outside. */
struct bg_freeze {
        Lockstep__Command c;
        Lockstep__FreezeRequest fr;
        struct members ms;
        uint8_t *rep;
        size_t rep_len;
        int r;
};

static void *bg_freeze_main(void *arg)
{
        struct bg_freeze *b = arg;

        b->r = txn_step(F.mg, &b->c, &b->rep, &b->rep_len);
        return NULL;
}

/* Waits up to 10 s for the sim's marker of a held call (an event, not a
 * timing: the guard only ends a wait that would never end). */
static int held(const char *op, const char *vm)
{
        char path[HV_PATH_MAX + 2 * LS_NAME_MAX + 16];

        snprintf(path, sizeof(path), "%s/held.%s.%s", F.simdir, op, vm);
        for (int i = 0; i < 1000; i++) {
                if (exists(path))
                        return 1;
                usleep(10 * 1000);
        }
        return 0;
}

/* Starts a quiesce FREEZE of list ("vm:tier ...") on a thread of its own. */
static void bg_freeze_start(struct bg_freeze *b, pthread_t *th, const char *txid, const char *list)
{
        *b = (struct bg_freeze){.c = LOCKSTEP__COMMAND__INIT, .fr = LOCKSTEP__FREEZE_REQUEST__INIT};
        members(&b->ms, list);
        b->fr.snapshot = "s1";
        b->fr.mode = LOCKSTEP__MODE__MODE_QUIESCE;
        b->fr.lease_ms = 10000;
        b->fr.members = b->ms.p;
        b->fr.n_members = b->ms.n;
        b->c.txid = (char *)txid;
        b->c.step = LOCKSTEP__STEP__STEP_FREEZE;
        b->c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
        b->c.freeze = &b->fr;
        assert_int_equal(pthread_create(th, NULL, bg_freeze_main, b), 0);
}

/* A quiesce FREEZE of list on a thread of its own while call op_a on vm_a and
 * op_b on vm_b are held: *caught says whether both were seen held at once
 * with neither VM frozen. The holds are let go before the caller asserts (a
 * failed assert must not leave the FREEZE thread held while teardown frees
 * what it uses); returns the FREEZE's reply. */
static Lockstep__Reply *freeze_while_held(const char *txid, const char *list, const char *op_a, const char *vm_a,
                                          const char *op_b, const char *vm_b, int *caught)
{
        char hold_a[64], hold_b[64];
        struct bg_freeze b;
        pthread_t th;
        Lockstep__Reply *rep;

        snprintf(hold_a, sizeof(hold_a), "hold %s %s", op_a, vm_a);
        snprintf(hold_b, sizeof(hold_b), "hold %s %s", op_b, vm_b);
        sim_add(hold_a);
        sim_add(hold_b);
        bg_freeze_start(&b, &th, txid, list);
        *caught = held(op_a, vm_a) && held(op_b, vm_b) && !frozen(vm_a) && !frozen(vm_b);
        sim_drop(hold_a);
        sim_drop(hold_b);
        pthread_join(th, NULL);
        assert_int_equal(b.r, 0);
        rep = lockstep__reply__unpack(NULL, b.rep_len, b.rep);
        free(b.rep);
        return rep;
}

/* A member's guest-ping runs beside its check, not after it: both are held
 * at once, and nothing is frozen until both answered. */
static void test_freeze_pings_beside_check(void **state)
{
        Lockstep__Reply *rep;
        int caught;

        (void)state;
        rep = freeze_while_held("vp1", "web1:0", "check", "web1", "ga_ping", "web1", &caught);
        assert_true(caught);
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_true(frozen("web1"));
        expect(decide("vp1", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* A member whose check and ping both fail is refused for the check. */
        sim_add("fail check web1");
        sim_add("fail ga_ping web1");
        rep = freeze("vp2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0");
        assert_true(starts_with(member_of(rep, "web1")->message, "web1@host-a: check: injected failure"));
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("web1"));
}

/* Validation binds no tier order: a host's tier-1 member is checked while its
 * tier-0 member's check is still running, before either is frozen. */
static void test_freeze_validates_tiers_at_once(void **state)
{
        Lockstep__Reply *rep;
        int caught;

        (void)state;
        rep = freeze_while_held("va1", "web1:0 db1:1", "check", "web1", "check", "db1", &caught);
        assert_true(caught);
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_true(frozen("web1") && frozen("db1"));
        expect(decide("va1", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("web1") || frozen("db1"));
}

static void test_freeze_no(void **state)
{
        Lockstep__Reply *rep;

        (void)state;
        /* Validation fails: nobody is frozen, the vote is no. */
        rep = freeze("v1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 noga1:1");
        assert_int_equal(member_of(rep, "noga1")->code, LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT);
        assert_true(starts_with(member_of(rep, "noga1")->message, "noga1@host-a: guest-ping: "));
        assert_string_equal(rep->message, "host-a: freeze: voted no");
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("web1"));
        journal_is("v1", LOCKSTEP__JOURNAL_STATE__J_ABORTED);

        /* A freeze that fails halfway: what was frozen is thawed before the no. */
        sim_add("fail freeze db1");
        rep = freeze("v2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1");
        assert_int_equal(member_of(rep, "db1")->code, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED);
        assert_true(starts_with(member_of(rep, "db1")->message, "db1@host-a: freeze: injected failure"));
        assert_int_equal(member_of(rep, "web1")->code, LOCKSTEP__ERROR_CODE__OK);
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("web1") || frozen("db1"));
        journal_is("v2", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        assert_int_equal(live("v2")->m[0].quiesced, 0);

        /* Listed twice; and a member another transaction holds. */
        rep = freeze("v3", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 web1:1");
        assert_string_equal(rep->members[1]->message, "web1@host-a: freeze: listed twice in one transaction");
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        expect(freeze("v4", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        rep = freeze("v5", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0");
        assert_string_equal(member_of(rep, "web1")->message,
                            "web1@host-a: freeze: held by transaction v4; try again when it is finished");
        assert_int_equal(member_of(rep, "web1")->code, LOCKSTEP__ERROR_CODE__E_BUSY);
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_true(frozen("web1")); /* still v4's */

        /* No members; a step for a transaction never seen. */
        expect(freeze("v6", LOCKSTEP__MODE__MODE_QUIESCE, 10000, ""), LOCKSTEP__ERROR_CODE__E_BAD_STATE,
               LOCKSTEP__TXN_STATE__TXN_IDLE);
        rep = snapshot("nope");
        assert_string_equal(rep->message, "host-a: SNAPSHOT: unknown transaction \"nope\"");
        expect(rep, LOCKSTEP__ERROR_CODE__E_UNKNOWN_TXN, LOCKSTEP__TXN_STATE__TXN_IDLE);
        rep = decide("nope", 0);
        assert_string_equal(rep->message, "host-a: decide: unknown transaction, nothing to undo");
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_IDLE);
        assert_null(journaled("nope"));
}

/* A cut of several tiers comes as one FREEZE per tier: the first validates
 * every member and freezes its tier only, each later one freezes its own
 * tier; a resend of a tier gets its own stored reply. SNAPSHOT needs every
 * member frozen, and a later tier that fails thaws the front tiers too. */
static void test_freeze_by_tier(void **state)
{
        Lockstep__Reply *rep;
        uint8_t *first;
        size_t first_len;

        (void)state;
        F.by_tier = 1;
        expect(freeze("bt1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_true(frozen("web1"));
        assert_false(frozen("db1"));
        journal_is("bt1", LOCKSTEP__JOURNAL_STATE__J_FROZEN);
        first = malloc(F.last_len);
        memcpy(first, F.last, F.last_len);
        first_len = F.last_len;
        F.by_tier = 2;
        expect(freeze("bt1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_true(frozen("web1") && frozen("db1"));
        F.by_tier = 1;
        lockstep__reply__free_unpacked(freeze("bt1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1"), NULL);
        assert_int_equal(F.last_len, first_len);
        assert_memory_equal(F.last, first, first_len);
        free(first);
        expect(snapshot("bt1"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        assert_false(frozen("web1") || frozen("db1"));
        expect(decide("bt1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);

        /* Tier 1's FREEZE never came: no snapshot of a running db1. */
        F.by_tier = 1;
        expect(freeze("bt2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        rep = snapshot("bt2");
        assert_string_equal(rep->message, "host-a: snapshot: refused: member db1 (tier 1) was never frozen (no "
                                          "FREEZE of its tier); thawed");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("web1"));
        expect(decide("bt2", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* db1's freeze fails in tier 1's FREEZE: web1, frozen by tier 0, is thawed. */
        sim_add("fail freeze db1");
        F.by_tier = 1;
        expect(freeze("bt3", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        F.by_tier = 2;
        rep = freeze("bt3", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1");
        assert_string_equal(rep->message, "host-a: freeze: tier 1: voted no");
        assert_true(starts_with(member_of(rep, "db1")->message, "db1@host-a: freeze: injected failure"));
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("web1") || frozen("db1"));
        journal_is("bt3", LOCKSTEP__JOURNAL_STATE__J_ABORTED);

        /* A tier's FREEZE for a transaction that is no longer frozen. */
        F.by_tier = 3;
        rep = freeze("bt3", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1");
        assert_string_equal(rep->message, "host-a: freeze: tier 2: transaction bt3 is not frozen by tier");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);
}

static void test_abort(void **state)
{
        const char *ov;
        Lockstep__Reply *rep;

        (void)state;
        expect(freeze("a1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        /* Commit before the snapshot is refused and changes nothing. */
        rep = decide("a1", 1);
        assert_string_equal(rep->message,
                            "host-a: decide: cannot commit transaction a1: it is not fully snapshotted");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);
        journal_is("a1", LOCKSTEP__JOURNAL_STATE__J_FROZEN);
        expect(snapshot("a1"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        ov = overlay(base("web1", "vda"), "web1", "vda", "a1");
        assert_true(exists(ov));
        expect(decide("a1", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(exists(ov));
        assert_string_equal(disk("web1", 0), base("web1", "vda"));
        journal_is("a1", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        assert_int_equal(live("a1")->m[0].n_imgs, 0);
        rep = decide("a1", 1);
        assert_string_equal(rep->message, "host-a: decide: transaction a1 was already aborted");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);

        /* A discard that fails is not stored: the resent ABORT does it. */
        expect(freeze("a2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        expect(snapshot("a2"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        sim_add("fail discard db1");
        rep = decide("a2", 0);
        assert_true(starts_with(member_of(rep, "db1")->message, "db1@host-a: discard: injected failure"));
        expect(rep, LOCKSTEP__ERROR_CODE__E_DISCARD_FAILED, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        journal_is("a2", LOCKSTEP__JOURNAL_STATE__J_SNAPPED);
        assert_true(exists(overlay(base("db1", "vda"), "db1", "vda", "a2")));
}

/* Moves t's lease deadline into the past. */
static void lease_over(const char *txid)
{
        struct txn *t = live(txid);

        pthread_mutex_lock(&t->lock);
        t->lease_deadline_mono = fsutil_mono_us() - 1;
        pthread_mutex_unlock(&t->lock);
}

static void test_lease(void **state)
{
        Lockstep__Reply *rep;
        struct txn *t;

        (void)state;
        /* The lease thread ends a lease that ran out: thawed, abort only. */
        expect(freeze("l1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 crash1:0:c"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        lease_over("l1");
        txn_lease_tick(F.mg);
        t = live("l1");
        pthread_mutex_lock(&t->lock);
        assert_int_equal(t->state, LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        assert_true(t->lease_expired);
        pthread_mutex_unlock(&t->lock);
        assert_false(frozen("web1"));
        assert_int_equal(run_state("crash1"), HV_RUNNING);
        journal_is("l1", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        rep = snapshot("l1");
        assert_string_equal(rep->message,
                            "host-a: snapshot: lease expired: members were thawed, the cut can only abort");
        expect(rep, LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(exists(overlay(base("web1", "vda"), "web1", "vda", "l1")));
        expect(decide("l1", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* SNAPSHOT itself finds the lease over (before the thread does). */
        expect(freeze("l2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        t = live("l2");
        pthread_mutex_lock(&t->lock);
        t->lease_deadline_mono = fsutil_mono_us() - 1;
        pthread_mutex_unlock(&t->lock);
        expect(snapshot("l2"), LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("db1"));
        journal_is("l2", LOCKSTEP__JOURNAL_STATE__J_ABORTED);

        /* A decided transaction is forgotten, with its record, after TXN_KEEP_US. */
        expect(decide("l2", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        t = live("l2");
        pthread_mutex_lock(&t->lock);
        t->finished_mono = fsutil_mono_us() - TXN_KEEP_US - 1;
        pthread_mutex_unlock(&t->lock);
        txn_lease_tick(F.mg);
        pthread_mutex_lock(&F.mg->lock);
        assert_null(txn_find(F.mg, "l2"));
        pthread_mutex_unlock(&F.mg->lock);
        assert_null(journaled("l2"));
}

/* Sets how long ago every finished transaction of the manager finished. */
static void finished_ago(long long us)
{
        pthread_mutex_lock(&F.mg->lock);
        for (struct txn *t = F.mg->list; t; t = t->next)
                if (t->finished_mono)
                        t->finished_mono = fsutil_mono_us() - us;
        pthread_mutex_unlock(&F.mg->lock);
}

/* The lease thread ticks only while there is lease work: an idle agent's
 * thread sleeps (TXN_IDLE_US, or until a step kicks it). */
static void test_lease_idle(void **state)
{
        (void)state;
        assert_int_equal(txn_lease_tick(F.mg), TXN_IDLE_US);
        expect(freeze("i1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_int_equal(txn_lease_tick(F.mg), TXN_TICK_US); /* a lease runs */
        expect(snapshot("i1"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        assert_int_equal(txn_lease_tick(F.mg), TXN_IDLE_US); /* all thawed, the decision is a step */
        expect(decide("i1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        assert_int_equal(txn_lease_tick(F.mg), TXN_TICK_US); /* members to free in a second */
        finished_ago(TXN_COMPACT_US + 1);
        assert_int_equal(txn_lease_tick(F.mg), TXN_IDLE_US);
        assert_null(live("i1")->m);
}

static size_t n_remembered(void)
{
        size_t n = 0;

        pthread_mutex_lock(&F.mg->lock);
        for (struct txn *t = F.mg->list; t; t = t->next)
                n++;
        pthread_mutex_unlock(&F.mg->lock);
        return n;
}

/* An agent that cuts all the time holds at most TXN_KEEP_MAX finished
 * transactions once they are older than two time windows, not an hour of
 * them; younger ones are all kept (a command sent while they ran may still
 * come). */
static void test_keep_bound(void **state)
{
        const size_t n = TXN_KEEP_MAX + 3;
        char id[32];

        (void)state;
        /* Windows far longer than the 1,027 journaled cuts take on a loaded
         * machine (over 60 s were seen with 30 s windows), below TXN_KEEP_US. */
        F.cfg.time_window_s = 1000;
        for (size_t i = 0; i < n; i++) {
                snprintf(id, sizeof(id), "k%zu", i);
                expect(freeze(id, LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0"), LOCKSTEP__ERROR_CODE__OK,
                       LOCKSTEP__TXN_STATE__TXN_FROZEN);
                expect(decide(id, 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        }
        txn_lease_tick(F.mg);
        assert_int_equal(n_remembered(), n);

        finished_ago(2LL * 1000 * 1000000 + 1000000);
        txn_lease_tick(F.mg);
        assert_int_equal(n_remembered(), TXN_KEEP_MAX);
        for (size_t i = 0; i < n; i++) {
                snprintf(id, sizeof(id), "k%zu", i);
                pthread_mutex_lock(&F.mg->lock);
                int kept = txn_find(F.mg, id) != NULL;
                pthread_mutex_unlock(&F.mg->lock);
                /* The oldest go, with their journal records. */
                assert_int_equal(kept, i >= n - TXN_KEEP_MAX);
                if (!kept)
                        assert_null(journaled(id));
        }
}

static void test_check(void **state)
{
        Lockstep__Reply *rep;

        (void)state;
        rep = check("c1", 10000, "web1:0 db1:1");
        assert_int_equal(rep->lease_max_ms, 60000);
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_IDLE);
        assert_false(frozen("web1"));
        assert_null(journaled("c1"));
        pthread_mutex_lock(&F.mg->lock);
        assert_null(txn_find(F.mg, "c1"));
        pthread_mutex_unlock(&F.mg->lock);

        rep = check("c2", 120000, "web1:0 paused1:0");
        assert_string_equal(member_of(rep, "web1")->message,
                            "web1@host-a: check: lease of 120 s is above this agent's lease_max_s 60: a cut would "
                            "be held at most 60 s");
        assert_int_equal(member_of(rep, "paused1")->code, LOCKSTEP__ERROR_CODE__E_PAUSED);
        assert_true(starts_with(member_of(rep, "paused1")->message, "paused1@host-a: check: domain is paused"));
        assert_string_equal(rep->message, "host-a: check: a cut would be refused");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE); /* web1's, the first */

        expect(freeze("c3", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        rep = check("c4", 10000, "db1:0");
        assert_string_equal(member_of(rep, "db1")->message,
                            "db1@host-a: check: held by transaction c3; a cut now would be refused");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BUSY, LOCKSTEP__TXN_STATE__TXN_IDLE);
}

/* The sim's record of hook runs (<state_dir>/hooks.log), "" when none ran. */
static const char *hooks_log(void)
{
        static char out[2048];
        char path[HV_PATH_MAX + 16];
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "%s/hooks.log", F.simdir);
        f = fopen(path, "r");
        if (!f)
                return "";
        n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        fclose(f);
        return out;
}

/* A hook is a name the agent looks up per VM: a name one member's VM lacks
 * refuses the FREEZE before anything is frozen or run, and CHECK says so. */
static void test_hook_unknown(void **state)
{
        Lockstep__Reply *rep;

        (void)state;
        F.hook = "vacuum"; /* db1 has it, web1 does not */
        rep = freeze("h1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0 web1:1");
        assert_int_equal(member_of(rep, "web1")->code, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED);
        assert_string_equal(member_of(rep, "web1")->message,
                            "web1@host-a: freeze: unknown hook \"vacuum\": agent.yaml defines no hook of that name "
                            "for this VM (vms[].hooks[])");
        assert_int_equal(member_of(rep, "db1")->code, LOCKSTEP__ERROR_CODE__OK);
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("db1"));
        assert_false(frozen("web1"));
        assert_string_equal(hooks_log(), ""); /* not even db1's pre_freeze ran */

        F.hook = "no-such-hook";
        rep = freeze("h2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0");
        assert_string_equal(member_of(rep, "db1")->message,
                            "db1@host-a: freeze: unknown hook \"no-such-hook\": agent.yaml defines no hook of that "
                            "name for this VM (vms[].hooks[])");
        expect(rep, LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("db1"));

        rep = check("h3", 10000, "db1:0 web1:0");
        assert_int_equal(member_of(rep, "db1")->code, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED);
        assert_string_equal(member_of(rep, "web1")->message,
                            "web1@host-a: check: unknown hook \"no-such-hook\": agent.yaml defines no hook of that "
                            "name for this VM (vms[].hooks[])");
        expect(rep, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED, LOCKSTEP__TXN_STATE__TXN_IDLE);
        F.hook = "vacuum";
        expect(check("h4", 10000, "db1:0"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_IDLE);
        assert_string_equal(hooks_log(), "");
}

/* A known name runs that VM's own argv: pre_freeze before its freeze,
 * post_thaw after its thaw; a crash-consistent member runs none and needs none. */
static void test_hook_runs(void **state)
{
        (void)state;
        F.hook = "flush";
        expect(freeze("h1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0 web1:1 crash1:0:c"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_true(frozen("db1"));
        /* Front tier first; one argument "a b; c", no shell to split it. */
        assert_string_equal(hooks_log(), "db1 flush: /usr/bin/db-flush --all a b; c\n"
                                         "web1 flush: /usr/bin/sync\n");
        expect(snapshot("h1"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        assert_false(frozen("db1"));
        assert_string_equal(hooks_log(), "db1 flush: /usr/bin/db-flush --all a b; c\n"
                                         "web1 flush: /usr/bin/sync\n"
                                         "db1 flush: /usr/bin/db-resume\n");
        expect(decide("h1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);

        /* A failing pre_freeze is a no, and what it froze is thawed. */
        sim_add("fail guest_run db1");
        expect(freeze("h2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0 db1:1"), LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED,
               LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(frozen("web1"));
        assert_false(frozen("db1"));
}

/* A FREEZE from a lockstepd that still sends hook text (field 5): refused,
 * never a cut that silently skips the hook. */
static void test_hook_old_text(void **state)
{
        Lockstep__Command c = LOCKSTEP__COMMAND__INIT;
        Lockstep__FreezeRequest fr = LOCKSTEP__FREEZE_REQUEST__INIT;
        uint8_t text[] = "sync";
        ProtobufCMessageUnknownField old = {
                .tag = 5, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = 4, .data = text};
        struct members ms;
        Lockstep__Reply *rep;

        (void)state;
        members(&ms, "db1:0");
        fr.snapshot = "s1";
        fr.lease_ms = 10000;
        fr.members = ms.p;
        fr.n_members = ms.n;
        fr.base.n_unknown_fields = 1;
        fr.base.unknown_fields = &old;
        c.payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
        c.freeze = &fr;
        rep = send(&c, "h1", LOCKSTEP__STEP__STEP_FREEZE);
        assert_true(starts_with(rep->message, "freeze: the command carries hook command text"));
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_HOOK_FAILED);
        lockstep__reply__free_unpacked(rep, NULL);
        assert_false(frozen("db1"));
        assert_string_equal(hooks_log(), "");
}

static void test_delete(void **state)
{
        const char *ov;
        Lockstep__Reply *rep;

        (void)state;
        cut("d1", "web1:0");
        ov = overlay(base("web1", "vda"), "web1", "vda", "d1");
        assert_true(exists(ov));
        rep = delete("del1", "d1", 0, "web1:0");
        assert_int_equal(member_of(rep, "web1")->n_disks, 2);
        assert_string_equal(member_of(rep, "web1")->disks[0]->after, ov);
        assert_string_equal(member_of(rep, "web1")->disks[0]->before, base("web1", "vda"));
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        assert_false(exists(ov));
        assert_string_equal(disk("web1", 0), base("web1", "vda"));
        journal_is("del1", LOCKSTEP__JOURNAL_STATE__J_COMMITTED);

        /* A delete that fails says so per member and as a whole. */
        cut("d2", "db1:0");
        sim_add("fail delete db1");
        rep = delete("del2", "d2", 0, "db1:0");
        assert_true(starts_with(member_of(rep, "db1")->message, "db1@host-a: delete: injected failure"));
        assert_string_equal(rep->message, "host-a: delete of cut d2 did not finish; every chain is valid, deleting "
                                          "again finishes it");
        expect(rep, LOCKSTEP__ERROR_CODE__E_DELETE_FAILED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        journal_is("del2", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
}

/* ---- reverts ---- */

static int record_exists(const char *txid, const char *vm)
{
        char path[HV_PATH_MAX];

        assert_int_equal(branch_record_path(F.journal, txid, vm, path, sizeof(path)), 0);
        return exists(path);
}

/* PREPARE ... DECIDE of revert txid onto cut `of`, both members running. */
static void revert(const char *txid, const char *of, int undo, int commit)
{
        expect(prepare(txid, of, undo, "web1:0 db1:1", NULL, 0), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rstop(txid, 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rstop(txid, 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rswitch(txid), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        if (commit) {
                expect(rstart(txid, 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
                expect(rstart(txid, 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        }
        expect(rdecide(txid, commit), LOCKSTEP__ERROR_CODE__OK,
               commit ? LOCKSTEP__TXN_STATE__TXN_COMMITTED : LOCKSTEP__TXN_STATE__TXN_ABORTED);
}

static void test_revert_commit(void **state)
{
        char c1_vda[HV_PATH_MAX], r1_vda[HV_PATH_MAX], want[HV_PATH_MAX + 32];
        Lockstep__Reply *rep;
        struct txn *t;

        (void)state;
        cut("c1", "web1:0 db1:1");
        snprintf(c1_vda, sizeof(c1_vda), "%s", overlay(base("web1", "vda"), "web1", "vda", "c1"));
        snprintf(r1_vda, sizeof(r1_vda), "%s", overlay(base("web1", "vda"), "web1", "vda", "r1"));

        /* Out of order: nothing but PREPARE starts a revert. */
        rep = rstop("r1", 0);
        assert_int_equal(rep->code, LOCKSTEP__ERROR_CODE__E_UNKNOWN_TXN);
        lockstep__reply__free_unpacked(rep, NULL);

        expect(prepare("r1", "c1", 0, "web1:0 db1:1", NULL, 0), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_REVERTING);
        journal_is("r1", LOCKSTEP__JOURNAL_STATE__J_R_PREPARED);
        t = live("r1");
        assert_true(t->revert && t->m[0].was_running);
        assert_string_equal(t->m[0].imgs[0].before, base("web1", "vda"));
        assert_string_equal(t->m[0].imgs[0].branch, c1_vda);
        rep = rswitch("r1");
        assert_string_equal(rep->message, "revert: switch is allowed only after stop");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);

        expect(rstop("r1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_int_equal(run_state("db1"), HV_SHUTOFF);
        assert_int_equal(run_state("web1"), HV_RUNNING); /* tier by tier */
        expect(rstop("r1", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_int_equal(run_state("web1"), HV_SHUTOFF);
        journal_is("r1", LOCKSTEP__JOURNAL_STATE__J_R_STOPPED);
        assert_int_equal(live("r1")->n_replies, 3); /* PREPARE, STOP per tier */

        rep = rswitch("r1");
        snprintf(want, sizeof(want), "2 disk(s) on %s", r1_vda);
        assert_string_equal(member_of(rep, "web1")->message, want);
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_string_equal(disk("web1", 0), r1_vda);
        assert_true(exists(r1_vda));
        assert_true(record_exists("r1", "web1") && record_exists("r1", "db1"));
        journal_is("r1", LOCKSTEP__JOURNAL_STATE__J_R_SWITCHED);
        assert_true(live("r1")->m[0].switched);

        rep = rstart("r1", 0);
        assert_true(starts_with(member_of(rep, "web1")->message, "booted, guest agent answered after "));
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_int_equal(run_state("web1"), HV_RUNNING);
        assert_int_equal(run_state("db1"), HV_SHUTOFF);
        expect(rstart("r1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_int_equal(run_state("db1"), HV_RUNNING);
        journal_is("r1", LOCKSTEP__JOURNAL_STATE__J_R_STARTED);

        expect(rdecide("r1", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        journal_is("r1", LOCKSTEP__JOURNAL_STATE__J_COMMITTED);
        /* The branch is kept for an undo. */
        assert_true(record_exists("r1", "web1"));
        assert_string_equal(disk("web1", 0), r1_vda);

        /* Undo: back onto the c1 overlay the revert left. */
        revert("u1", "r1", 1, 1);
        assert_string_equal(disk("web1", 0), c1_vda);
        assert_false(record_exists("r1", "web1"));
        assert_true(record_exists("u1", "web1"));
        journal_is("u1", LOCKSTEP__JOURNAL_STATE__J_COMMITTED);

        /* Deleting the undo's branch removes what only it holds (r1's overlay). */
        rep = delete("bd1", "u1", 1, "web1:0 db1:1");
        assert_int_equal(member_of(rep, "web1")->n_disks, 2);
        assert_string_equal(member_of(rep, "web1")->disks[0]->after, r1_vda);
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        assert_false(exists(r1_vda));
        assert_true(exists(c1_vda));
        assert_false(record_exists("u1", "web1"));
        rep = delete("bd2", "u1", 1, "web1:0");
        assert_string_equal(member_of(rep, "web1")->message, "no pre-revert branch of u1 here (deleted already)");
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
}

static void test_revert_rollback(void **state)
{
        char c1_vda[HV_PATH_MAX], r2_vda[HV_PATH_MAX];
        Lockstep__Reply *rep;

        (void)state;
        cut("c1", "web1:0 db1:1");
        snprintf(c1_vda, sizeof(c1_vda), "%s", overlay(base("web1", "vda"), "web1", "vda", "c1"));
        snprintf(r2_vda, sizeof(r2_vda), "%s", overlay(base("web1", "vda"), "web1", "vda", "r2"));

        revert("r2", "c1", 0, 0);
        assert_string_equal(disk("web1", 0), c1_vda);
        assert_false(exists(r2_vda));
        assert_false(record_exists("r2", "web1"));
        assert_int_equal(run_state("web1"), HV_RUNNING);
        assert_int_equal(run_state("db1"), HV_RUNNING);
        journal_is("r2", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        assert_false(live("r2")->m[0].switched);
        rep = rdecide("r2", 1);
        assert_string_equal(rep->message, "host-a: decide: transaction r2 was already aborted");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);

        rep = snapshot("r2");
        assert_string_equal(rep->message, "host-a: SNAPSHOT: not allowed for transaction r2 in its state");
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);

        /* Prepare refuses what it cannot revert onto, touching nothing. A
         * path from the wire is never used: a catalog image that is not the
         * one the agent resolves from its own chains is refused, naming both. */
        char other[HV_PATH_MAX], c1_db1[HV_PATH_MAX], want[3 * HV_PATH_MAX];
        Lockstep__DiskImage di = LOCKSTEP__DISK_IMAGE__INIT, *dip = &di;
        Lockstep__MemberDisks md = LOCKSTEP__MEMBER_DISKS__INIT, *mdp = &md;
        snprintf(other, sizeof(other), "%s", base("web1", "vda")); /* another VM's image */
        snprintf(c1_db1, sizeof(c1_db1), "%s", disk("db1", 0));
        di.disk = "vda";
        di.before = other;
        md.vm = "db1";
        md.disks = &dip;
        md.n_disks = 1;
        rep = prepare("r3", "c1", 0, "db1:0", &mdp, 1);
        snprintf(want, sizeof(want),
                 "db1@host-a: prepare: disk vda: the catalog names \"%s\" as the cut's image, the agent's records "
                 "and chains give \"%s\": refused",
                 other, base("db1", "vda"));
        assert_string_equal(member_of(rep, "db1")->message, want);
        assert_string_equal(rep->message, "host-a: revert: prepare failed; nothing was touched");
        expect(rep, LOCKSTEP__ERROR_CODE__E_IMAGE_MISSING, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        rep = rstop("r3", 0);
        expect(rep, LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);
        assert_string_equal(disk("db1", 0), c1_db1);
        assert_false(exists(overlay(other, "db1", "vda", "r3")));
        assert_int_equal(run_state("db1"), HV_RUNNING);
        di.before = "relative.qcow2";
        rep = prepare("r3b", "c1", 0, "db1:0", &mdp, 1);
        assert_true(starts_with(member_of(rep, "db1")->message,
                                "db1@host-a: prepare: disk vda: the catalog names \"relative.qcow2\" as the cut's image"));
        expect(rep, LOCKSTEP__ERROR_CODE__E_IMAGE_MISSING, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        /* A hint that agrees is only checked. */
        di.before = (char *)base("db1", "vda");
        expect(prepare("r3c", "c1", 0, "db1:0", &mdp, 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rdecide("r3c", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_string_equal(disk("db1", 0), c1_db1);
        rep = prepare("r4", "r2", 1, "db1:0", NULL, 0);
        assert_true(starts_with(member_of(rep, "db1")->message,
                                "db1@host-a: prepare: no pre-revert branch of revert r2 here ("));
        expect(rep, LOCKSTEP__ERROR_CODE__E_IMAGE_MISSING, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_int_equal(run_state("db1"), HV_RUNNING);
        rep = rdecide("r9", 0);
        assert_string_equal(rep->message, "host-a: revert: unknown transaction, nothing to undo");
        expect(rep, LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_IDLE);
}

/* The catalog's images of web1's two disks (a hint per disk: vda's image is
 * vda_vm's, vdb's web1's own base) into md. */
static void web1_hints(Lockstep__MemberDisks *md, Lockstep__DiskImage di[2], Lockstep__DiskImage *dip[2],
                       char img[2][HV_PATH_MAX], const char *vda_vm)
{
        snprintf(img[0], HV_PATH_MAX, "%s", base(vda_vm, "vda"));
        snprintf(img[1], HV_PATH_MAX, "%s", base("web1", "vdb"));
        for (int k = 0; k < 2; k++) {
                lockstep__disk_image__init(&di[k]);
                di[k].disk = k ? "vdb" : "vda";
                di[k].before = img[k];
                dip[k] = &di[k];
        }
        lockstep__member_disks__init(md);
        md->vm = "web1";
        md->disks = dip;
        md->n_disks = 2;
}

/* A cut's images come from the agent's records: a disk's chain, then its
 * recorded pre-revert branches; a hint is used only for a cut none of them
 * holds any more, and only when it names a file of a chain the agent knows. */
static void test_revert_resolves_from_records(void **state)
{
        char c5_vda[HV_PATH_MAX], img[2][HV_PATH_MAX], want[2 * HV_PATH_MAX];
        Lockstep__DiskImage di[2], *dip[2];
        Lockstep__MemberDisks md, *mdp = &md;
        Lockstep__Reply *rep;

        (void)state;
        cut("c5", "web1:0 db1:1");
        cut("c6", "web1:0 db1:1");
        snprintf(c5_vda, sizeof(c5_vda), "%s", overlay(base("web1", "vda"), "web1", "vda", "c5"));
        revert("r5", "c5", 0, 1);

        /* c6's layer left the chain with r5's branch: found in its record. */
        expect(prepare("r7", "c6", 0, "web1:0 db1:1", NULL, 0), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_string_equal(live("r7")->m[0].imgs[0].before, c5_vda);
        expect(rdecide("r7", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* With r5's branch deleted, no record holds c5's layer. */
        expect(delete("bd5", "r5", 1, "web1:0 db1:1"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        assert_false(exists(c5_vda));
        rep = prepare("r8", "c5", 0, "web1:0", NULL, 0);
        assert_string_equal(member_of(rep, "web1")->message,
                            "web1@host-a: prepare: disk vda: no layer of cut c5 in its chain or in a recorded branch");
        expect(rep, LOCKSTEP__ERROR_CODE__E_IMAGE_MISSING, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* Then the catalog's image, a file of the disk's chain, is taken. */
        web1_hints(&md, di, dip, img, "web1");
        expect(prepare("r9", "c5", 0, "web1:0", &mdp, 1), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_string_equal(live("r9")->m[0].imgs[0].before, base("web1", "vda"));
        expect(rdecide("r9", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* But never a file outside those chains (another VM's image). */
        web1_hints(&md, di, dip, img, "db1");
        rep = prepare("r10", "c5", 0, "web1:0", &mdp, 1);
        snprintf(want, sizeof(want), "%s",
                 "web1@host-a: prepare: disk vda: no layer of cut c5 in its chain or in a recorded branch, and the "
                 "catalog's image is in neither");
        assert_string_equal(member_of(rep, "web1")->message, want);
        expect(rep, LOCKSTEP__ERROR_CODE__E_IMAGE_MISSING, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_false(exists(overlay(base("db1", "vda"), "web1", "vda", "r10")));
        assert_int_equal(run_state("web1"), HV_RUNNING);
}

/* ---- recovery ---- */

static void test_recover_cut(void **state)
{
        uint8_t *snap_reply;
        size_t snap_len;
        struct txn *t;

        (void)state;
        /* FROZEN when the agent died: thawed, can only abort. */
        expect(freeze("f1", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_true(frozen("web1"));
        crash_and_recover();
        assert_false(frozen("web1"));
        journal_is("f1", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        assert_true(live("f1")->lease_expired);
        expect(snapshot("f1"), LOCKSTEP__ERROR_CODE__E_LEASE_EXPIRED, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        expect(decide("f1", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* SNAPPED: the overlays wait for the decision; resends get stored replies. */
        expect(freeze("f2", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        expect(snapshot("f2"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        snap_reply = malloc(F.last_len);
        memcpy(snap_reply, F.last, F.last_len);
        snap_len = F.last_len;
        crash_and_recover();
        journal_is("f2", LOCKSTEP__JOURNAL_STATE__J_SNAPPED);
        lockstep__reply__free_unpacked(snapshot("f2"), NULL);
        assert_int_equal(F.last_len, snap_len);
        assert_memory_equal(F.last, snap_reply, snap_len);
        free(snap_reply);
        expect(decide("f2", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_COMMITTED);
        assert_string_equal(disk("web1", 0), overlay(base("web1", "vda"), "web1", "vda", "f2"));

        /* Died while snapshotting, before the record listed the overlays: they
         * are found on the domain and discarded. */
        expect(freeze("f3", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        expect(snapshot("f3"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_SNAPPED);
        t = live("f3");
        pthread_mutex_lock(&t->lock);
        t->state = LOCKSTEP__JOURNAL_STATE__J_SNAPPING;
        t->m[0].n_imgs = 0;
        assert_int_equal(txn_persist_or_log(F.mg, t), 0);
        pthread_mutex_unlock(&t->lock);
        crash_and_recover();
        assert_false(exists(overlay(base("db1", "vda"), "db1", "vda", "f3")));
        assert_string_equal(disk("db1", 0), base("db1", "vda"));
        journal_is("f3", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        assert_true(live("f3")->lease_expired);

        /* Died while freezing: the record holds the intent, so what may have
         * been frozen is thawed though the freeze had not returned. */
        expect(freeze("f5", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "web1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        t = live("f5");
        pthread_mutex_lock(&t->lock);
        t->state = LOCKSTEP__JOURNAL_STATE__J_FREEZING;
        t->m[0].quiesced = 0;
        assert_int_equal(txn_persist_or_log(F.mg, t), 0);
        pthread_mutex_unlock(&t->lock);
        assert_true(frozen("web1"));
        crash_and_recover();
        assert_false(frozen("web1"));
        journal_is("f5", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        expect(decide("f5", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);

        /* In doubt: only what waits for a decision. */
        Lockstep__InDoubt **v;
        size_t n;
        expect(freeze("f4", LOCKSTEP__MODE__MODE_QUIESCE, 10000, "db1:0"), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_FROZEN);
        assert_int_equal(txn_in_doubt(F.mg, &v, &n), 0);
        assert_int_equal(n, 2); /* f3 aborted by recovery, f4 frozen; f1, f2 decided */
        for (size_t i = 0; i < n; i++)
                assert_true(!strcmp(v[i]->txid, "f3") || !strcmp(v[i]->txid, "f4"));
        txn_in_doubt_free(v, n);
}

static void test_recover_revert(void **state)
{
        char c1_vda[HV_PATH_MAX], r5_vda[HV_PATH_MAX];

        (void)state;
        cut("c1", "web1:0 db1:1");
        snprintf(c1_vda, sizeof(c1_vda), "%s", overlay(base("web1", "vda"), "web1", "vda", "c1"));
        snprintf(r5_vda, sizeof(r5_vda), "%s", overlay(base("web1", "vda"), "web1", "vda", "r5"));
        expect(prepare("r5", "c1", 0, "web1:0 db1:1", NULL, 0), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rstop("r5", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rstop("r5", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rswitch("r5"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        assert_string_equal(disk("web1", 0), r5_vda);
        /* Died after SWITCH, before START: back on the pre-revert branch. */
        crash_and_recover();
        assert_string_equal(disk("web1", 0), c1_vda);
        assert_false(exists(r5_vda));
        assert_false(record_exists("r5", "web1"));
        assert_int_equal(run_state("web1"), HV_RUNNING);
        assert_int_equal(run_state("db1"), HV_RUNNING);
        journal_is("r5", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
        expect(rstart("r5", 0), LOCKSTEP__ERROR_CODE__E_BAD_STATE, LOCKSTEP__TXN_STATE__TXN_IDLE);

        /* Died after START: the revert waits for its decision. */
        expect(prepare("r6", "c1", 0, "web1:0 db1:1", NULL, 0), LOCKSTEP__ERROR_CODE__OK,
               LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rstop("r6", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rstop("r6", 1), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rswitch("r6"), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        expect(rstart("r6", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_REVERTING);
        crash_and_recover();
        journal_is("r6", LOCKSTEP__JOURNAL_STATE__J_R_STARTED);
        expect(rdecide("r6", 0), LOCKSTEP__ERROR_CODE__OK, LOCKSTEP__TXN_STATE__TXN_ABORTED);
        assert_string_equal(disk("web1", 0), c1_vda);
        journal_is("r6", LOCKSTEP__JOURNAL_STATE__J_ABORTED);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_freeze_snapshot_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_freeze_validates_tiers_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_freeze_pings_beside_check, setup, teardown),
                cmocka_unit_test_setup_teardown(test_freeze_no, setup, teardown),
                cmocka_unit_test_setup_teardown(test_freeze_by_tier, setup, teardown),
                cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lease, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lease_idle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keep_bound, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hook_unknown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hook_runs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hook_old_text, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revert_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revert_rollback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revert_resolves_from_records, setup, teardown),
                cmocka_unit_test_setup_teardown(test_recover_cut, setup, teardown),
                cmocka_unit_test_setup_teardown(test_recover_revert, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
