/* engine: what the engine's transactions (engine_cut/delete/revert/recover.c)
 * share: the round (fan out, record, vote), begin, decide and tell, slots. */
#include "engine_priv.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clockskew.h"
#include "fsutil.h"
#include "log.h"
#include "names.h"
#include "slots.h"
#include "strset.h"
#include "transport.h"

#define DECIDE_TRIES 3

/* Set once when lockstepd stops: calls still out end at once and nothing is
 * retried; what is left undone is in the catalog, and recovery goes on with
 * it at the next start. */
static atomic_int stopping;

void engine_stop_all(void)
{
        atomic_store(&stopping, 1);
}

/* How long a transaction waits for the fleet limits or a shared member. */
#define SLOT_WAIT_MS (10 * 60 * 1000)

void engine_emit(const struct progress *p, const char *fmt, ...)
{
        char line[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log_info("%s", line);
        if (p && p->fn)
                p->fn(p->arg, line);
}

long engine_link_index(const struct engine *e, const char *agent)
{
        return e->link_set ? strset_get(e->link_set, agent, "") : -1;
}

struct agentlink *engine_link_of(struct engine *e, const char *agent)
{
        long i = engine_link_index(e, agent);

        return i < 0 ? NULL : e->links[i];
}

int engine_step_ms(const struct engine *e)
{
        return (int)e->cfg->step_timeout_s * 1000;
}

/* Every agent's index under its id: a round of a fleet looks each one up. */
static int index_links(struct engine *e)
{
        e->link_set = strset_new(e->n_links);
        if (!e->link_set)
                return -ENOMEM;
        for (size_t k = 0; k < e->n_links; k++)
                strset_add(e->link_set, agentlink_id(e->links[k]), "", (long)k);
        return 0;
}

static void engine_freep(struct engine **e)
{
        engine_free(*e);
}

void engine_set_fence(struct engine *e, const struct agentlink_fence *f)
{
        for (size_t i = 0; i < e->n_links; i++)
                agentlink_set_fence(e->links[i], f);
}

int engine_new(const struct cfg_coord *cfg, const struct keys_secret *key, struct catalog *cat, struct counter *ctr,
               struct slots *slots, struct engine **ret, lserr *err)
{
        _cleanup_(engine_freep) struct engine *e = calloc(1, sizeof(*e));
        int r;

        if (!e)
                return -ENOMEM;
        e->cfg = cfg;
        e->key = key;
        e->cat = cat;
        e->ctr = ctr;
        e->slots = slots;
        e->make_txid = engine_make_txid;
        e->links = calloc(cfg->n_agents ? cfg->n_agents : 1, sizeof(*e->links));
        e->fingerprints = calloc(cfg->n_agents ? cfg->n_agents : 1, sizeof(*e->fingerprints));
        if (!e->links || !e->fingerprints)
                return -ENOMEM;
        for (unsigned i = 0; i < cfg->n_agents; i++) {
                const struct cfg_peer *peer = &cfg->agents[i];
                struct transport_tls tls = {.ca = peer->tls_ca, .server_name = peer->server_name};
                struct keys_public pub;
                lserr e2 = {0};
                r = keys_load_public(peer->pubkey, &pub, &e2);
                if (r < 0)
                        return lserr_set(err, r, "agent \"%s\": public key: %s", peer->id, e2.msg);
                keys_fingerprint(pub.id, e->fingerprints[i]);
                r = agentlink_open(peer->id, peer->url, &pub, key, e->ctr, &tls, &e->links[i], err);
                if (r < 0)
                        return r;
                e->n_links++;
        }
        if (index_links(e) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(e);
        return 0;
}

struct engine *engine_free(struct engine *e)
{
        if (!e)
                return NULL;
        for (size_t i = 0; i < e->n_links; i++)
                agentlink_close(e->links[i]);
        free(e->links);
        strset_free(e->link_set);
        free(e->fingerprints);
        free(e);
        return NULL;
}

/* ---- fan-out ------------------------------------------------------------- */

static void hex(const uint8_t *b, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* The audit is a record, not the transaction: a row that cannot be kept is
 * logged here, the one place that knows, and the step goes on. at_us 0: now.
 * An answer is stamped when it came, not when it is written (after the round,
 * or after the frozen window): the report's reply times come from these rows. */
static void audit_at(struct item *it, enum cat_dir dir, int code, const char *detail, long long at_us)
{
        struct cat_audit *a;

        if (it->n_aud == it->cap_aud) {
                size_t cap = it->cap_aud ? 2 * it->cap_aud : 4;
                struct cat_audit *v = reallocarray(it->aud, cap, sizeof(*v));
                if (!v) {
                        log_err("audit: %s %s of agent \"%s\": out of memory", it->cmd.txid ? it->cmd.txid : "",
                                env_step_name(it->cmd.step), agentlink_id(it->link));
                        return;
                }
                it->aud = v;
                it->cap_aud = cap;
        }
        a = &it->aud[it->n_aud++];
        *a = (struct cat_audit){.at_us = at_us ? at_us : fsutil_now_us(), .dir = dir, .code = code};
        snprintf(a->txid, sizeof(a->txid), "%s", it->cmd.txid ? it->cmd.txid : "");
        snprintf(a->agent, sizeof(a->agent), "%s", agentlink_id(it->link));
        snprintf(a->step, sizeof(a->step), "%s", env_step_name(it->cmd.step));
        /* Most rows have none: no allocation for those. A detail that cannot
         * be copied is left out, the row kept. */
        a->detail = detail && detail[0] ? strdup(detail) : NULL;
        hex(it->req.hash, ENV_HASH_LEN, a->hash_hex);
}

static void audit(struct item *it, enum cat_dir dir, int code, const char *detail)
{
        audit_at(it, dir, code, detail, 0);
}

/* Seals an item's command into call c and records the send. On failure the
 * item's err says why and c is not to be sent. */
static int fan_out_seal(struct item *it, struct transport_call *c)
{
        int r;

        free(it->req.buf);
        it->req.buf = NULL;
        r = agentlink_seal(it->link, &it->cmd, &it->req, &it->err);
        if (r < 0)
                return r;
        audit(it, CAT_SENT, 0, NULL);
        *c = (struct transport_call){
                .sock = agentlink_socket(it->link), .req = it->req.buf, .len = it->req.len, .user = it};
        it->call = c;
        return 0;
}

/* The item's call ended: its reply verified, or the reason it has none. */
static void take_reply(struct item *it)
{
        struct transport_call *c = it->call;

        it->call = NULL;
        it->recv_us = c->done_us;
        if (c->rc < 0) {
                agentlink_fail(it->link, &it->cmd, c->rc, &it->err);
                audit_at(it, CAT_IGNORED, c->rc, it->err.msg, c->done_us);
        } else if (agentlink_accept(it->link, &it->cmd, &it->req, c->resp, c->resp_len, c->done_us, &it->rep,
                                    &it->err) < 0) {
                audit_at(it, CAT_IGNORED, it->err.code, it->err.msg, c->done_us);
        } else {
                audit_at(it, CAT_RECEIVED, it->rep->code, it->rep->message, c->done_us);
        }
        free(c->resp);
        c->resp = NULL;
}

static void take_reply_of(void *arg, struct transport_call *c)
{
        (void)arg;
        take_reply(c->user);
}

/* Sends the k sealed calls at once and gives every item that had one its
 * verified reply or the reason it has none. Each reply is checked as it comes
 * in, while the round waits for the slowest agent: a fleet's thousand
 * signature checks are not added after the last answer. The reason is the
 * item's to report (a round's progress line, an agent's last error): not
 * logged here. */
static void fan_out_round(struct item *items, size_t n, struct transport_call *calls, size_t k, int timeout_ms)
{
        transport_call_all_each(calls, k, timeout_ms, &stopping, take_reply_of, NULL);
        /* The calls that never started, if any. */
        for (size_t i = 0; i < n; i++)
                if (items[i].call)
                        take_reply(&items[i]);
}

/* An agent that refused its command for a stale counter gets it once more,
 * sealed past the counter it reported, in a second round for those agents
 * only. That round has a deadline of its own: a slow agent may have used up
 * the first. Once only: a second stale-counter refusal is the item's reply,
 * so a peer cannot keep a step looping. */
void engine_fan_out(struct item *items, size_t n, int timeout_ms)
{
        _cleanup_free_ struct transport_call *calls = calloc(n ? n : 1, sizeof(*calls));
        size_t k = 0;

        if (!calls) {
                for (size_t i = 0; i < n; i++)
                        lserr_set(&items[i].err, -ENOMEM, "out of memory");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                if (items[i].idle)
                        continue;
                lserr_clear(&items[i].err);
                items[i].rep = NULL;
                if (fan_out_seal(&items[i], &calls[k]) == 0)
                        k++;
        }
        fan_out_round(items, n, calls, k, timeout_ms);
        k = 0;
        for (size_t i = 0; i < n; i++) {
                struct item *it = &items[i];
                int r = it->rep && !it->idle ? agentlink_heal_counter(it->link, &it->cmd, it->rep, &it->err) : 0;
                if (r == 0)
                        continue;
                lockstep__reply__free_unpacked(it->rep, NULL);
                it->rep = NULL;
                if (r < 0) {
                        /* The counter cannot follow the agent: every later
                         * command to it fails the same way until an operator
                         * looks. An error for the log, beyond this step. */
                        log_err("%s", it->err.msg);
                        audit(it, CAT_IGNORED, r, it->err.msg);
                        continue;
                }
                if (fan_out_seal(it, &calls[k]) == 0)
                        k++;
        }
        if (k)
                fan_out_round(items, n, calls, k, timeout_ms);
}

/* ---- catalog records ------------------------------------------------------- */

/* Replies are the record of the cut, but the agents hold the truth: a row
 * that cannot be written is logged here (nobody else hears of it) and the
 * step goes on. */
static void put_member(struct engine *e, const char *txid, const struct cat_member *m)
{
        lserr err = {0};

        if (cat_put_member(e->cat, txid, m, &err) < 0)
                log_err("%s", err.msg);
}

static void record_images(struct engine *e, const char *txid, const char *agent, const Lockstep__MemberResult *mr)
{
        for (size_t d = 0; d < mr->n_disks; d++) {
                struct cat_image im = {0};
                lserr err = {0};
                snprintf(im.agent, sizeof(im.agent), "%s", agent);
                snprintf(im.vm, sizeof(im.vm), "%s", mr->vm);
                snprintf(im.disk, sizeof(im.disk), "%s", mr->disks[d]->disk);
                /* A revert records the pre-revert branch: what --undo goes back to. */
                im.before = mr->disks[d]->branch[0] ? mr->disks[d]->branch : mr->disks[d]->before;
                im.after = mr->disks[d]->after;
                if (cat_put_image(e->cat, txid, &im, &err) < 0)
                        log_err("%s", err.msg);
        }
}

/* An agent's reply rep to the item's command: each member's outcome, with its
 * tier as the item has it (the agent's own members, not the whole group). */
static void record_reply(struct engine *e, const char *txid, const struct item *it, const Lockstep__Reply *rep,
                         const struct cfg_group *g)
{
        for (size_t i = 0; i < rep->n_members; i++) {
                const Lockstep__MemberResult *mr = rep->members[i];
                struct cat_member m = {0};
                snprintf(m.agent, sizeof(m.agent), "%s", agentlink_id(it->link));
                snprintf(m.vm, sizeof(m.vm), "%s", mr->vm);
                for (size_t k = 0; k < it->n_members; k++)
                        if (!strcmp(it->memberp[k]->vm, mr->vm)) {
                                m.tier = it->memberp[k]->tier;
                                snprintf(m.tier_name, sizeof(m.tier_name), "%s",
                                         m.tier < g->n_tiers ? g->tiers[m.tier] : "");
                                break;
                        }
                m.code = mr->code;
                m.message = mr->message;
                if (mr->timings) {
                        m.freeze_us = mr->timings->freeze_us;
                        m.snapshot_us = mr->timings->snapshot_us;
                        m.thaw_us = mr->timings->thaw_us;
                        m.frozen_for_us = mr->timings->frozen_for_us;
                        m.frozen_at_us = mr->timings->frozen_at_us;
                        m.thawed_at_us = mr->timings->thawed_at_us;
                }
                put_member(e, txid, &m);
                record_images(e, txid, m.agent, mr);
        }
        /* A refused command names no member: each of the agent's gets the why. */
        for (size_t i = 0; !rep->n_members && rep->code != LOCKSTEP__ERROR_CODE__OK && i < it->n_members; i++) {
                struct cat_member m = {.tier = it->memberp[i]->tier, .code = rep->code};
                snprintf(m.agent, sizeof(m.agent), "%s", agentlink_id(it->link));
                snprintf(m.vm, sizeof(m.vm), "%s", it->memberp[i]->vm);
                snprintf(m.tier_name, sizeof(m.tier_name), "%s", m.tier < g->n_tiers ? g->tiers[m.tier] : "");
                m.message = rep->message;
                put_member(e, txid, &m);
        }
}

/* Members whose agent gave no verified answer (yet): code CAT_PENDING and the
 * reason, if any. Also written at BEGIN so recovery knows every agent. */
void engine_record_silence(struct engine *e, const char *txid, const struct item *it)
{
        for (size_t i = 0; i < it->n_members; i++) {
                struct cat_member m = {0};
                snprintf(m.agent, sizeof(m.agent), "%s", agentlink_id(it->link));
                snprintf(m.vm, sizeof(m.vm), "%s", it->memberp[i]->vm);
                m.tier = it->memberp[i]->tier;
                m.code = CAT_PENDING;
                m.message = it->err.msg;
                put_member(e, txid, &m);
        }
}

void engine_write_audit(struct engine *e, struct item *it, int keep)
{
        for (size_t k = 0; k < it->n_aud; k++) {
                lserr err = {0};
                if (keep && cat_audit_add(e->cat, &it->aud[k], &err) < 0)
                        log_err("audit: %s", err.msg);
                free((char *)it->aud[k].detail); /* audit_at's copy */
        }
        it->n_aud = 0;
}

/* The items' records, in the caller's batch (or one transaction each). */
static void record_items(struct engine *e, const char *txid, struct item *items, size_t n,
                         const struct cfg_group *g)
{
        for (size_t i = 0; i < n; i++) {
                struct item *it = &items[i];
                engine_write_audit(e, it, 1);
                for (size_t k = 0; k < it->n_held; k++) {
                        if (g)
                                record_reply(e, txid, it, it->held[k], g);
                        lockstep__reply__free_unpacked(it->held[k], NULL);
                }
                it->n_held = 0;
                it->keep_rep = 0;
                if (it->rep && g)
                        record_reply(e, txid, it, it->rep, g);
                else if (!it->rep && it->silent_pending)
                        engine_record_silence(e, txid, it);
                it->silent_pending = 0;
        }
}

/* The items' records in one batch and, when finish, the transaction's
 * finish with them (on etcd one transaction for both). Failures are logged. */
static void record_batch(struct engine *e, const char *txid, struct item *items, size_t n, const struct cfg_group *g,
                         int finish)
{
        lserr err = {0};
        /* Without a batch the rows still go, one transaction each. */
        int batch = cat_batch_begin(e->cat, &err) == 0;

        if (!batch)
                log_err("%s", err.msg);
        record_items(e, txid, items, n, g);
        lserr_clear(&err);
        if (finish && cat_txn_finish(e->cat, txid, &err) < 0)
                log_err("%s", err.msg);
        lserr_clear(&err);
        if (batch && cat_batch_end(e->cat, &err) < 0)
                log_err("%s", err.msg);
}

void engine_record_items(struct engine *e, const char *txid, struct item *items, size_t n,
                         const struct cfg_group *g)
{
        record_batch(e, txid, items, n, g, 0);
}

int engine_record_and_decide(struct engine *e, const char *txid, struct item *items, size_t n,
                             const struct cfg_group *g, int commit, const char *reason, const struct progress *p,
                             lserr *err)
{
        lserr why = {0};
        /* Without a batch: the records one by one, then the decision alone. */
        int batch = cat_batch_begin(e->cat, &why) == 0, r;

        if (!batch)
                log_err("%s", why.msg);
        record_items(e, txid, items, n, g);
        r = cat_txn_decide(e->cat, txid, commit, commit ? "" : reason, err);
        /* The decision is logged once the batch is on disk, not before. */
        lserr_clear(&why);
        if (batch && cat_batch_end(e->cat, &why) < 0 && r == 0)
                r = lserr_set(err, why.code, "%s", why.msg);
        if (r < 0) {
                /* The why is in err, for the daemon to log once. */
                engine_emit(p, "DECIDE   cannot log the decision: agents hear ABORT from recovery");
                return r;
        }
        engine_emit(p, "DECIDE   %s logged", commit ? "COMMIT" : "ABORT");
        return 0;
}

/* ---- the round ------------------------------------------------------------- */

int engine_round(struct round *rd, struct item *items, size_t n)
{
        size_t yes_n = 0;
        int yes = 1;

        for (size_t i = 0; i < n; i++) {
                items[i].idle = rd->skip && rd->skip(&items[i], rd->ctx);
                if (items[i].idle)
                        continue;
                item_step(&items[i], rd->txid, rd->step);
                if (rd->fill)
                        rd->fill(&items[i], rd->ctx);
        }
        engine_fan_out(items, n, rd->timeout_ms);
        for (size_t i = 0; i < n; i++) {
                if (items[i].idle)
                        continue;
                items[i].silent_pending = !items[i].rep && rd->pending;
                items[i].keep_rep = rd->defer && rd->g;
        }
        if (!rd->defer)
                engine_record_items(rd->e, rd->txid, items, n, rd->g);
        for (size_t i = 0; i < n; i++) {
                const struct item *it = &items[i];
                char why[ENGINE_REASON_MAX];
                if (it->idle) {
                        yes_n++; /* its yes of an earlier round stands */
                        items[i].idle = 0;
                        continue;
                }
                if (item_ok(it)) {
                        items[i].said_yes = 1;
                        /* A fleet's yes lines would drown its one no. */
                        if (rd->say && n <= ENGINE_SAY_MAX)
                                rd->say(rd, it, NULL);
                        yes_n++;
                        continue;
                }
                item_why(it, why, sizeof(why));
                snprintf(rd->reason, sizeof(rd->reason), "%s", why);
                if (rd->say)
                        rd->say(rd, it, why);
                yes = 0;
        }
        if (rd->say && n > ENGINE_SAY_MAX)
                engine_emit(rd->p, "%-8s %zu of %zu agent(s) yes", env_step_name(rd->step), yes_n, n);
        return yes;
}

/* ---- begin and decide -------------------------------------------------------- */

void engine_make_txid(char out[65])
{
        struct timespec ts;
        struct tm tm;
        uint8_t rnd[3];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        randombytes_buf(rnd, sizeof(rnd));
        snprintf(out, 65, "ls-%04d%02d%02dT%02d%02d%02d-%02x%02x%02x", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, rnd[0], rnd[1], rnd[2]);
}

int engine_begin(struct engine *e, struct cat_txn *t, const struct items *its, char ret_txid[65], lserr *err)
{
        int fresh = !t->txid[0], r;

        /* The history is bounded in member rows too (history_keep_members). */
        t->members = 0;
        for (size_t i = 0; i < its->n; i++)
                t->members += (unsigned)its->v[i].n_members;

        for (int tries = 0;; tries++) {
                if (fresh)
                        e->make_txid(t->txid);
                t->started_us = fsutil_now_us();
                r = cat_txn_begin(e->cat, t, err);
                if (r != -EEXIST || !fresh || tries + 1 >= ENGINE_TXID_DRAWS)
                        break;
                lserr_clear(err);
        }
        if (r < 0)
                return r;
        snprintf(ret_txid, 65, "%s", t->txid);
        return 0;
}

int engine_log_decision(struct engine *e, const char *txid, int commit, const char *reason,
                        const struct progress *p, lserr *err)
{
        return engine_record_and_decide(e, txid, NULL, 0, NULL, commit, reason, p, err);
}

struct tell_ctx {
        int commit, revert, attempt;
};

static void tell_fill(struct item *it, const void *ctx)
{
        const struct tell_ctx *c = ctx;
        Lockstep__Decision d = c->commit ? LOCKSTEP__DECISION__DECISION_COMMIT : LOCKSTEP__DECISION__DECISION_ABORT;

        if (c->revert)
                it->pl.rdecide.decision = d;
        else
                it->pl.decide.decision = d;
}

/* An agent forgets an ended transaction after a while (TXN_KEEP_*), never one
 * in doubt: a decision it no longer knows reached it before, and asking again
 * would never end. (An abort it never knew it answers OK itself.) */
static int forgotten(const struct item *it)
{
        return it->rep && it->rep->code == LOCKSTEP__ERROR_CODE__E_UNKNOWN_TXN;
}

static void tell_say(const struct round *rd, const struct item *it, const char *why)
{
        const struct tell_ctx *c = rd->ctx;
        const char *id = agentlink_id(it->link);

        if (forgotten(it))
                engine_emit(rd->p, "DECIDE   %-12s no longer keeps it: it ended there before", id);
        else if (why)
                engine_emit(rd->p, "DECIDE   %-12s not confirmed (try %d of %d): %s", id, c->attempt + 1, DECIDE_TRIES,
                            why);
        else if (c->commit)
                engine_emit(rd->p, "DECIDE   %-12s committed", id);
        else if (c->revert)
                engine_emit(rd->p, "DECIDE   %-12s aborted, members back on their pre-revert branch", id);
        else
                engine_emit(rd->p, "DECIDE   %-12s aborted, nothing left behind", id);
}

size_t engine_tell(struct engine *e, const char *txid, struct agentlink *const *links, size_t n, int commit,
                   int revert, int finish, const struct progress *p)
{
        _cleanup_free_ int *done = calloc(n ? n : 1, sizeof(*done));
        struct tell_ctx c = {.commit = commit, .revert = revert};
        /* Each try's audit rows are written after it, with the finish once
         * every agent confirmed. */
        struct round rd = {.e = e, .txid = txid, .timeout_ms = engine_step_ms(e), .fill = tell_fill,
                           .say = tell_say, .ctx = &c, .p = p, .defer = 1,
                           .step = revert ? LOCKSTEP__STEP__STEP_REVERT_DECIDE : LOCKSTEP__STEP__STEP_DECIDE};
        size_t left = n;

        if (!done)
                return n;
        for (c.attempt = 0; c.attempt < DECIDE_TRIES && left && !atomic_load(&stopping); c.attempt++) {
                _cleanup_(items_freep) struct items sub = {0};
                if (items_alloc(&sub, left) < 0)
                        break;
                for (size_t i = 0; i < n; i++)
                        if (!done[i])
                                sub.v[sub.n++].link = links[i];
                engine_round(&rd, sub.v, sub.n);
                for (size_t j = 0, i = 0; j < sub.n; j++) {
                        /* sub holds the links not done yet, in links' order. */
                        while (i < n && links[i] != sub.v[j].link)
                                i++;
                        assert(i < n);
                        if (item_ok(&sub.v[j]) || forgotten(&sub.v[j])) {
                                done[i] = 1;
                                left--;
                        }
                }
                record_batch(e, txid, sub.v, sub.n, NULL, finish && left == 0);
        }
        if (n == 0 && finish) /* nobody to tell */
                record_batch(e, txid, NULL, 0, NULL, 1);
        return left;
}

/* An agent that refused a cut's FREEZE for its clock holds nothing of the
 * transaction: the signed refusal answers that very command (its hash), which
 * it never ran, and no copy of it went out again (no resends; a counter heal
 * seals a new one, and only after a refusal). Told the decision, it would
 * refuse that too, and the cut would stay undecided for us until its clock is
 * fixed. */
static int never_held(const struct item *it)
{
        /* By tier, a refusal of a later tier's FREEZE comes after a yes: that
         * agent holds the front tiers. */
        return it->rep && it->rep->step == LOCKSTEP__STEP__STEP_FREEZE && clockskew_refused(it->rep) &&
               !it->said_yes;
}

void engine_tell_items(struct engine *e, const char *txid, const struct item *items, size_t n, int commit,
                       int revert, const struct progress *p)
{
        _cleanup_free_ struct agentlink **links = calloc(n ? n : 1, sizeof(*links));
        size_t left = n, k = 0, unsent = 0;

        if (links) {
                for (size_t i = 0; i < n; i++) {
                        if (items[i].unsent)
                                unsent++;
                        else if (never_held(&items[i]))
                                engine_emit(p, "DECIDE   %-12s nothing to tell: it refused FREEZE for its clock",
                                            agentlink_id(items[i].link));
                        else
                                links[k++] = items[i].link;
                }
                if (unsent)
                        engine_emit(p, "DECIDE   nothing to tell %zu agent(s): nothing was sent to them", unsent);
                /* Decided and told: an unfinished row only makes recovery tell again. */
                left = engine_tell(e, txid, links, k, commit, revert, 1, p);
        }
        if (left)
                engine_emit(p, "DECIDE   %zu agent(s) did not confirm; lockstepd keeps retrying (lockstep recover)",
                            left);
}

/* ---- slots ------------------------------------------------------------------ */

#define MEMBER_ID_MAX (2 * (LS_NAME_MAX + 1) + 2)

/* Takes the group's slot for members vm[i]@agent[i]; says so in the progress
 * when it has to wait for the limits or another group's hold on a member. */
static int take_slot(struct engine *e, const char *group, const char *const *vm, const char *const *agent, size_t n,
                     const struct progress *p, lserr *err)
{
        _cleanup_free_ const char **members = calloc(n ? n : 1, sizeof(*members));
        _cleanup_free_ const char **agents = calloc(n ? n : 1, sizeof(*agents));
        _cleanup_free_ char *buf = calloc(n ? n : 1, MEMBER_ID_MAX);
        _cleanup_free_ unsigned char *seen = calloc(e->n_links ? e->n_links : 1, 1);
        struct slots_need need = {.group = group, .agents = agents, .members = members, .n_members = n};
        lserr why = {0};
        int r;

        if (!members || !agents || !buf || !seen)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char *m = buf + i * MEMBER_ID_MAX;
                long li = engine_link_index(e, agent[i]);
                int dup = 0;
                snprintf(m, MEMBER_ID_MAX, "%s@%s", vm[i], agent[i]);
                members[i] = m;
                if (li >= 0) {
                        dup = seen[li];
                        seen[li] = 1;
                } else { /* a recorded member whose agent is no longer configured: rare */
                        for (size_t k = 0; k < need.n_agents; k++)
                                dup |= !strcmp(agents[k], agent[i]);
                }
                if (!dup)
                        agents[need.n_agents++] = agent[i];
        }
        r = slots_take(e->slots, &need, 0, &why);
        if (r == -EAGAIN) {
                engine_emit(p, "WAIT     %s", why.msg);
                return slots_take(e->slots, &need, SLOT_WAIT_MS, err);
        }
        if (r < 0)
                return lserr_set(err, r, "%s", why.msg);
        return 0;
}

int engine_take_slot_cfg(struct engine *e, const struct cfg_group *g, const struct progress *p, lserr *err)
{
        _cleanup_free_ const char **vm = calloc(g->n_members ? g->n_members : 1, sizeof(*vm));
        _cleanup_free_ const char **ag = calloc(g->n_members ? g->n_members : 1, sizeof(*ag));

        if (!vm || !ag)
                return -ENOMEM;
        for (unsigned i = 0; i < g->n_members; i++) {
                vm[i] = g->members[i].vm;
                ag[i] = g->members[i].agent;
        }
        return take_slot(e, g->name, vm, ag, g->n_members, p, err);
}

int engine_take_slot_cat(struct engine *e, const char *group, const struct cat_member *m, size_t n,
                         const struct progress *p, lserr *err)
{
        _cleanup_free_ const char **vm = calloc(n ? n : 1, sizeof(*vm));
        _cleanup_free_ const char **ag = calloc(n ? n : 1, sizeof(*ag));

        if (!vm || !ag)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                vm[i] = m[i].vm;
                ag[i] = m[i].agent;
        }
        return take_slot(e, group, vm, ag, n, p, err);
}

/* ---- items of a recorded transaction ------------------------------------------ */

/* The group's crash-consistent members (vm, agent -> 1), for a recorded
 * transaction's thousands of members to look up. NULL without a group. */
static struct strset *crash_members(const struct cfg_group *g)
{
        struct strset *s = g ? strset_new(g->n_members) : NULL;

        for (unsigned i = 0; s && i < g->n_members; i++)
                if (g->members[i].crash)
                        strset_add(s, g->members[i].vm, g->members[i].agent, 1);
        return s;
}

static const char *cat_member_agent(const void *ctx, size_t i)
{
        return ((const struct cat_member *)ctx)[i].agent;
}

int engine_items_of(struct engine *e, const char *txid, const struct cfg_group *g, struct cat_member **ret_m,
                    size_t *ret_nm, struct items *ret, lserr *err)
{
        _cleanup_free_ struct cat_member *m = NULL;
        _cleanup_(items_freep) struct items its = {0};
        _cleanup_(strset_freep) struct strset *crash = crash_members(g);
        _cleanup_free_ size_t *item = NULL;
        size_t nm = 0, bad = 0;
        int r = cat_members(e->cat, txid, &m, &nm, err);

        if (r < 0)
                return r;
        item = calloc(nm ? nm : 1, sizeof(*item));
        if (!item || (g && !crash))
                return -ENOMEM;
        r = items_by_agent(e, nm, cat_member_agent, m, &its, item, &bad);
        if (r == -ENOENT)
                return lserr_set(err, -EINVAL, "%s: member %s@%s: agent no longer configured", txid, m[bad].vm,
                                 m[bad].agent);
        if (r < 0)
                return r;
        for (size_t i = 0; i < nm; i++)
                item_add_member(&its.v[item[i]], m[i].vm, m[i].tier,
                                crash && strset_get(crash, m[i].vm, m[i].agent) == 1);
        *ret_m = TAKE_PTR(m);
        *ret_nm = nm;
        *ret = its;
        its = (struct items){0};
        return 0;
}

/* The images of a cut by member: first[vm, agent] is the first one's index
 * in im, next[k] the same member's next one (-1: none). */
struct image_index {
        struct strset *first;
        long *next;
};

static void image_index_free(struct image_index *x)
{
        strset_free(x->first);
        free(x->next);
}

static int image_index_build(struct image_index *x, const struct cat_image *im, size_t ni)
{
        x->first = strset_new(ni);
        x->next = malloc((ni ? ni : 1) * sizeof(*x->next));
        if (!x->first || !x->next)
                return -ENOMEM;
        for (size_t k = ni; k-- > 0;)
                x->next[k] = strset_put(x->first, im[k].vm, im[k].agent, (long)k);
        return 0;
}

/* One item's member disks: the images of im that are its agent's. */
static int attach_item_images(struct item *it, const struct cat_image *im, const struct image_index *x)
{
        const char *agent = agentlink_id(it->link);
        size_t nm = it->n_members, nd = 0, ni = 0;

        for (size_t k = 0; k < nm; k++)
                for (long q = strset_get(x->first, it->memberp[k]->vm, agent); q >= 0; q = x->next[q])
                        ni++;
        it->mdisks = calloc(nm ? nm : 1, sizeof(*it->mdisks));
        it->mdiskp = calloc(nm ? nm : 1, sizeof(*it->mdiskp));
        it->dimgs = calloc(ni ? ni : 1, sizeof(*it->dimgs));
        it->dimgp = calloc(ni ? ni : 1, sizeof(*it->dimgp));
        if (!it->mdisks || !it->mdiskp || !it->dimgs || !it->dimgp)
                return -ENOMEM;
        for (size_t k = 0; k < nm; k++) {
                Lockstep__MemberDisks *md = &it->mdisks[k];
                lockstep__member_disks__init(md);
                md->vm = it->memberp[k]->vm;
                md->disks = &it->dimgp[nd];
                for (long q = strset_get(x->first, md->vm, agent); q >= 0; q = x->next[q]) {
                        /* (agent, vm) is unique among an item's members, so
                         * every image lands in one member at most. */
                        assert(nd < ni);
                        Lockstep__DiskImage *di = &it->dimgs[nd];
                        lockstep__disk_image__init(di);
                        di->disk = (char *)im[q].disk;
                        di->before = (char *)im[q].before;
                        it->dimgp[nd++] = di;
                        md->n_disks++;
                }
                /* No images recorded: the agent looks in the chain. */
                if (md->n_disks)
                        it->mdiskp[it->n_mdisks++] = md;
        }
        return 0;
}

/* Gives each agent the cut's image per disk from the catalog (repathed by
 * deletes), so a cut can be reverted to from any branch. */
int engine_attach_cut_images(struct engine *e, const char *txid, struct items *its, struct cat_image **ret_im,
                             lserr *err)
{
        _cleanup_(image_index_free) struct image_index x = {0};
        struct cat_image *im = NULL;
        size_t ni = 0;
        int r = cat_images(e->cat, txid, &im, &ni, err);

        if (r < 0)
                return r;
        *ret_im = im;
        if (image_index_build(&x, im, ni) < 0)
                return lserr_set(err, -ENOMEM, "revert of %s: out of memory", txid);
        for (size_t i = 0; i < its->n; i++)
                if (attach_item_images(&its->v[i], im, &x) < 0)
                        return lserr_set(err, -ENOMEM, "revert of %s: out of memory", txid);
        return 0;
}
