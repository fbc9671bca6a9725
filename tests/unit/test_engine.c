/* test_engine: the round (fan out, record in the catalog, vote) and the cut
 * built on it, against three agents that are real nng rep sockets in this
 * process, verifying every command with the agent's verifier and answering
 * with signed replies: yes, a no, silence (the deadline passes), nobody
 * listening at all, an unsigned wrong-key refusal, or a signed refusal of
 * another transaction. The catalog is a real SQLite file in a temp dir. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <nng/nng.h>

#include "engine_priv.h"
#include "fsutil.h"
#include "replay.h"
#include "slots.h"
#include "testutil.h"

#define N_AGENTS 3
#define MAX_SEEN 32

enum vote {
        YES,
        NO,         /* FREEZE refused for the member */
        SILENT,     /* FREEZE never answered */
        NOBODY,     /* no socket at the agent's URL */
        WRONG_KEY,  /* every command answered with the unsigned unknown-key code */
        FLIPPED,    /* FREEZE answered with a signed refusal of another txid */
        FORGOT,     /* a commit answered "unknown transaction": it ended here and was forgotten */
};

struct seen {
        Lockstep__Step step;
        int decision; /* DECIDE: Lockstep__Decision */
        int tier;     /* FREEZE by tier: its tier, else -1 */
        unsigned seq; /* order of arrival over all agents */
};

static unsigned seen_seq; /* atomically: the fakes answer on their own threads */

struct fake {
        char id[16], vm[16], url[600];
        struct catalog *cat; /* the engine's: looked at when SNAPSHOT comes */
        struct engine *health; /* set: a health pass runs when SNAPSHOT comes */
        int health_r;
        long audit_at_snapshot, pending_at_snapshot; /* -1: no SNAPSHOT seen */
        struct keys_secret *key;
        struct replay *rp;
        struct env_verifier *v;
        nng_socket sock;
        struct transport_server *srv;
        pthread_mutex_t lock;
        enum vote vote;
        size_t n_seen;
        struct seen seen[MAX_SEEN];
};

struct fx {
        char *dir;
        struct keys_secret *coord;
        struct fake agents[N_AGENTS];
        struct cfg_coord *cfg;
        struct catalog *cat;
        struct counter *ctr;
        struct slots *slots;
        struct engine *e;
};

static Lockstep__MemberResult *member_result(Lockstep__MemberResult *mr, Lockstep__Timings *tm, const char *vm,
                                             Lockstep__ErrorCode code, const char *message)
{
        lockstep__member_result__init(mr);
        lockstep__timings__init(tm);
        tm->freeze_us = 2000;
        mr->vm = (char *)vm;
        mr->code = code;
        mr->message = (char *)message;
        mr->timings = tm;
        return mr;
}

/* What the fake agent says to a verified command. */
static void answer(struct fake *a, const Lockstep__Command *cmd, Lockstep__Reply *rep, Lockstep__MemberResult **mrp,
                   Lockstep__MemberResult *mr, Lockstep__Timings *tm)
{
        int refuse = a->vote == NO && cmd->step == LOCKSTEP__STEP__STEP_FREEZE;

        rep->txid = cmd->txid;
        rep->step = cmd->step;
        rep->code = refuse ? LOCKSTEP__ERROR_CODE__E_FREEZE_FAILED : LOCKSTEP__ERROR_CODE__OK;
        rep->message = refuse ? "freeze refused" : "";
        mrp[0] = member_result(mr, tm, a->vm,
                               refuse ? LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT : LOCKSTEP__ERROR_CODE__OK,
                               refuse ? "vm2@host-b: freeze: guest agent not connected" : "");
        rep->members = mrp;
        rep->n_members = cmd->step == LOCKSTEP__STEP__STEP_STATUS ? 0 : 1;
}

static void note(struct fake *a, const Lockstep__Command *cmd)
{
        if (a->n_seen >= MAX_SEEN)
                return;
        a->seen[a->n_seen].step = cmd->step;
        a->seen[a->n_seen].seq = __atomic_add_fetch(&seen_seq, 1, __ATOMIC_SEQ_CST);
        a->seen[a->n_seen].tier = -1;
        if (cmd->payload_case == LOCKSTEP__COMMAND__PAYLOAD_FREEZE && cmd->freeze->by_tier)
                a->seen[a->n_seen].tier = (int)cmd->freeze->tier;
        if (cmd->payload_case == LOCKSTEP__COMMAND__PAYLOAD_DECIDE)
                a->seen[a->n_seen].decision = cmd->decide->decision;
        a->n_seen++;
}

/* What the catalog holds of txid while every guest is frozen (the engine
 * waits for this SNAPSHOT's answer meanwhile): audit rows, and members still
 * pending from BEGIN. */
static void look_at_catalog(struct fake *a, const char *txid)
{
        struct cat_audit *au = NULL;
        struct cat_member *m = NULL;
        size_t na = 0, nm = 0;
        lserr err = {0};

        a->audit_at_snapshot = a->pending_at_snapshot = -2;
        if (!a->cat || cat_audit_list(a->cat, txid, 1000, &au, &na, &err) < 0 ||
            cat_members(a->cat, txid, &m, &nm, &err) < 0)
                return;
        a->audit_at_snapshot = (long)na;
        a->pending_at_snapshot = 0;
        for (size_t i = 0; i < nm; i++)
                a->pending_at_snapshot += m[i].code == CAT_PENDING;
        free(au);
        free(m);
}

/* Runs on a server thread, where cmocka cannot fail a test: anything odd gets
 * no answer, and the engine's deadline shows in the test instead. */
static int handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        struct fake *a = arg;
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        Lockstep__MemberResult mr, *mrp[1];
        Lockstep__Timings tm;
        Lockstep__Command *cmd = NULL;
        const struct env_trusted *key = NULL;
        uint8_t hash[ENV_HASH_LEN];
        lserr err = {0};
        int r = -1;

        pthread_mutex_lock(&a->lock);
        if (env_body_hash(req, len, ENV_MAX_DEFAULT, hash) < 0 ||
            env_verify_command(a->v, req, len, fsutil_now_us(), &cmd, &key, NULL, &err) < 0)
                goto out;
        note(a, cmd);
        if (cmd->step == LOCKSTEP__STEP__STEP_SNAPSHOT)
                look_at_catalog(a, cmd->txid);
        if (cmd->step == LOCKSTEP__STEP__STEP_SNAPSHOT && a->health) {
                unsigned left = 0;
                lserr herr = {0};
                a->health_r = engine_health(a->health, &left, &herr);
        }
        if (a->vote == SILENT && cmd->step == LOCKSTEP__STEP__STEP_FREEZE)
                goto out;
        if (a->vote == WRONG_KEY) {
                r = env_seal_refusal(LS_EUNKNOWNKEY, ret, ret_len, &err);
                goto out;
        }
        rep.agent = a->id;
        rep.command_hash.data = hash;
        rep.command_hash.len = ENV_HASH_LEN;
        answer(a, cmd, &rep, mrp, &mr, &tm);
        if (a->vote == FLIPPED && cmd->step == LOCKSTEP__STEP__STEP_FREEZE) {
                /* Authentic, but of another transaction: what a bit flipped in
                 * the txid on the way would have the agent refuse. */
                rep.txid = "ls-flipped";
                rep.code = LOCKSTEP__ERROR_CODE__E_REJECTED;
                rep.reject_reason = LS_EROLE;
                rep.message = "host-b: command refused: role";
                rep.n_members = 0;
        }
        if (a->vote == FORGOT && cmd->step == LOCKSTEP__STEP__STEP_DECIDE &&
            cmd->decide->decision == LOCKSTEP__DECISION__DECISION_COMMIT) {
                rep.code = LOCKSTEP__ERROR_CODE__E_UNKNOWN_TXN;
                rep.message = "host-b: DECIDE: unknown transaction";
                rep.n_members = 0;
        }
        r = env_seal_reply(a->key, &rep, ret, ret_len, &err);
out:
        if (cmd)
                lockstep__command__free_unpacked(cmd, NULL);
        pthread_mutex_unlock(&a->lock);
        return r;
}

static void fake_start(struct fx *f, struct fake *a, int i)
{
        struct env_trusted t = {.roles = CFG_ROLE_ADMIN | CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE};
        char path[700];
        lserr err = {0};

        snprintf(a->id, sizeof(a->id), "host-%c", 'a' + i);
        snprintf(a->vm, sizeof(a->vm), "vm%d", i + 1);
        snprintf(a->url, sizeof(a->url), "ipc://%s/%s.sock", f->dir, a->id);
        pthread_mutex_init(&a->lock, NULL);
        assert_int_equal(keys_generate(&a->key, &err), 0);
        snprintf(path, sizeof(path), "%s/%s", f->dir, a->id);
        assert_int_equal(keys_write(path, a->key, &err), 0);
        t.pub = *keys_secret_public(f->coord);
        snprintf(t.name, sizeof(t.name), "coordinator");
        snprintf(path, sizeof(path), "%s/%s.replay", f->dir, a->id);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(replay_open(path, 1024, ENV_WINDOW_DEFAULT_US, &a->rp, &err), 0);
        assert_int_equal(env_verifier_new(a->id, &t, 1, a->rp, ENV_WINDOW_DEFAULT_US, ENV_MAX_DEFAULT, &a->v, &err), 0);
        assert_int_equal(transport_listen(a->url, ENV_MAX_DEFAULT, 0600, NULL, &a->sock, &err), 0);
        assert_int_equal(transport_serve(a->sock, 2, handle, a, &a->srv, &err), 0);
}

static void fake_stop(struct fake *a)
{
        if (a->srv)
                transport_server_stop(a->srv);
        a->srv = NULL;
        env_verifier_free(a->v);
        replay_free(a->rp);
        keys_secret_free(a->key);
        pthread_mutex_destroy(&a->lock);
}

static void load_config(struct fx *f, int reach)
{
        char *yaml = NULL, *path, nobody[600];
        lserr err = {0};

        snprintf(nobody, sizeof(nobody), "ipc://%s/nobody.sock", f->dir);
        assert_true(asprintf(&yaml,
                             "control: ipc://%1$s/control.sock\n"
                             "key: %1$s/coord.key\n"
                             "catalog: %1$s/catalog.db\n"
                             "step_timeout_s: 1\n"
                             "agents:\n"
                             "  - {id: host-a, url: \"%2$s\", pubkey: %1$s/host-a.pub}\n"
                             "  - {id: host-b, url: \"%3$s\", pubkey: %1$s/host-b.pub}\n"
                             "  - {id: host-c, url: \"%4$s\", pubkey: %1$s/host-c.pub}\n"
                             "groups:\n"
                             "  - name: shop\n"
                             "    tiers:\n"
                             "      - {name: web, members: [vm1@host-a]}\n"
                             "      - {name: app, members: [vm2@host-b]}\n"
                             "      - {name: db, members: [vm3@host-c]}\n"
                             "  - name: flat\n"
                             "    members: [vm1@host-a, vm2@host-b, vm3@host-c]\n",
                             f->dir, f->agents[0].url, f->agents[1].url, reach ? f->agents[2].url : nobody) > 0);
        path = tu_write(f->dir, "coordinator.yaml", yaml, 0600);
        assert_int_equal(cfg_coord_load(path, &f->cfg, &err), 0);
        free(path);
        free(yaml);
}

/* reach: host-c answers; else its URL names a socket nobody listens on. */
static int setup_with(void **state, int reach)
{
        struct fx *f = calloc(1, sizeof(*f));
        char path[700];
        lserr err = {0};

        f->dir = tu_mkdtemp();
        assert_int_equal(keys_generate(&f->coord, &err), 0);
        snprintf(path, sizeof(path), "%s/coord", f->dir);
        assert_int_equal(keys_write(path, f->coord, &err), 0);
        for (int i = 0; i < N_AGENTS; i++)
                fake_start(f, &f->agents[i], i);
        load_config(f, reach);
        snprintf(path, sizeof(path), "%s/catalog.db", f->dir);
        assert_int_equal(cat_open(path, &f->cat, &err), 0);
        for (int i = 0; i < N_AGENTS; i++) {
                f->agents[i].cat = f->cat;
                f->agents[i].audit_at_snapshot = f->agents[i].pending_at_snapshot = -1;
        }
        snprintf(path, sizeof(path), "%s/coord.counter", f->dir);
        assert_int_equal(counter_open(path, &f->ctr, &err), 0);
        assert_int_equal(slots_new(0, 0, &f->slots), 0);
        assert_int_equal(engine_new(f->cfg, f->coord, f->cat, f->ctr, f->slots, &f->e, &err), 0);
        *state = f;
        return 0;
}

static int setup(void **state)
{
        return setup_with(state, 1);
}

static int setup_nobody(void **state)
{
        return setup_with(state, 0);
}

static int teardown(void **state)
{
        struct fx *f = *state;

        engine_free(f->e);
        for (int i = 0; i < N_AGENTS; i++)
                fake_stop(&f->agents[i]);
        slots_free(f->slots);
        counter_free(f->ctr);
        cat_close(f->cat);
        cfg_coord_free(f->cfg);
        keys_secret_free(f->coord);
        tu_rmtree(f->dir);
        free(f);
        return 0;
}

/* One item per agent, as a cut of "shop" builds them. */
static void shop_items(struct fx *f, struct items *its)
{
        const struct cfg_group *g = cfg_coord_group(f->cfg, "shop");

        assert_int_equal(items_alloc(its, N_AGENTS), 0);
        for (unsigned i = 0; i < g->n_members; i++) {
                struct item *it = &its->v[its->n++];
                it->link = engine_link_of(f->e, g->members[i].agent);
                assert_non_null(it->link);
                assert_int_equal(item_members_alloc(it, 1), 0);
                item_add_member(it, g->members[i].vm, g->members[i].tier, 0);
        }
}

static void freeze_fill(struct item *it, const void *ctx)
{
        it->pl.freeze.snapshot = (char *)ctx;
        it->pl.freeze.lease_ms = 30000;
        it->pl.freeze.members = it->memberp;
        it->pl.freeze.n_members = it->n_members;
}

struct said {
        size_t n;
        char lines[8][700];
};

static void say(const struct round *rd, const struct item *it, const char *why)
{
        engine_emit(rd->p, "FREEZE   %-12s %s", agentlink_id(it->link), why ? why : "yes");
}

static void collect(void *arg, const char *line)
{
        struct said *s = arg;

        if (s->n < 8)
                snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s", line);
}

/* A FREEZE round of a begun transaction; returns its vote. */
static int freeze_round(struct fx *f, struct cat_txn *t, struct round *rd, struct said *s, struct progress *p)
{
        _cleanup_(items_freep) struct items its = {0};
        char txid[65];
        lserr err = {0};

        *t = (struct cat_txn){.kind = CAT_KIND_SNAPSHOT};
        snprintf(t->group, sizeof(t->group), "shop");
        snprintf(t->name, sizeof(t->name), "unit");
        snprintf(t->mode, sizeof(t->mode), "quiesce");
        shop_items(f, &its);
        assert_int_equal(engine_begin(f->e, t, &its, txid, &err), 0);
        assert_string_equal(txid, t->txid);
        /* Logged with its members, which bound the history (history_keep_members). */
        struct cat_txn logged;
        assert_int_equal(cat_txn_get(f->cat, t->txid, &logged, &err), 0);
        assert_int_equal(logged.members, cfg_coord_group(f->cfg, "shop")->n_members);
        *p = (struct progress){collect, s};
        *rd = (struct round){.e = f->e, .txid = t->txid, .step = LOCKSTEP__STEP__STEP_FREEZE, .timeout_ms = 1000,
                             .g = cfg_coord_group(f->cfg, "shop"), .pending = 1, .fill = freeze_fill, .say = say,
                             .ctx = "unit", .p = p};
        return engine_round(rd, its.v, its.n);
}

static const struct cat_member *member(const struct cat_member *m, size_t n, const char *vm)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(m[i].vm, vm))
                        return &m[i];
        fail_msg("member %s not recorded", vm);
        return NULL;
}

static void test_round_all_yes(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct cat_member *m = NULL;
        struct cat_txn t;
        struct round rd;
        struct said s = {0};
        struct progress p;
        size_t nm = 0;
        lserr err = {0};

        assert_int_equal(freeze_round(f, &t, &rd, &s, &p), 1);
        assert_string_equal(rd.reason, "");
        assert_int_equal(s.n, 3);
        assert_string_equal(s.lines[0], "FREEZE   host-a       yes");
        assert_string_equal(s.lines[2], "FREEZE   host-c       yes");
        /* Every answer is in the catalog, with the tier the group gives it. */
        assert_int_equal(cat_members(f->cat, t.txid, &m, &nm, &err), 0);
        assert_int_equal(nm, 3);
        assert_int_equal(member(m, nm, "vm2")->code, LOCKSTEP__ERROR_CODE__OK);
        assert_string_equal(member(m, nm, "vm2")->tier_name, "app");
        assert_int_equal(member(m, nm, "vm3")->freeze_us, 2000);
        for (int i = 0; i < N_AGENTS; i++) {
                assert_int_equal(f->agents[i].n_seen, 1);
                assert_int_equal(f->agents[i].seen[0].step, LOCKSTEP__STEP__STEP_FREEZE);
        }
}

static void test_round_one_no(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct cat_member *m = NULL;
        struct cat_txn t;
        struct round rd;
        struct said s = {0};
        struct progress p;
        size_t nm = 0;
        lserr err = {0};

        f->agents[1].vote = NO;
        assert_int_equal(freeze_round(f, &t, &rd, &s, &p), 0);
        /* The member's own words, not the reply's summary. */
        assert_string_equal(rd.reason, "vm2@host-b: freeze: guest agent not connected");
        assert_string_equal(s.lines[1], "FREEZE   host-b       vm2@host-b: freeze: guest agent not connected");
        assert_int_equal(cat_members(f->cat, t.txid, &m, &nm, &err), 0);
        assert_int_equal(member(m, nm, "vm2")->code, LOCKSTEP__ERROR_CODE__E_NO_GUEST_AGENT);
        assert_string_equal(member(m, nm, "vm2")->message, "vm2@host-b: freeze: guest agent not connected");
        assert_int_equal(member(m, nm, "vm1")->code, LOCKSTEP__ERROR_CODE__OK);
}

static void test_round_silent(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct cat_member *m = NULL;
        struct cat_txn t;
        struct round rd;
        struct said s = {0};
        struct progress p;
        size_t nm = 0;
        lserr err = {0};
        char want[700];

        f->agents[1].vote = SILENT;
        assert_int_equal(freeze_round(f, &t, &rd, &s, &p), 0);
        snprintf(want, sizeof(want), "agent \"host-b\" (%s): FREEZE: no answer before the deadline", f->agents[1].url);
        assert_string_equal(rd.reason, want);
        /* The silent agent's member is pending, with the reason. */
        assert_int_equal(cat_members(f->cat, t.txid, &m, &nm, &err), 0);
        assert_int_equal(member(m, nm, "vm2")->code, CAT_PENDING);
        assert_string_equal(member(m, nm, "vm2")->message, want);
        assert_int_equal(member(m, nm, "vm3")->code, LOCKSTEP__ERROR_CODE__OK);
}

static void test_round_unreachable(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct cat_member *m = NULL;
        struct cat_txn t;
        struct round rd;
        struct said s = {0};
        struct progress p;
        size_t nm = 0;
        lserr err = {0};

        /* host-c's URL names a socket nobody listens on. */
        assert_int_equal(freeze_round(f, &t, &rd, &s, &p), 0);
        assert_non_null(strstr(rd.reason, "agent \"host-c\""));
        assert_non_null(strstr(rd.reason, "nobody.sock"));
        assert_int_equal(f->agents[2].n_seen, 0);
        assert_int_equal(cat_members(f->cat, t.txid, &m, &nm, &err), 0);
        assert_int_equal(member(m, nm, "vm3")->code, CAT_PENDING);
        assert_int_equal(member(m, nm, "vm1")->code, LOCKSTEP__ERROR_CODE__OK);
}

/* A signed refusal that names another transaction is ignored like any reply
 * to another command: the agent's member stays pending with the reason. */
static void test_round_refusal_of_other_txn_ignored(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct cat_member *m = NULL;
        struct cat_txn t;
        struct round rd;
        struct said s = {0};
        struct progress p;
        size_t nm = 0;
        lserr err = {0};

        f->agents[1].vote = FLIPPED;
        assert_int_equal(freeze_round(f, &t, &rd, &s, &p), 0);
        if (!strstr(rd.reason, "agent \"host-b\": FREEZE: reply ignored: it answers transaction \"ls-flipped\""))
                fail_msg("reason: %s", rd.reason);
        assert_int_equal(cat_members(f->cat, t.txid, &m, &nm, &err), 0);
        assert_int_equal(member(m, nm, "vm2")->code, CAT_PENDING);
}

/* check tells an agent that does not trust our key (its unsigned refusal code)
 * from one that does not answer, per agent. */
static void test_check_wrong_key_and_unreachable(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct engine_check_member *out = NULL;
        size_t n = 0;
        lserr err = {0};

        f->agents[1].vote = WRONG_KEY;
        assert_int_equal(engine_check(f->e, "shop", -1, 0, &out, &n, &err), 1);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++) {
                if (!strcmp(out[i].agent, "host-a")) {
                        assert_true(out[i].ok);
                } else if (!strcmp(out[i].agent, "host-b")) {
                        assert_string_equal(out[i].code, "WRONG_KEY");
                        if (!strstr(out[i].message, "agent \"host-b\": CHECK: refused the command before checking "
                                                    "its signature (unknown-key, unsigned)"))
                                fail_msg("host-b: %s", out[i].message);
                } else {
                        /* Found without a connection before the round: not waited for. */
                        assert_string_equal(out[i].code, "UNREACHABLE");
                        assert_non_null(strstr(out[i].message, "agent \"host-c\": not connected"));
                }
        }
}

/* Which steps agent a saw, as one string ("FREEZE:0 FREEZE:1 SNAPSHOT
 * DECIDE:commit"; a FREEZE by tier says its tier). */
static void steps_of(const struct fake *a, char *out, size_t n)
{
        size_t off = 0;

        out[0] = '\0';
        for (size_t i = 0; i < a->n_seen && off < n; i++) {
                const char *s = env_step_name(a->seen[i].step);
                if (a->seen[i].step == LOCKSTEP__STEP__STEP_DECIDE)
                        off += (size_t)snprintf(out + off, n - off, i ? " DECIDE:%s" : "DECIDE:%s",
                                                a->seen[i].decision == LOCKSTEP__DECISION__DECISION_COMMIT ? "commit"
                                                                                                          : "abort");
                else if (a->seen[i].tier >= 0)
                        off += (size_t)snprintf(out + off, n - off, i ? " %s:%d" : "%s:%d", s, a->seen[i].tier);
                else
                        off += (size_t)snprintf(out + off, n - off, i ? " %s" : "%s", s);
        }
}

static void cut_group(struct fx *f, const char *group, int want_r, struct cat_txn *ret)
{
        struct engine_cut_req req = {.group = group, .name = NULL, .mode = -1};
        char txid[65] = "";
        lserr err = {0};

        assert_int_equal(engine_snapshot(f->e, &req, NULL, NULL, txid, &err), want_r);
        assert_string_equal(err.msg, "");
        assert_int_equal(cat_txn_get(f->cat, txid, ret, &err), 0);
}

/* A cut of "shop": three tiers, one member each on host-a, -b, -c. */
static void cut(struct fx *f, int want_r, struct cat_txn *ret)
{
        cut_group(f, "shop", want_r, ret);
}

static void test_cut_all_yes_commits(void **state)
{
        struct fx *f = *state;
        struct cat_txn t;
        char steps[200];

        cut(f, 0, &t);
        assert_int_equal(t.state, CAT_TXN_DONE);
        assert_true(t.committed);
        /* Every agent hears tier 0's FREEZE (its validation); a later tier's
         * goes only to the agent with a member in it. */
        const char *want[N_AGENTS] = {"FREEZE:0 SNAPSHOT DECIDE:commit", "FREEZE:0 FREEZE:1 SNAPSHOT DECIDE:commit",
                                      "FREEZE:0 FREEZE:2 SNAPSHOT DECIDE:commit"};
        for (int i = 0; i < N_AGENTS; i++) {
                steps_of(&f->agents[i], steps, sizeof(steps));
                assert_string_equal(steps, want[i]);
        }
}

static int step_rank(const char *step)
{
        return !strcmp(step, "FREEZE") ? 0 : !strcmp(step, "SNAPSHOT") ? 1 : 2;
}

/* Between the first FREEZE and the last thaw the catalog is not written: when
 * SNAPSHOT reaches an agent, the cut's members are the placeholders of BEGIN
 * and no audit row of it is written yet. After the cut, everything is: each
 * agent's FREEZE, SNAPSHOT and DECIDE sent and received, every member's
 * outcome with its timings. */
static void test_cut_no_catalog_write_while_frozen(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct cat_audit *au = NULL;
        _cleanup_free_ struct cat_member *m = NULL;
        size_t na = 0, nm = 0, sent = 0, recv = 0;
        lserr err = {0};
        struct cat_txn t;

        cut(f, 0, &t);
        for (int i = 0; i < N_AGENTS; i++) {
                assert_int_equal(f->agents[i].audit_at_snapshot, 0);
                assert_int_equal(f->agents[i].pending_at_snapshot, N_AGENTS);
        }
        assert_int_equal(cat_audit_list(f->cat, t.txid, 1000, &au, &na, &err), 0);
        for (size_t i = 0; i < na; i++) {
                sent += au[i].dir == CAT_SENT;
                recv += au[i].dir == CAT_RECEIVED;
        }
        /* FREEZE of tier 0 to all, of tiers 1 and 2 to host-b and host-c;
         * SNAPSHOT and DECIDE to each. */
        assert_int_equal(sent, 3 * N_AGENTS + 2);
        assert_int_equal(recv, 3 * N_AGENTS + 2);
        /* Stamped when sent or answered, not when written (agent by agent,
         * after the thaw): in time order every FREEZE row comes before every
         * SNAPSHOT row, and those before the DECIDE rows. */
        for (size_t i = 1; i < na; i++)
                assert_true(step_rank(au[i].step) >= step_rank(au[i - 1].step));
        assert_int_equal(cat_members(f->cat, t.txid, &m, &nm, &err), 0);
        assert_int_equal(nm, N_AGENTS);
        for (size_t i = 0; i < nm; i++) {
                assert_int_equal(m[i].code, LOCKSTEP__ERROR_CODE__OK);
                assert_int_equal(m[i].freeze_us, 2000);
        }
}

/* Tiers are frozen one at a time across all agents: every agent's FREEZE of
 * tier k is answered before any agent hears of tier k + 1 (host-c's db may
 * only freeze once web and app are frozen everywhere). */
static void test_cut_tiers_in_order(void **state)
{
        struct fx *f = *state;
        unsigned last_of[3] = {0}, first_of[3] = {~0u, ~0u, ~0u};
        struct cat_txn t;

        cut(f, 0, &t);
        assert_true(t.committed);
        for (int i = 0; i < N_AGENTS; i++)
                for (size_t k = 0; k < f->agents[i].n_seen; k++) {
                        const struct seen *x = &f->agents[i].seen[k];
                        if (x->step != LOCKSTEP__STEP__STEP_FREEZE)
                                continue;
                        assert_in_range(x->tier, 0, 2);
                        last_of[x->tier] = x->seq > last_of[x->tier] ? x->seq : last_of[x->tier];
                        first_of[x->tier] = x->seq < first_of[x->tier] ? x->seq : first_of[x->tier];
                }
        assert_true(last_of[0] < first_of[1]);
        assert_true(last_of[1] < first_of[2]);
}

/* A group of one tier is frozen in one FREEZE per agent, as before tiers
 * were rounds of their own. */
static void test_cut_one_tier_one_freeze(void **state)
{
        struct fx *f = *state;
        struct cat_txn t;
        char steps[200];

        cut_group(f, "flat", 0, &t);
        assert_true(t.committed);
        for (int i = 0; i < N_AGENTS; i++) {
                steps_of(&f->agents[i], steps, sizeof(steps));
                assert_string_equal(steps, "FREEZE SNAPSHOT DECIDE:commit");
        }
}

static size_t seen_of(const struct fake *a, Lockstep__Step step)
{
        size_t n = 0;

        for (size_t k = 0; k < a->n_seen; k++)
                n += a->seen[k].step == step;
        return n;
}

/* The periodic health pass does not poll the agents of a running cut (their
 * rounds answer for them; a fleet's cut would pay twice for signatures in its
 * frozen window): run while every guest is frozen, it sends no STATUS. Once
 * the cut is over, it polls every agent. */
static void test_health_skips_agents_in_a_cut(void **state)
{
        struct fx *f = *state;
        unsigned left = 0;
        lserr err = {0};
        struct cat_txn t;

        f->agents[0].health = f->e;
        cut(f, 0, &t);
        assert_true(t.committed);
        assert_int_equal(f->agents[0].health_r, 0);
        for (int i = 0; i < N_AGENTS; i++)
                assert_int_equal(seen_of(&f->agents[i], LOCKSTEP__STEP__STEP_STATUS), 0);
        f->agents[0].health = NULL;
        assert_int_equal(engine_health(f->e, &left, &err), 0);
        for (int i = 0; i < N_AGENTS; i++)
                assert_int_equal(seen_of(&f->agents[i], LOCKSTEP__STEP__STEP_STATUS), 1);
}

/* The first draws of the txid all give one id, as two cuts of one second
 * may (24 random bits); then the real generator. */
static int same_txid_left;
static void same_txid(char out[65])
{
        if (same_txid_left > 0) {
                same_txid_left--;
                snprintf(out, 65, "ls-20991231T235959-abcdef");
        } else {
                engine_make_txid(out);
        }
}

/* A txid that is already logged is drawn again: the second cut, whose first
 * three draws give the first cut's id, commits under an id of its own (in
 * the 100,000-cut soak a prune's delete drew a cut's id and failed). */
static void test_cut_txid_taken_is_drawn_again(void **state)
{
        struct fx *f = *state;
        struct cat_txn a, b;

        f->e->make_txid = same_txid;
        same_txid_left = 4;
        cut(f, 0, &a);
        assert_string_equal(a.txid, "ls-20991231T235959-abcdef");
        cut(f, 0, &b);
        assert_int_equal(same_txid_left, 0);
        assert_true(b.committed);
        assert_string_not_equal(b.txid, a.txid);
}

/* One no and nobody takes a snapshot: every agent hears ABORT, the one that
 * said no too (it may hold a frozen member). */
static void test_cut_one_no_aborts_all(void **state)
{
        struct fx *f = *state;
        struct cat_txn t;
        char steps[200];

        f->agents[1].vote = NO;
        cut(f, 1, &t);
        assert_int_equal(t.state, CAT_TXN_DONE);
        assert_false(t.committed);
        assert_string_equal(t.reason, "vm2@host-b: freeze: guest agent not connected");
        for (int i = 0; i < N_AGENTS; i++) {
                steps_of(&f->agents[i], steps, sizeof(steps));
                assert_string_equal(steps, "FREEZE:0 DECIDE:abort");
        }
}

/* A silent agent is a no: the others are aborted, and so is it, once it
 * answers again. */
static void test_cut_silent_aborts(void **state)
{
        struct fx *f = *state;
        struct cat_txn t;
        char steps[200];

        f->agents[0].vote = SILENT;
        cut(f, 1, &t);
        assert_false(t.committed);
        assert_non_null(strstr(t.reason, "no answer before the deadline"));
        for (int i = 0; i < N_AGENTS; i++) {
                steps_of(&f->agents[i], steps, sizeof(steps));
                assert_string_equal(steps, "FREEZE:0 DECIDE:abort");
        }
}

/* An agent without a connection: the cut stops before FREEZE, nothing is sent
 * to any agent (nobody is frozen waiting for it to time out), and the abort is
 * logged and finished at once: nobody holds anything to be told. */
static void test_cut_unconnected_sends_nothing(void **state)
{
        struct fx *f = *state;
        _cleanup_free_ struct cat_member *m = NULL;
        struct cat_txn t;
        size_t nm = 0;
        lserr err = {0};
        char steps[200];

        cut(f, 1, &t);
        assert_int_equal(t.state, CAT_TXN_DONE);
        assert_false(t.committed);
        assert_non_null(strstr(t.reason, "agent \"host-c\": not connected"));
        assert_non_null(strstr(t.reason, "nobody.sock"));
        assert_non_null(strstr(t.reason, "nothing was sent, nothing frozen"));
        for (int i = 0; i < N_AGENTS; i++) {
                steps_of(&f->agents[i], steps, sizeof(steps));
                assert_string_equal(steps, "");
        }
        /* Every member says why it was not cut. */
        assert_int_equal(cat_members(f->cat, t.txid, &m, &nm, &err), 0);
        assert_int_equal(nm, 3);
        assert_int_equal(member(m, nm, "vm3")->code, CAT_PENDING);
        assert_non_null(strstr(member(m, nm, "vm3")->message, "not connected"));
        assert_string_equal(member(m, nm, "vm1")->message, "not sent: agent \"host-c\" is not connected");
}

/* An agent keeps an ended transaction only a while, and nothing in doubt is
 * forgotten: a commit it no longer knows was told before. Resent after that
 * (recovery, a restarted lockstepd), it is done, not retried forever. */
static void test_cut_commit_forgotten_is_told(void **state)
{
        struct fx *f = *state;
        struct cat_txn t;
        char steps[200];

        f->agents[1].vote = FORGOT;
        cut(f, 0, &t);
        assert_true(t.committed);
        assert_int_equal(t.state, CAT_TXN_DONE);
        steps_of(&f->agents[1], steps, sizeof(steps));
        assert_string_equal(steps, "FREEZE:0 FREEZE:1 SNAPSHOT DECIDE:commit");
}

/* A refusal before anything is sent is the caller's to log: err filled
 * once, nothing begun. */
static void test_cut_refused_fills_err_once(void **state)
{
        struct fx *f = *state;
        struct engine_cut_req req = {.group = "nope", .mode = -1};
        char txid[65] = "";
        lserr err = {0};

        assert_int_equal(engine_snapshot(f->e, &req, NULL, NULL, txid, &err), -ENOENT);
        assert_string_equal(err.msg, "group \"nope\" is not in the configuration");
        assert_string_equal(txid, "");
        lserr_clear(&err);
        assert_int_equal(engine_delete(f->e, "ls-none", NULL, NULL, txid, &err), -ENOENT);
        assert_string_equal(err.msg, "no cut \"ls-none\" in the catalog");
        lserr_clear(&err);
        assert_int_equal(engine_revert(f->e, "ls-none", 1, NULL, NULL, txid, &err), -ENOENT);
        assert_string_equal(err.msg, "no revert \"ls-none\" in the catalog");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_all_yes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_one_no, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_silent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_unreachable, setup_nobody, teardown),
                cmocka_unit_test_setup_teardown(test_round_refusal_of_other_txn_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_wrong_key_and_unreachable, setup_nobody, teardown),
                cmocka_unit_test_setup_teardown(test_cut_all_yes_commits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_no_catalog_write_while_frozen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_txid_taken_is_drawn_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_tiers_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_health_skips_agents_in_a_cut, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_one_tier_one_freeze, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_one_no_aborts_all, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_silent_aborts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_unconnected_sends_nothing, setup_nobody, teardown),
                cmocka_unit_test_setup_teardown(test_cut_commit_forgotten_is_told, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cut_refused_fills_err_once, setup, teardown),
        };

        int rc = cmocka_run_group_tests(tests, NULL, NULL);

        /* nng frees closed sockets on its reaper thread: wait for it, so that
         * LeakSanitizer at exit sees nothing still being torn down. */
        nng_fini();
        return rc;
}
