/* engine: FREEZE / SNAPSHOT / DECIDE across agents, recovery, health. */
#include "engine.h"

#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agentlink.h"
#include "counter.h"
#include "fsutil.h"
#include "lockstep.pb-c.h"
#include "log.h"
#include "names.h"
#include "report.h"
#include "slots.h"
#include "transport.h"

#define DECIDE_TRIES 3

struct engine {
        const struct cfg_coord *cfg;
        const struct keys_secret *key;
        struct catalog *cat;
        struct counter *ctr;      /* borrowed: it outlives a config reload */
        struct slots *slots;      /* borrowed, as the counter */
        struct agentlink **links; /* one per cfg->agents[i] */
        size_t n_links;
};

/* One agent's part of one step. */
struct item {
        struct agentlink *link;
        Lockstep__Command cmd;
        Lockstep__FreezeRequest freeze;
        Lockstep__SnapshotRequest snapshot;
        Lockstep__DecideRequest decide;
        Lockstep__DeleteRequest del;
        Lockstep__RevertPrepareRequest rprep;
        Lockstep__RevertStopRequest rstop;
        Lockstep__RevertSwitchRequest rswitch;
        Lockstep__RevertStartRequest rstart;
        Lockstep__RevertDecideRequest rdecide;
        Lockstep__StatusRequest status;
        Lockstep__CheckRequest check;
        Lockstep__Member *members; /* freeze payload */
        Lockstep__Member **memberp;
        Lockstep__MemberDisks *mdisks; /* revert prepare: the cut's images */
        Lockstep__MemberDisks **mdiskp;
        size_t n_mdisks;
        Lockstep__DiskImage *dimgs;
        Lockstep__DiskImage **dimgp;
        struct agentlink_req req;
        struct transport_call *call; /* its slot in the current fan-out */
        Lockstep__Reply *rep;      /* verified reply, or NULL */
        lserr err;                 /* why there is none */
};

/* Fault injection for crash tests: LOCKSTEP_FAILPOINT=<name> stops the
 * coordinator at that point (it sleeps until killed), so a test can kill -9 it
 * exactly there. Names: "after-snapshot" (replies in, nothing decided),
 * "after-decide" (decision logged, not yet sent), "revert-after-switch" (disks
 * switched, nothing started or decided). */
static void failpoint(const char *name)
{
        const char *fp = getenv("LOCKSTEP_FAILPOINT");

        if (!fp || strcmp(fp, name) != 0)
                return;
        log_warn("failpoint %s reached: stopping here until killed", name);
        for (;;)
                pause();
}

static void emit(engine_event_fn ev, void *arg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void emit(engine_event_fn ev, void *arg, const char *fmt, ...)
{
        char line[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log_info("%s", line);
        if (ev)
                ev(arg, line);
}

static struct agentlink *link_of(struct engine *e, const char *agent)
{
        for (size_t i = 0; i < e->n_links; i++)
                if (!strcmp(agentlink_id(e->links[i]), agent))
                        return e->links[i];
        return NULL;
}

int engine_new(const struct cfg_coord *cfg, const struct keys_secret *key, struct catalog *cat, struct counter *ctr,
               struct slots *slots, struct engine **ret, lserr *err)
{
        struct engine *e = calloc(1, sizeof(*e));
        int r = 0;

        if (!e)
                return -ENOMEM;
        e->cfg = cfg;
        e->key = key;
        e->cat = cat;
        e->ctr = ctr;
        e->slots = slots;
        e->links = calloc(cfg->n_agents ? cfg->n_agents : 1, sizeof(*e->links));
        if (!e->links) {
                r = -ENOMEM;
                goto fail;
        }
        for (unsigned i = 0; i < cfg->n_agents; i++) {
                const struct cfg_peer *p = &cfg->agents[i];
                struct keys_public pub;
                lserr e2 = {0};
                r = keys_load_public(p->pubkey, &pub, &e2);
                if (r < 0) {
                        lserr_set(err, r, "agent \"%s\": public key: %s", p->id, e2.msg);
                        goto fail;
                }
                r = agentlink_open(p->id, p->url, &pub, key, e->ctr, NULL, &e->links[i], err);
                if (r < 0)
                        goto fail;
                e->n_links++;
        }
        *ret = e;
        return 0;
fail:
        engine_free(e);
        return r;
}

struct engine *engine_free(struct engine *e)
{
        if (!e)
                return NULL;
        for (size_t i = 0; i < e->n_links; i++)
                agentlink_close(e->links[i]);
        free(e->links);
        free(e);
        return NULL;
}

/* ---- fan-out ------------------------------------------------------------- */

static void hex(const uint8_t *b, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void audit(struct engine *e, const struct item *it, enum cat_dir dir, int code, const char *detail)
{
        struct cat_audit a = {.at_us = fsutil_now_us(), .dir = dir, .code = code};
        lserr err = {0};

        snprintf(a.txid, sizeof(a.txid), "%s", it->cmd.txid ? it->cmd.txid : "");
        snprintf(a.agent, sizeof(a.agent), "%s", agentlink_id(it->link));
        snprintf(a.step, sizeof(a.step), "%s", env_step_name(it->cmd.step));
        snprintf(a.detail, sizeof(a.detail), "%s", detail ? detail : "");
        hex(it->req.hash, ENV_HASH_LEN, a.hash_hex);
        if (cat_audit_add(e->cat, &a, &err) < 0)
                log_err("audit: %s", err.msg);
}

/* Seals an item's command into call c and records the send. On failure the
 * item's err says why and c is not to be sent. */
static int fan_out_seal(struct engine *e, struct item *it, struct transport_call *c)
{
        int r;

        free(it->req.buf);
        it->req.buf = NULL;
        r = agentlink_seal(it->link, &it->cmd, &it->req, &it->err);
        if (r < 0)
                return r;
        audit(e, it, CAT_SENT, 0, NULL);
        *c = (struct transport_call){.sock = agentlink_socket(it->link), .req = it->req.buf, .len = it->req.len};
        it->call = c;
        return 0;
}

/* Sends the k sealed calls at once and gives every item that had one its
 * verified reply or the reason it has none. */
static void fan_out_round(struct engine *e, struct item *items, size_t n, struct transport_call *calls, size_t k,
                          int timeout_ms)
{
        transport_call_all(calls, k, timeout_ms);
        for (size_t i = 0; i < n; i++) {
                struct item *it = &items[i];
                struct transport_call *c = it->call;
                it->call = NULL;
                if (!c)
                        continue;
                if (c->rc < 0) {
                        lserr_set(&it->err, c->rc, "agent \"%s\" (%s): %s: %s", agentlink_id(it->link),
                                  agentlink_url(it->link), env_step_name(it->cmd.step),
                                  c->rc == LS_ETIMEDOUT ? "no answer before the deadline" : "connection failed");
                        audit(e, it, CAT_IGNORED, c->rc, it->err.msg);
                } else if (agentlink_accept(it->link, &it->cmd, &it->req, c->resp, c->resp_len, &it->rep, &it->err) < 0) {
                        log_warn("%s", it->err.msg);
                        audit(e, it, CAT_IGNORED, it->err.code, it->err.msg);
                } else {
                        audit(e, it, CAT_RECEIVED, it->rep->code, it->rep->message);
                }
                free(c->resp);
        }
}

/* Sends every item's command at once and collects verified replies. An agent
 * that refused its command for a stale counter gets it once more, sealed past
 * the counter it reported, in a second round for those agents only. That round
 * has a deadline of its own: a slow agent may have used up the first. */
static void fan_out(struct engine *e, struct item *items, size_t n, int timeout_ms)
{
        struct transport_call *calls = calloc(n ? n : 1, sizeof(*calls));
        size_t k = 0;

        if (!calls) {
                for (size_t i = 0; i < n; i++)
                        lserr_set(&items[i].err, -ENOMEM, "out of memory");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                lserr_clear(&items[i].err);
                items[i].rep = NULL;
                if (fan_out_seal(e, &items[i], &calls[k]) == 0)
                        k++;
        }
        fan_out_round(e, items, n, calls, k, timeout_ms);
        /* Once only: a second stale-counter refusal is the item's reply, so a
         * peer cannot keep a step looping. */
        k = 0;
        for (size_t i = 0; i < n; i++) {
                struct item *it = &items[i];
                int r = it->rep ? agentlink_heal_counter(it->link, &it->cmd, it->rep, &it->err) : 0;
                if (r == 0)
                        continue;
                lockstep__reply__free_unpacked(it->rep, NULL);
                it->rep = NULL;
                if (r < 0) {
                        log_err("%s", it->err.msg);
                        audit(e, it, CAT_IGNORED, r, it->err.msg);
                        continue;
                }
                if (fan_out_seal(e, it, &calls[k]) == 0)
                        k++;
        }
        if (k)
                fan_out_round(e, items, n, calls, k, timeout_ms);
        free(calls);
}

static void items_free(struct item *items, size_t n)
{
        for (size_t i = 0; items && i < n; i++) {
                free(items[i].req.buf);
                free(items[i].members);
                free(items[i].memberp);
                free(items[i].mdisks);
                free(items[i].mdiskp);
                free(items[i].dimgs);
                free(items[i].dimgp);
                if (items[i].rep)
                        lockstep__reply__free_unpacked(items[i].rep, NULL);
        }
        free(items);
}

static void set_step(struct item *it, const char *txid, Lockstep__Step step)
{
        lockstep__command__init(&it->cmd);
        it->cmd.txid = (char *)txid;
        it->cmd.step = step;
        if (it->rep)
                lockstep__reply__free_unpacked(it->rep, NULL);
        it->rep = NULL;
        switch (step) {
        case LOCKSTEP__STEP__STEP_FREEZE:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
                it->cmd.freeze = &it->freeze;
                break;
        case LOCKSTEP__STEP__STEP_SNAPSHOT:
                lockstep__snapshot_request__init(&it->snapshot);
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_SNAPSHOT;
                it->cmd.snapshot = &it->snapshot;
                break;
        case LOCKSTEP__STEP__STEP_DECIDE:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DECIDE;
                it->cmd.decide = &it->decide;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_PREPARE:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_PREPARE;
                it->cmd.revert_prepare = &it->rprep;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_STOP:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_STOP;
                it->cmd.revert_stop = &it->rstop;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_SWITCH:
                lockstep__revert_switch_request__init(&it->rswitch);
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_SWITCH;
                it->cmd.revert_switch = &it->rswitch;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_START:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_START;
                it->cmd.revert_start = &it->rstart;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_DECIDE:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_DECIDE;
                it->cmd.revert_decide = &it->rdecide;
                break;
        case LOCKSTEP__STEP__STEP_CHECK:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_CHECK;
                it->cmd.check = &it->check;
                break;
        case LOCKSTEP__STEP__STEP_DELETE:
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_DELETE;
                it->cmd.delete_ = &it->del;
                break;
        default:
                lockstep__status_request__init(&it->status);
                it->cmd.payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
                it->cmd.status = &it->status;
                break;
        }
}

static int item_ok(const struct item *it)
{
        return it->rep && it->rep->code == LOCKSTEP__ERROR_CODE__OK;
}

/* The first reason an agent's answer was not a yes, for the log and the user. */
static void why_not(const struct item *it, char *out, size_t n)
{
        if (!it->rep) {
                snprintf(out, n, "%s", it->err.msg);
                return;
        }
        for (size_t i = 0; i < it->rep->n_members; i++)
                if (it->rep->members[i]->code != LOCKSTEP__ERROR_CODE__OK && it->rep->members[i]->message[0]) {
                        snprintf(out, n, "%s", it->rep->members[i]->message);
                        return;
                }
        snprintf(out, n, "%s", it->rep->message[0] ? it->rep->message : "refused");
}

/* ---- catalog records ------------------------------------------------------- */

static void record_reply(struct engine *e, const char *txid, const struct item *it, const struct cfg_group *g)
{
        lserr err = {0};

        if (!it->rep)
                return;
        for (size_t i = 0; i < it->rep->n_members; i++) {
                const Lockstep__MemberResult *mr = it->rep->members[i];
                struct cat_member m = {0};
                snprintf(m.agent, sizeof(m.agent), "%s", agentlink_id(it->link));
                snprintf(m.vm, sizeof(m.vm), "%s", mr->vm);
                for (unsigned k = 0; k < g->n_members; k++)
                        if (!strcmp(g->members[k].vm, mr->vm) && !strcmp(g->members[k].agent, m.agent)) {
                                m.tier = g->members[k].tier;
                                snprintf(m.tier_name, sizeof(m.tier_name), "%s", g->tiers[m.tier]);
                        }
                m.code = mr->code;
                snprintf(m.message, sizeof(m.message), "%s", mr->message);
                if (mr->timings) {
                        m.freeze_us = mr->timings->freeze_us;
                        m.snapshot_us = mr->timings->snapshot_us;
                        m.thaw_us = mr->timings->thaw_us;
                        m.frozen_for_us = mr->timings->frozen_for_us;
                        m.frozen_at_us = mr->timings->frozen_at_us;
                        m.thawed_at_us = mr->timings->thawed_at_us;
                }
                if (cat_put_member(e->cat, txid, &m, &err) < 0)
                        log_err("%s", err.msg);
                for (size_t d = 0; d < mr->n_disks; d++) {
                        struct cat_image im = {0};
                        snprintf(im.agent, sizeof(im.agent), "%s", m.agent);
                        snprintf(im.vm, sizeof(im.vm), "%s", mr->vm);
                        snprintf(im.disk, sizeof(im.disk), "%s", mr->disks[d]->disk);
                        /* A revert records the pre-revert branch: what --undo goes back to. */
                        snprintf(im.before, sizeof(im.before), "%s",
                                 mr->disks[d]->branch[0] ? mr->disks[d]->branch : mr->disks[d]->before);
                        snprintf(im.after, sizeof(im.after), "%s", mr->disks[d]->after);
                        if (cat_put_image(e->cat, txid, &im, &err) < 0)
                                log_err("%s", err.msg);
                }
        }
}

/* Members whose agent gave no verified answer (yet): code CAT_PENDING and the
 * reason, if any. Also written at BEGIN so recovery knows every agent. */
static void record_silence(struct engine *e, const char *txid, const struct item *it)
{
        for (size_t i = 0; i < it->freeze.n_members; i++) {
                struct cat_member m = {0};
                lserr err = {0};
                snprintf(m.agent, sizeof(m.agent), "%s", agentlink_id(it->link));
                snprintf(m.vm, sizeof(m.vm), "%s", it->freeze.members[i]->vm);
                m.tier = it->freeze.members[i]->tier;
                m.code = CAT_PENDING;
                snprintf(m.message, sizeof(m.message), "%s", it->err.msg);
                if (cat_put_member(e->cat, txid, &m, &err) < 0)
                        log_err("%s", err.msg);
        }
}

/* ---- the cut ---------------------------------------------------------------- */

/* How long a transaction waits for the fleet limits or a shared member. */
#define SLOT_WAIT_MS (10 * 60 * 1000)

/* Takes the group's slot for members vm[i]@agent[i]; says so in the progress
 * when it has to wait for the limits or another group's hold on a member. */
static int take_slot(struct engine *e, const char *group, const char *const *vm, const char *const *agent, size_t n,
                     engine_event_fn ev, void *arg, lserr *err)
{
        const char **members = calloc(n ? n : 1, sizeof(*members)), **agents = calloc(n ? n : 1, sizeof(*agents));
        char *buf = calloc(n ? n : 1, 2 * (LS_NAME_MAX + 1) + 2);
        struct slots_need need = {.group = group, .agents = agents, .members = members, .n_members = n};
        lserr why = {0};
        int r = -ENOMEM;

        if (!members || !agents || !buf)
                goto out;
        for (size_t i = 0; i < n; i++) {
                char *m = buf + i * (2 * (LS_NAME_MAX + 1) + 2);
                int dup = 0;
                snprintf(m, 2 * (LS_NAME_MAX + 1) + 2, "%s@%s", vm[i], agent[i]);
                members[i] = m;
                for (size_t k = 0; k < need.n_agents; k++)
                        dup |= !strcmp(agents[k], agent[i]);
                if (!dup)
                        agents[need.n_agents++] = agent[i];
        }
        r = slots_take(e->slots, &need, 0, &why);
        if (r == -EAGAIN) {
                emit(ev, arg, "WAIT     %s", why.msg);
                r = slots_take(e->slots, &need, SLOT_WAIT_MS, err);
        } else if (r < 0) {
                lserr_set(err, r, "%s", why.msg);
        }
out:
        free(members);
        free(agents);
        free(buf);
        return r;
}

static int take_slot_cfg(struct engine *e, const struct cfg_group *g, engine_event_fn ev, void *arg, lserr *err)
{
        const char **vm = calloc(g->n_members, sizeof(*vm)), **ag = calloc(g->n_members, sizeof(*ag));
        int r = -ENOMEM;

        if (vm && ag) {
                for (unsigned i = 0; i < g->n_members; i++) {
                        vm[i] = g->members[i].vm;
                        ag[i] = g->members[i].agent;
                }
                r = take_slot(e, g->name, vm, ag, g->n_members, ev, arg, err);
        }
        free(vm);
        free(ag);
        return r;
}

static int take_slot_cat(struct engine *e, const char *group, const struct cat_member *m, size_t n,
                         engine_event_fn ev, void *arg, lserr *err)
{
        const char **vm = calloc(n ? n : 1, sizeof(*vm)), **ag = calloc(n ? n : 1, sizeof(*ag));
        int r = -ENOMEM;

        if (vm && ag) {
                for (size_t i = 0; i < n; i++) {
                        vm[i] = m[i].vm;
                        ag[i] = m[i].agent;
                }
                r = take_slot(e, group, vm, ag, n, ev, arg, err);
        }
        free(vm);
        free(ag);
        return r;
}

static void make_txid(char out[65])
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

/* One item per agent holding members of g. */
static int build_items(struct engine *e, const struct cfg_group *g, const char *snap, Lockstep__Mode mode,
                       unsigned lease_ms, struct item **ret, size_t *ret_n, lserr *err)
{
        struct item *items = calloc(g->n_members, sizeof(*items));
        size_t n = 0;

        if (!items)
                return -ENOMEM;
        for (unsigned i = 0; i < g->n_members; i++) {
                const struct cfg_member *m = &g->members[i];
                struct item *it = NULL;
                for (size_t k = 0; k < n; k++)
                        if (!strcmp(agentlink_id(items[k].link), m->agent))
                                it = &items[k];
                if (!it) {
                        it = &items[n++];
                        it->link = link_of(e, m->agent);
                        if (!it->link) {
                                items_free(items, n);
                                return lserr_set(err, -EINVAL, "group \"%s\": member %s@%s: agent not configured",
                                                 g->name, m->vm, m->agent);
                        }
                        lockstep__freeze_request__init(&it->freeze);
                        it->freeze.snapshot = (char *)snap;
                        it->freeze.mode = mode;
                        it->freeze.lease_ms = lease_ms;
                        it->freeze.pre_freeze_hook = g->hook_pre_freeze ? g->hook_pre_freeze : (char *)"";
                        it->freeze.post_thaw_hook = g->hook_post_thaw ? g->hook_post_thaw : (char *)"";
                        it->freeze.hook_timeout_ms = g->hook_timeout_s * 1000;
                        it->members = calloc(g->n_members, sizeof(*it->members));
                        it->memberp = calloc(g->n_members, sizeof(*it->memberp));
                        if (!it->members || !it->memberp) {
                                items_free(items, n);
                                return -ENOMEM;
                        }
                        it->freeze.members = it->memberp;
                }
                Lockstep__Member *mm = &it->members[it->freeze.n_members];
                lockstep__member__init(mm);
                mm->vm = m->vm;
                mm->tier = m->tier;
                mm->consistency = m->crash ? LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH
                                           : LOCKSTEP__CONSISTENCY__CONSISTENCY_QUIESCE;
                it->memberp[it->freeze.n_members++] = mm;
        }
        *ret = items;
        *ret_n = n;
        return 0;
}

/* Tells every agent the decision, retrying the ones that did not confirm.
 * Returns how many agents still have not. */
static size_t send_decision_step(struct engine *e, const char *txid, struct item *items, size_t n, int commit,
                                 int revert, engine_event_fn ev, void *arg)
{
        size_t left = n;
        int *done = calloc(n ? n : 1, sizeof(*done));

        if (!done)
                return n;
        for (int attempt = 0; attempt < DECIDE_TRIES && left; attempt++) {
                struct item *sub = calloc(left, sizeof(*sub));
                size_t k = 0;
                if (!sub)
                        break;
                for (size_t i = 0; i < n; i++)
                        if (!done[i]) {
                                sub[k].link = items[i].link;
                                set_step(&sub[k], txid,
                                         revert ? LOCKSTEP__STEP__STEP_REVERT_DECIDE : LOCKSTEP__STEP__STEP_DECIDE);
                                lockstep__decide_request__init(&sub[k].decide);
                                lockstep__revert_decide_request__init(&sub[k].rdecide);
                                sub[k].decide.decision = sub[k].rdecide.decision =
                                        commit ? LOCKSTEP__DECISION__DECISION_COMMIT : LOCKSTEP__DECISION__DECISION_ABORT;
                                k++;
                        }
                fan_out(e, sub, k, (int)e->cfg->step_timeout_s * 1000);
                for (size_t j = 0; j < k; j++) {
                        size_t i = 0;
                        while (items[i].link != sub[j].link)
                                i++;
                        if (item_ok(&sub[j])) {
                                done[i] = 1;
                                left--;
                                emit(ev, arg, "DECIDE   %-12s %s", agentlink_id(sub[j].link),
                                     commit   ? "committed"
                                     : revert ? "aborted, members back on their pre-revert branch"
                                              : "aborted, nothing left behind");
                        } else {
                                char why[700];
                                why_not(&sub[j], why, sizeof(why));
                                emit(ev, arg, "DECIDE   %-12s not confirmed (try %d of %d): %s",
                                     agentlink_id(sub[j].link), attempt + 1, DECIDE_TRIES, why);
                        }
                }
                items_free(sub, k);
        }
        free(done);
        return left;
}

static size_t send_decision(struct engine *e, const char *txid, struct item *items, size_t n, int commit,
                            engine_event_fn ev, void *arg)
{
        return send_decision_step(e, txid, items, n, commit, 0, ev, arg);
}

static const char *mode_wire_name(Lockstep__Mode m)
{
        return m == LOCKSTEP__MODE__MODE_PAUSE ? "pause" : m == LOCKSTEP__MODE__MODE_MEMORY ? "memory" : "quiesce";
}

int engine_snapshot(struct engine *e, const struct engine_cut_req *req, engine_event_fn ev, void *arg,
                    char ret_txid[65], lserr *err)
{
        const struct cfg_group *g = cfg_coord_group(e->cfg, req->group);
        struct cat_txn t = {0};
        struct item *items = NULL;
        size_t n = 0, left;
        char reason[700] = "";
        int mode, commit = 0, r;
        unsigned lease_s;

        if (!g)
                return lserr_set(err, -ENOENT, "group \"%s\" is not in the configuration", req->group);
        if (req->name && !names_valid(req->name))
                return lserr_set(err, -EINVAL, "snapshot name \"%s\" is not a valid name ([A-Za-z0-9._-], 1..64)",
                                 req->name);
        mode = req->mode >= 0 ? req->mode : (int)g->mode;
        lease_s = req->lease_s ? req->lease_s : g->lease_s;
        if (lease_s == 0 || lease_s > 3600)
                return lserr_set(err, -EINVAL, "lease of %u s is out of range (1..3600)", lease_s);
        r = take_slot_cfg(e, g, ev, arg, err);
        if (r < 0)
                return r;

        make_txid(t.txid);
        t.kind = CAT_KIND_SNAPSHOT;
        snprintf(t.group, sizeof(t.group), "%s", g->name);
        snprintf(t.name, sizeof(t.name), "%s", req->name ? req->name : t.txid);
        snprintf(t.mode, sizeof(t.mode), "%s", cfg_mode_name((enum cfg_mode)mode));
        t.started_us = fsutil_now_us();
        t.lease_ms = lease_s * 1000;
        r = build_items(e, g, t.name, (Lockstep__Mode)mode, t.lease_ms, &items, &n, err);
        if (r < 0)
                goto out;
        /* Logged before anything is sent: a crash from here on is presumed abort. */
        r = cat_txn_begin(e->cat, &t, err);
        if (r < 0)
                goto out;
        snprintf(ret_txid, 65, "%s", t.txid);
        for (size_t i = 0; i < n; i++)
                record_silence(e, t.txid, &items[i]); /* placeholders until each agent answers */
        emit(ev, arg, "BEGIN    %s: group %s, %u member(s) on %zu agent(s), mode %s, lease %u s", t.txid, g->name,
             g->n_members, n, mode_wire_name((Lockstep__Mode)mode), lease_s);

        /* Phase 1: every agent validates and freezes its members, then votes. */
        for (size_t i = 0; i < n; i++)
                set_step(&items[i], t.txid, LOCKSTEP__STEP__STEP_FREEZE);
        fan_out(e, items, n, (int)e->cfg->step_timeout_s * 1000);
        commit = 1;
        for (size_t i = 0; i < n; i++) {
                struct item *it = &items[i];
                if (it->rep)
                        record_reply(e, t.txid, it, g);
                else
                        record_silence(e, t.txid, it);
                if (item_ok(it)) {
                        char detail[512] = "";
                        size_t off = 0;
                        for (size_t k = 0; k < it->rep->n_members && off < sizeof(detail) - 1; k++)
                                off += (size_t)snprintf(detail + off, sizeof(detail) - off, "%s%s %.0f ms",
                                                        k ? ", " : "", it->rep->members[k]->vm,
                                                        it->rep->members[k]->timings
                                                                ? (double)it->rep->members[k]->timings->freeze_us / 1000.0
                                                                : 0.0);
                        emit(ev, arg, "FREEZE   %-12s yes (%s)", agentlink_id(it->link), detail);
                } else {
                        why_not(it, reason, sizeof(reason));
                        emit(ev, arg, "FREEZE   %-12s NO: %s", agentlink_id(it->link), reason);
                        commit = 0;
                }
        }

        /* Phase 2: only once every member is frozen. */
        if (commit) {
                for (size_t i = 0; i < n; i++)
                        set_step(&items[i], t.txid, LOCKSTEP__STEP__STEP_SNAPSHOT);
                fan_out(e, items, n, (int)e->cfg->step_timeout_s * 1000);
                for (size_t i = 0; i < n; i++) {
                        struct item *it = &items[i];
                        if (it->rep)
                                record_reply(e, t.txid, it, g);
                        else
                                record_silence(e, t.txid, it);
                        if (item_ok(it)) {
                                emit(ev, arg, "SNAPSHOT %-12s done, %zu member(s) thawed", agentlink_id(it->link),
                                     it->rep->n_members);
                        } else {
                                why_not(it, reason, sizeof(reason));
                                emit(ev, arg, "SNAPSHOT %-12s FAILED: %s", agentlink_id(it->link), reason);
                                commit = 0;
                        }
                }
        }

        failpoint("after-snapshot");
        /* Phase 3: the decision is durable before any agent hears it. */
        r = cat_txn_decide(e->cat, t.txid, commit, commit ? "" : reason, err);
        if (r < 0) {
                /* Nothing was decided: agents will hear ABORT from recovery. */
                emit(ev, arg, "DECIDE   cannot log the decision: %s", err->msg);
                goto out;
        }
        emit(ev, arg, "DECIDE   %s logged", commit ? "COMMIT" : "ABORT");
        failpoint("after-decide");
        left = send_decision(e, t.txid, items, n, commit, ev, arg);
        if (left == 0) {
                lserr e2 = {0};
                if (cat_txn_finish(e->cat, t.txid, &e2) < 0)
                        log_err("%s", e2.msg);
        } else {
                emit(ev, arg, "DECIDE   %zu agent(s) did not confirm; lockstepd keeps retrying (lockstep recover)", left);
        }
        r = commit ? 0 : 1;
out:
        items_free(items, n);
        slots_drop(e->slots, g->name);
        return r;
}

/* ---- check -------------------------------------------------------------------- */

/* One result line: the member's own answer, or why its agent gave none. */
static void check_result(const struct item *it, const Lockstep__Member *m, struct engine_check_member *out)
{
        snprintf(out->vm, sizeof(out->vm), "%s", m->vm);
        snprintf(out->agent, sizeof(out->agent), "%s", agentlink_id(it->link));
        if (!it->rep) {
                snprintf(out->code, sizeof(out->code), "UNREACHABLE");
                snprintf(out->message, sizeof(out->message), "%s", it->err.msg);
                return;
        }
        if (it->rep->code == LOCKSTEP__ERROR_CODE__E_REJECTED) {
                /* The agent answered but refused us: unknown key, role, clock... */
                snprintf(out->code, sizeof(out->code), "E_REJECTED");
                snprintf(out->message, sizeof(out->message), "%s", it->rep->message);
                return;
        }
        for (size_t k = 0; k < it->rep->n_members; k++) {
                const Lockstep__MemberResult *mr = it->rep->members[k];
                if (strcmp(mr->vm, m->vm) != 0)
                        continue;
                out->ok = mr->code == LOCKSTEP__ERROR_CODE__OK;
                snprintf(out->code, sizeof(out->code), "%s", report_code_name(mr->code));
                snprintf(out->message, sizeof(out->message), "%s", mr->message);
                return;
        }
        snprintf(out->code, sizeof(out->code), "E_INTERNAL");
        snprintf(out->message, sizeof(out->message), "%s: the agent's answer does not name this member",
                 agentlink_id(it->link));
}

int engine_check(struct engine *e, const char *group, int mode, unsigned lease_s, struct engine_check_member **ret,
                 size_t *ret_n, lserr *err)
{
        const struct cfg_group *g = cfg_coord_group(e->cfg, group);
        struct engine_check_member *out = NULL;
        struct item *items = NULL;
        char txid[65];
        size_t n = 0, k = 0;
        int r, failed = 0;

        if (!g)
                return lserr_set(err, -ENOENT, "group \"%s\" is not in the configuration", group);
        if (mode < 0)
                mode = (int)g->mode;
        if (!lease_s)
                lease_s = g->lease_s;
        /* Shaped like a cut's txid, so every file name checked is as long as a cut's. */
        make_txid(txid);
        txid[0] = 'c';
        txid[1] = 'k';
        r = build_items(e, g, txid, (Lockstep__Mode)mode, lease_s * 1000, &items, &n, err);
        if (r < 0)
                return r;
        out = calloc(g->n_members ? g->n_members : 1, sizeof(*out));
        if (!out) {
                items_free(items, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                lockstep__check_request__init(&items[i].check);
                items[i].check.mode = (Lockstep__Mode)mode;
                items[i].check.lease_ms = lease_s * 1000;
                items[i].check.members = items[i].freeze.members;
                items[i].check.n_members = items[i].freeze.n_members;
                set_step(&items[i], txid, LOCKSTEP__STEP__STEP_CHECK);
        }
        /* A guest agent ping may take its whole deadline on a hung guest. */
        fan_out(e, items, n, (int)e->cfg->step_timeout_s * 1000);
        for (size_t i = 0; i < n; i++)
                for (size_t m = 0; m < items[i].check.n_members; m++) {
                        check_result(&items[i], items[i].check.members[m], &out[k]);
                        failed |= !out[k].ok;
                        k++;
                }
        items_free(items, n);
        *ret = out;
        *ret_n = k;
        return failed ? 1 : 0;
}

/* ---- delete ------------------------------------------------------------------ */

/* Whether the group's config lists vm@agent in crash_consistent. */
static int crash_member(const struct cfg_group *g, const char *vm, const char *agent)
{
        for (unsigned i = 0; g && i < g->n_members; i++)
                if (!strcmp(g->members[i].vm, vm) && !strcmp(g->members[i].agent, agent))
                        return g->members[i].crash;
        return 0;
}

/* One item per agent of a recorded transaction's members, each with its
 * members (vm, tier) in it->members. The members point into *ret_m: the caller
 * frees *ret (items_free) and then *ret_m (free). */
static int items_of(struct engine *e, const char *txid, const struct cfg_group *g, struct cat_member **ret_m,
                    struct item **ret, size_t *ret_n, size_t *ret_members, unsigned *ret_max_tier, lserr *err)
{
        struct cat_member *m = NULL;
        struct item *items = NULL;
        size_t nm = 0, n = 0;
        unsigned max_tier = 0;
        int r = cat_members(e->cat, txid, &m, &nm, err);

        if (r < 0)
                return r;
        items = calloc(nm ? nm : 1, sizeof(*items));
        if (!items) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < nm; i++) {
                struct agentlink *l = link_of(e, m[i].agent);
                struct item *it = NULL;
                if (!l) {
                        r = lserr_set(err, -EINVAL, "%s: member %s@%s: agent no longer configured", txid, m[i].vm,
                                      m[i].agent);
                        goto out;
                }
                for (size_t k = 0; k < n; k++)
                        if (items[k].link == l)
                                it = &items[k];
                if (!it) {
                        it = &items[n++];
                        it->link = l;
                        it->members = calloc(nm, sizeof(*it->members));
                        it->memberp = calloc(nm, sizeof(*it->memberp));
                        if (!it->members || !it->memberp) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
                Lockstep__Member *mm = &it->members[it->freeze.n_members];
                lockstep__member__init(mm);
                mm->vm = m[i].vm;
                mm->tier = m[i].tier;
                mm->consistency = crash_member(g, m[i].vm, m[i].agent)
                                          ? LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH
                                          : LOCKSTEP__CONSISTENCY__CONSISTENCY_QUIESCE;
                it->memberp[it->freeze.n_members++] = mm;
                if (m[i].tier > max_tier)
                        max_tier = m[i].tier;
        }
        *ret_m = m;
        *ret = items;
        *ret_n = n;
        if (ret_members)
                *ret_members = nm;
        if (ret_max_tier)
                *ret_max_tier = max_tier;
        return 0;
out:
        items_free(items, n);
        free(m);
        return r;
}

static int attach_cut_images(struct engine *e, const char *txid, struct item *items, size_t n,
                             struct cat_image **ret_im, lserr *err);

/* The cut's images as hints for its delete (see DeleteRequest.images), but
 * only those no other live cut holds: above such an image sits that cut's
 * data, never something this delete may merge. */
static int attach_delete_hints(struct engine *e, const char *txid, struct item *items, size_t n,
                               struct cat_image **ret_im, lserr *err)
{
        int r = attach_cut_images(e, txid, items, n, ret_im, err);

        for (size_t i = 0; r == 0 && i < n; i++) {
                struct item *it = &items[i];
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
                                        log_err("%s", e2.msg);
                        }
                        md->n_disks = keep;
                }
        }
        return r;
}

/* An undo put the VMs back on what revert `id` kept: that branch is the live
 * chain now, it no longer pins older cuts and cannot be deleted as a branch. */
static void mark_undone(struct engine *e, const char *id)
{
        lserr e2 = {0};

        if (cat_branch_set_status(e->cat, id, "undone", "", &e2) < 0)
                log_err("%s", e2.msg);
}

/* A delete's (or branch delete's) outcome: one line per agent, then the
 * decision logged and finished. Returns 1 when every agent succeeded; reason
 * gets the first failure. */
static int delete_outcome(struct engine *e, const char *txid, struct item *items, size_t n, const char *done,
                          char *reason, size_t rn, engine_event_fn ev, void *arg)
{
        lserr e2 = {0};
        int ok = 1;

        for (size_t i = 0; i < n; i++) {
                if (item_ok(&items[i])) {
                        emit(ev, arg, "DELETE   %-12s %s, %zu member(s)", agentlink_id(items[i].link), done,
                             items[i].rep->n_members);
                } else {
                        why_not(&items[i], reason, rn);
                        emit(ev, arg, "DELETE   %-12s FAILED: %s", agentlink_id(items[i].link), reason);
                        ok = 0;
                }
        }
        if (cat_txn_decide(e->cat, txid, ok, ok ? "" : reason, &e2) < 0 || cat_txn_finish(e->cat, txid, &e2) < 0)
                log_err("%s", e2.msg);
        return ok;
}

/* Whether the replies list file path of agent/vm as removed. */
static int was_removed(const struct item *items, size_t n, const char *agent, const char *vm, const char *path)
{
        for (size_t i = 0; i < n; i++) {
                if (!items[i].rep || strcmp(agentlink_id(items[i].link), agent))
                        continue;
                for (size_t k = 0; k < items[i].rep->n_members; k++) {
                        const Lockstep__MemberResult *mr = items[i].rep->members[k];
                        for (size_t d = 0; !strcmp(mr->vm, vm) && d < mr->n_disks; d++)
                                if (!strcmp(mr->disks[d]->after, path))
                                        return 1;
                }
        }
        return 0;
}

/* A branch delete removed files: every cut one of whose images was among them
 * cannot be restored any more. It is deleted when all its images went;
 * delete-failed otherwise, so that deleting it merges what is left of it (on a
 * VM the branch did not hold). Returns how many cuts became deleted; adds the
 * files removed to *ret_removed. */
static int drop_cuts_on(struct engine *e, const struct item *items, size_t n, const char *why, size_t *ret_removed)
{
        int dropped = 0;

        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; items[i].rep && k < items[i].rep->n_members; k++) {
                        const Lockstep__MemberResult *mr = items[i].rep->members[k];
                        *ret_removed += mr->n_disks;
                        for (size_t d = 0; d < mr->n_disks; d++) {
                                char(*cuts)[65] = NULL;
                                size_t nc = 0;
                                lserr e2 = {0};
                                if (cat_cuts_on_image(e->cat, agentlink_id(items[i].link), mr->vm, mr->disks[d]->after,
                                                      &cuts, &nc, &e2) < 0)
                                        log_err("%s", e2.msg);
                                for (size_t c = 0; c < nc; c++) {
                                        struct cat_image *im = NULL;
                                        size_t ni = 0;
                                        int all = 1;
                                        if (cat_images(e->cat, cuts[c], &im, &ni, &e2) < 0) {
                                                log_err("%s", e2.msg);
                                                continue;
                                        }
                                        for (size_t q = 0; q < ni; q++)
                                                all &= was_removed(items, n, im[q].agent, im[q].vm, im[q].before);
                                        free(im);
                                        if (cat_cut_set_status(e->cat, cuts[c], all ? "deleted" : "delete-failed", why,
                                                               &e2) < 0)
                                                log_err("%s", e2.msg);
                                        dropped += all;
                                }
                                free(cuts);
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

/* Deletes the pre-revert branch that revert rev kept: on every agent the
 * files only that branch holds are removed; the cuts whose images were among
 * them are marked deleted; the cuts older than the revert are no longer
 * pinned by it. */
static int delete_branch(struct engine *e, const struct cat_txn *rev, engine_event_fn ev, void *arg,
                         char ret_txid[65], lserr *err)
{
        struct cat_txn t = {0}, now;
        struct cat_member *m = NULL;
        struct item *items = NULL;
        size_t n = 0, nm = 0, removed = 0;
        char reason[700] = "", why_gone[200];
        const char *no = branch_not_deletable(rev);
        int ok = 1, dropped = 0, r;

        if (no)
                return lserr_set(err, !strcmp(rev->branch_status, "deleted") ? -EALREADY : -EINVAL, "revert \"%s\": %s",
                                 rev->txid, no);
        r = items_of(e, rev->txid, NULL, &m, &items, &n, &nm, NULL, err);
        if (r < 0)
                return r;
        r = take_slot_cat(e, rev->group, m, nm, ev, arg, err);
        if (r < 0) {
                items_free(items, n);
                free(m);
                return r;
        }
        /* Checked again with the slot held: an undo or a prune may have run. */
        if (cat_txn_get(e->cat, rev->txid, &now, err) < 0) {
                r = -EIO;
                goto out;
        }
        if ((no = branch_not_deletable(&now))) {
                r = lserr_set(err, -EINVAL, "revert \"%s\": %s", rev->txid, no);
                goto out;
        }
        make_txid(t.txid);
        t.kind = CAT_KIND_DELETE;
        snprintf(t.group, sizeof(t.group), "%s", rev->group);
        snprintf(t.name, sizeof(t.name), "%s", rev->txid);
        snprintf(t.mode, sizeof(t.mode), "branch");
        t.started_us = fsutil_now_us();
        r = cat_txn_begin(e->cat, &t, err);
        if (r < 0)
                goto out;
        snprintf(ret_txid, 65, "%s", t.txid);
        emit(ev, arg, "DELETE   %s: pre-revert branch of revert %s (group %s) on %zu agent(s)", t.txid, rev->txid,
             rev->group, n);
        for (size_t i = 0; i < n; i++) {
                Lockstep__DeleteRequest *dr = &items[i].del;
                lockstep__delete_request__init(dr);
                dr->cut_txid = (char *)rev->txid;
                dr->snapshot = (char *)rev->txid;
                dr->branch = 1;
                dr->n_members = items[i].freeze.n_members;
                dr->members = items[i].memberp;
                set_step(&items[i], t.txid, LOCKSTEP__STEP__STEP_DELETE);
        }
        fan_out(e, items, n, (int)e->cfg->step_timeout_s * 1000 * 10);
        snprintf(why_gone, sizeof(why_gone), "its images were on the pre-revert branch of %s, deleted by %s", rev->txid,
                 t.txid);
        dropped = drop_cuts_on(e, items, n, why_gone, &removed);
        ok = delete_outcome(e, t.txid, items, n, "branch removed", reason, sizeof(reason), ev, arg);
        {
                lserr e2 = {0};
                if (cat_branch_set_status(e->cat, rev->txid, ok ? "deleted" : "delete-failed", ok ? "" : reason, &e2) < 0)
                        log_err("%s", e2.msg);
        }
        emit(ev, arg, "DELETE   pre-revert branch of %s %s: %zu file(s) removed, %d cut(s) that only it held marked deleted",
             rev->txid, ok ? "deleted" : "NOT fully deleted (delete it again)", removed, dropped);
        r = ok ? 0 : 1;
out:
        items_free(items, n);
        free(m);
        slots_drop(e->slots, rev->group);
        return r;
}

int engine_delete(struct engine *e, const char *cut_txid, engine_event_fn ev, void *arg, char ret_txid[65],
                  lserr *err)
{
        struct cat_txn cut, t = {0};
        struct cat_member *m = NULL;
        struct cat_image *im = NULL;
        char(*reverts)[65] = NULL;
        char **revp = NULL;
        size_t n_reverts = 0;
        struct item *items = NULL;
        size_t n = 0, nm = 0;
        char reason[700] = "";
        int ok = 1, r;

        r = cat_txn_get(e->cat, cut_txid, &cut, err);
        if (r == -ENOENT)
                return lserr_set(err, -ENOENT, "no cut \"%s\" in the catalog", cut_txid);
        if (r < 0)
                return r;
        if (cut.kind == CAT_KIND_REVERT)
                return delete_branch(e, &cut, ev, arg, ret_txid, err);
        if (cut.kind != CAT_KIND_SNAPSHOT || !cut.committed || cut.state != CAT_TXN_DONE)
                return lserr_set(err, -EINVAL, "\"%s\" is not a committed cut (it is %s)", cut_txid,
                                 cut.kind != CAT_KIND_SNAPSHOT ? "not a snapshot" : report_state_word(&cut));
        if (!strcmp(cut.cut_status, "deleted"))
                return lserr_set(err, -EALREADY, "cut \"%s\" is already deleted", cut_txid);
        {
                char rev[65];
                r = cat_reverts_since(e->cat, cut.txid, cut.started_us, rev, err);
                if (r < 0)
                        return r;
                /* The chains branched at the revert: this cut's layers are in
                 * the pre-revert branch it kept (and a revert's overlay may sit
                 * on them). Merging would change what that branch holds. */
                if (r > 0)
                        return lserr_set(err, -EBUSY,
                                         "cut \"%s\" is older than %d revert(s) of its VMs (newest %s): its "
                                         "layers are shared with the pre-revert branch kept for --undo; it cannot be "
                                         "deleted while that branch is kept",
                                         cut_txid, r, rev);
        }
        r = items_of(e, cut_txid, NULL, &m, &items, &n, &nm, NULL, err);
        if (r < 0)
                return r;
        r = take_slot_cat(e, cut.group, m, nm, ev, arg, err);
        if (r < 0) {
                items_free(items, n);
                free(m);
                return r;
        }
        /* Checked again with the slot held: while this waited for it, another
         * delete (a prune) may have finished the cut, or a revert branched it. */
        {
                char rev[65];
                struct cat_txn now;
                if (cat_txn_get(e->cat, cut_txid, &now, err) < 0) {
                        r = -EIO;
                        goto out;
                }
                if (!strcmp(now.cut_status, "deleted")) {
                        r = lserr_set(err, -EALREADY, "cut \"%s\" was deleted while this waited", cut_txid);
                        goto out;
                }
                r = cat_reverts_since(e->cat, cut_txid, cut.started_us, rev, err);
                if (r != 0) {
                        r = r < 0 ? r
                                  : lserr_set(err, -EBUSY, "cut \"%s\": revert %s of its VMs committed while this waited",
                                              cut_txid, rev);
                        goto out;
                }
        }
        /* Hints only where a revert to this cut may have left its overlay on
         * the cut's image: the agent merges nothing but such an overlay. */
        r = cat_reverts_to(e->cat, cut_txid, &reverts, &n_reverts, err);
        if (r == 0 && n_reverts) {
                revp = calloc(n_reverts, sizeof(*revp));
                r = revp ? attach_delete_hints(e, cut_txid, items, n, &im, err) : -ENOMEM;
                for (size_t i = 0; revp && i < n_reverts; i++)
                        revp[i] = reverts[i];
        }
        if (r < 0)
                goto out;
        make_txid(t.txid);
        t.kind = CAT_KIND_DELETE;
        snprintf(t.group, sizeof(t.group), "%s", cut.group);
        snprintf(t.name, sizeof(t.name), "%s", cut.txid); /* the cut it deletes */
        snprintf(t.mode, sizeof(t.mode), "%s", cut.mode);
        t.started_us = fsutil_now_us();
        r = cat_txn_begin(e->cat, &t, err);
        if (r < 0)
                goto out;
        snprintf(ret_txid, 65, "%s", t.txid);
        emit(ev, arg, "DELETE   %s: cut %s (%s) of group %s on %zu agent(s)", t.txid, cut.txid, cut.name, cut.group, n);
        for (size_t i = 0; i < n; i++) {
                Lockstep__DeleteRequest *dr = &items[i].del;
                lockstep__delete_request__init(dr);
                dr->cut_txid = cut.txid;
                dr->snapshot = cut.name;
                dr->n_members = items[i].freeze.n_members;
                dr->members = items[i].memberp;
                dr->n_images = revp ? items[i].n_mdisks : 0;
                dr->images = revp ? items[i].mdiskp : NULL;
                dr->n_reverts = revp ? n_reverts : 0;
                dr->reverts = revp;
                set_step(&items[i], t.txid, LOCKSTEP__STEP__STEP_DELETE);
        }
        /* Merging can take a while on big overlays: a longer deadline. */
        fan_out(e, items, n, (int)e->cfg->step_timeout_s * 1000 * 10);
        for (size_t i = 0; i < n; i++) {
                /* Later cuts that held a merged layer hold its base now. */
                for (size_t k = 0; items[i].rep && k < items[i].rep->n_members; k++) {
                        const Lockstep__MemberResult *mr = items[i].rep->members[k];
                        for (size_t dd = 0; dd < mr->n_disks; dd++) {
                                lserr e2 = {0};
                                if (cat_image_repath(e->cat, agentlink_id(items[i].link), mr->vm, mr->disks[dd]->after,
                                                     mr->disks[dd]->before, &e2) < 0)
                                        log_err("%s", e2.msg);
                        }
                }
        }
        ok = delete_outcome(e, t.txid, items, n, "merged", reason, sizeof(reason), ev, arg);
        {
                lserr e2 = {0};
                if (cat_cut_set_status(e->cat, cut.txid, ok ? "deleted" : "delete-failed", ok ? "" : reason, &e2) < 0)
                        log_err("%s", e2.msg);
        }
        emit(ev, arg, "DELETE   cut %s %s", cut.txid, ok ? "deleted" : "NOT deleted: every chain is valid; delete it again");
        r = ok ? 0 : 1;
out:
        items_free(items, n);
        free(m);
        free(im);
        free(reverts);
        free(revp);
        slots_drop(e->slots, cut.group);
        return r;
}

/* ---- revert ------------------------------------------------------------------ */

/* Gives each agent the cut's image per disk from the catalog (repathed by
 * deletes), so a cut can be reverted to from any branch. The payload points
 * into *ret_im, which the caller frees after the requests went out. */
static int attach_cut_images(struct engine *e, const char *txid, struct item *items, size_t n,
                             struct cat_image **ret_im, lserr *err)
{
        struct cat_image *im = NULL;
        size_t ni = 0;
        int r = cat_images(e->cat, txid, &im, &ni, err);

        if (r < 0)
                return r;
        *ret_im = im;
        for (size_t i = 0; i < n; i++) {
                struct item *it = &items[i];
                size_t nm = it->freeze.n_members, nd = 0;
                it->mdisks = calloc(nm ? nm : 1, sizeof(*it->mdisks));
                it->mdiskp = calloc(nm ? nm : 1, sizeof(*it->mdiskp));
                it->dimgs = calloc(ni ? ni : 1, sizeof(*it->dimgs));
                it->dimgp = calloc(ni ? ni : 1, sizeof(*it->dimgp));
                if (!it->mdisks || !it->mdiskp || !it->dimgs || !it->dimgp)
                        return lserr_set(err, -ENOMEM, "revert of %s: out of memory", txid);
                for (size_t k = 0; k < nm; k++) {
                        Lockstep__MemberDisks *md = &it->mdisks[k];
                        lockstep__member_disks__init(md);
                        md->vm = it->memberp[k]->vm;
                        md->disks = &it->dimgp[nd];
                        /* nd < ni: each image goes to one member, but never trust that. */
                        for (size_t q = 0; q < ni && nd < ni; q++) {
                                if (strcmp(im[q].vm, md->vm) || strcmp(im[q].agent, agentlink_id(it->link)))
                                        continue;
                                Lockstep__DiskImage *di = &it->dimgs[nd];
                                lockstep__disk_image__init(di);
                                di->disk = im[q].disk;
                                di->before = im[q].before;
                                it->dimgp[nd++] = di;
                                md->n_disks++;
                        }
                        /* No images recorded: the agent looks in the chain. */
                        if (md->n_disks)
                                it->mdiskp[it->n_mdisks++] = md;
                }
        }
        return 0;
}

/* One progress line per member the step acted on (a STOP or START acts on
 * one tier; SWITCH, tier UINT_MAX, on all). */
static void emit_members(const struct item *it, Lockstep__Step step, unsigned tier, engine_event_fn ev, void *arg)
{
        for (size_t k = 0; it->rep && k < it->rep->n_members; k++) {
                const Lockstep__MemberResult *mr = it->rep->members[k];
                unsigned mt = UINT_MAX;
                char who[160];
                for (size_t q = 0; q < it->freeze.n_members; q++)
                        if (!strcmp(it->memberp[q]->vm, mr->vm))
                                mt = it->memberp[q]->tier;
                if (tier != UINT_MAX && mt != tier)
                        continue;
                snprintf(who, sizeof(who), "%s@%s", mr->vm, agentlink_id(it->link));
                emit(ev, arg, "%-8s %-20s %s", env_step_name(step) + strlen("REVERT_"), who,
                     mr->code == LOCKSTEP__ERROR_CODE__OK ? (mr->message[0] ? mr->message : "done") : "FAILED");
        }
}

/* Runs one revert step on every agent; 1 when all said yes. */
static int revert_round(struct engine *e, const char *txid, struct item *items, size_t n, Lockstep__Step step,
                        unsigned tier, int timeout_ms, const struct cfg_group *g, engine_event_fn ev, void *arg,
                        char *reason, size_t reason_n)
{
        int ok = 1;

        for (size_t i = 0; i < n; i++) {
                set_step(&items[i], txid, step);
                lockstep__revert_stop_request__init(&items[i].rstop);
                lockstep__revert_start_request__init(&items[i].rstart);
                items[i].rstop.tier = items[i].rstart.tier = tier;
                items[i].rstop.shutdown_timeout_ms = 60000;
        }
        fan_out(e, items, n, timeout_ms);
        for (size_t i = 0; i < n; i++) {
                if (items[i].rep && g)
                        record_reply(e, txid, &items[i], g);
                emit_members(&items[i], step, step == LOCKSTEP__STEP__STEP_REVERT_SWITCH ? UINT_MAX : tier, ev, arg);
                if (item_ok(&items[i]))
                        continue;
                why_not(&items[i], reason, reason_n);
                emit(ev, arg, "%-8s %-12s FAILED: %s", env_step_name(step) + strlen("REVERT_"),
                     agentlink_id(items[i].link), reason);
                ok = 0;
        }
        return ok;
}

int engine_revert(struct engine *e, const char *id, int undo, engine_event_fn ev, void *arg, char ret_txid[65],
                  lserr *err)
{
        struct cat_txn target, t = {0};
        struct cat_member *m = NULL;
        struct cat_image *im = NULL;
        struct item *items = NULL;
        const struct cfg_group *g;
        size_t nm = 0, n = 0, left;
        char reason[700] = "";
        unsigned max_tier = 0;
        int ok, r;

        r = cat_txn_get(e->cat, id, &target, err);
        if (r == -ENOENT)
                return lserr_set(err, -ENOENT, "no %s \"%s\" in the catalog", undo ? "revert" : "cut", id);
        if (r < 0)
                return r;
        if (undo ? target.kind != CAT_KIND_REVERT : target.kind != CAT_KIND_SNAPSHOT)
                return lserr_set(err, -EINVAL, "\"%s\" is not a %s", id, undo ? "revert (give the revert's ID to --undo)" : "cut");
        if (!target.committed || target.state != CAT_TXN_DONE)
                return lserr_set(err, -EINVAL, "\"%s\" is %s, not committed", id, report_state_word(&target));
        if (!undo && target.cut_status[0])
                return lserr_set(err, -EINVAL, "cut \"%s\" is %s", id, target.cut_status);
        if (undo && target.branch_status[0])
                return lserr_set(err, -EINVAL, "revert \"%s\" cannot be undone: its pre-revert branch was %s", id,
                                 !strcmp(target.branch_status, "undone")    ? "put back already (undone)"
                                 : !strcmp(target.branch_status, "deleted") ? "deleted"
                                                                            : "partly deleted (delete it again)");
        g = cfg_coord_group(e->cfg, target.group);
        r = items_of(e, id, g, &m, &items, &n, &nm, &max_tier, err);
        if (r < 0)
                return r;
        r = take_slot_cat(e, target.group, m, nm, ev, arg, err);
        if (r < 0) {
                items_free(items, n);
                free(m);
                return r;
        }
        /* A delete may have finished the cut while this waited for the slot. */
        {
                struct cat_txn now;
                if (cat_txn_get(e->cat, id, &now, err) < 0) {
                        r = -EIO;
                        goto out;
                }
                if (!undo && now.cut_status[0]) {
                        r = lserr_set(err, -EINVAL, "cut \"%s\" became %s while this waited", id, now.cut_status);
                        goto out;
                }
        }
        if (!undo)
                r = attach_cut_images(e, id, items, n, &im, err);
        if (r < 0)
                goto out;
        make_txid(t.txid);
        t.kind = CAT_KIND_REVERT;
        snprintf(t.group, sizeof(t.group), "%s", target.group);
        snprintf(t.name, sizeof(t.name), "%s", id);
        snprintf(t.mode, sizeof(t.mode), "%s", undo ? "undo" : "revert");
        t.started_us = fsutil_now_us();
        r = cat_txn_begin(e->cat, &t, err);
        if (r < 0)
                goto out;
        snprintf(ret_txid, 65, "%s", t.txid);
        if (undo)
                emit(ev, arg, "BEGIN    %s: undo: group %s back to the pre-revert branch kept by %s, %zu member(s) on %zu agent(s)",
                     t.txid, target.group, id, nm, n);
        else
                emit(ev, arg, "BEGIN    %s: revert group %s to cut %s (%s), %zu member(s) on %zu agent(s)", t.txid,
                     target.group, id, target.name, nm, n);

        for (size_t i = 0; i < n; i++) {
                set_step(&items[i], t.txid, LOCKSTEP__STEP__STEP_REVERT_PREPARE);
                lockstep__revert_prepare_request__init(&items[i].rprep);
                items[i].rprep.cut_txid = (char *)id;
                items[i].rprep.snapshot = undo ? (char *)id : target.name;
                items[i].rprep.undo = undo;
                items[i].rprep.n_members = items[i].freeze.n_members;
                items[i].rprep.members = items[i].memberp;
                items[i].rprep.n_images = items[i].n_mdisks;
                items[i].rprep.images = items[i].mdiskp;
        }
        fan_out(e, items, n, (int)e->cfg->step_timeout_s * 1000);
        ok = 1;
        for (size_t i = 0; i < n; i++) {
                if (items[i].rep && g)
                        record_reply(e, t.txid, &items[i], g);
                if (item_ok(&items[i])) {
                        emit(ev, arg, "PREPARE  %-12s ready: images there and sound", agentlink_id(items[i].link));
                } else {
                        why_not(&items[i], reason, sizeof(reason));
                        emit(ev, arg, "PREPARE  %-12s NO: %s", agentlink_id(items[i].link), reason);
                        ok = 0;
                }
        }
        /* Front tiers stop first; back tiers start first. */
        for (unsigned tier = 0; ok && tier <= max_tier; tier++) {
                ok = revert_round(e, t.txid, items, n, LOCKSTEP__STEP__STEP_REVERT_STOP, tier, 120000, NULL, ev, arg,
                                  reason, sizeof(reason));
                if (ok)
                        emit(ev, arg, "STOP     tier %u (%s) stopped", tier, g && tier < g->n_tiers ? g->tiers[tier] : "-");
        }
        if (ok) {
                ok = revert_round(e, t.txid, items, n, LOCKSTEP__STEP__STEP_REVERT_SWITCH, 0,
                                  (int)e->cfg->step_timeout_s * 1000, g, ev, arg, reason, sizeof(reason));
                if (ok)
                        emit(ev, arg, "SWITCH   every member now on %s", undo ? "its pre-revert branch"
                                                                           : "a new overlay on the cut's image");
                failpoint("revert-after-switch");
        }
        for (unsigned tier = max_tier + 1; ok && tier-- > 0;) {
                ok = revert_round(e, t.txid, items, n, LOCKSTEP__STEP__STEP_REVERT_START, tier, 180000, NULL, ev, arg,
                                  reason, sizeof(reason));
                if (ok)
                        emit(ev, arg, "START    tier %u (%s) running, guest agents answer", tier,
                             g && tier < g->n_tiers ? g->tiers[tier] : "-");
        }
        r = cat_txn_decide(e->cat, t.txid, ok, ok ? "" : reason, err);
        if (r < 0) {
                emit(ev, arg, "DECIDE   cannot log the decision: %s", err->msg);
                goto out;
        }
        emit(ev, arg, "DECIDE   %s logged", ok ? "COMMIT" : "ABORT");
        if (ok && undo)
                mark_undone(e, id);
        left = send_decision_step(e, t.txid, items, n, ok, 1, ev, arg);
        if (left == 0) {
                lserr e2 = {0};
                if (cat_txn_finish(e->cat, t.txid, &e2) < 0)
                        log_err("%s", e2.msg);
        } else {
                emit(ev, arg, "DECIDE   %zu agent(s) did not confirm; lockstepd keeps retrying (lockstep recover)", left);
        }
        r = ok ? 0 : 1;
out:
        items_free(items, n);
        free(m);
        free(im);
        slots_drop(e->slots, target.group);
        return r;
}

/* ---- recovery and health -------------------------------------------------- */

/* Sends a logged decision (or decides abort) for one transaction. */
static int settle(struct engine *e, struct cat_txn *t, engine_event_fn ev, void *arg, lserr *err)
{
        struct cat_member *m = NULL;
        size_t nm = 0, n = 0, left;
        struct item *items = NULL;
        int r, commit;

        if (t->kind == CAT_KIND_DELETE) {
                /* A delete cut short: every chain is valid; the cut says so. */
                if (t->state == CAT_TXN_STARTED)
                        r = cat_txn_decide(e->cat, t->txid, 0, "interrupted by a restart", err);
                else
                        r = 0;
                if (r >= 0)
                        r = cat_txn_finish(e->cat, t->txid, err);
                /* A branch delete names its revert; a delete, its cut. */
                if (r >= 0 && !strcmp(t->mode, "branch"))
                        r = cat_branch_set_status(e->cat, t->name, "delete-failed",
                                                  "the branch delete was interrupted by a restart; delete it again", err);
                else if (r >= 0)
                        r = cat_cut_set_status(e->cat, t->name, "delete-failed",
                                               "the delete was interrupted by a restart; delete it again", err);
                emit(ev, arg, "RECOVER  %s: interrupted delete of %s marked delete-failed", t->txid, t->name);
                return r < 0 ? r : 0;
        }
        if (t->state == CAT_TXN_STARTED) {
                r = cat_txn_decide(e->cat, t->txid, 0, "presumed abort: no decision was logged before a restart", err);
                if (r < 0)
                        return r;
                t->state = CAT_TXN_ABORT;
                emit(ev, arg, "RECOVER  %s: no decision logged, presumed abort", t->txid);
        }
        commit = t->state == CAT_TXN_COMMIT;
        /* A committed undo interrupted before it was recorded as such. */
        if (commit && t->kind == CAT_KIND_REVERT && !strcmp(t->mode, "undo"))
                mark_undone(e, t->name);
        r = cat_members(e->cat, t->txid, &m, &nm, err);
        if (r < 0)
                return r;
        items = calloc(nm ? nm : 1, sizeof(*items));
        if (!items) {
                free(m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < nm; i++) {
                struct agentlink *l = link_of(e, m[i].agent);
                int seen = 0;
                for (size_t k = 0; k < n; k++)
                        seen |= items[k].link == l;
                if (l && !seen)
                        items[n++].link = l;
        }
        free(m);
        emit(ev, arg, "RECOVER  %s: sending %s to %zu agent(s)", t->txid, commit ? "COMMIT" : "ABORT", n);
        left = send_decision_step(e, t->txid, items, n, commit, t->kind == CAT_KIND_REVERT, ev, arg);
        items_free(items, n);
        if (left)
                return 1;
        return cat_txn_finish(e->cat, t->txid, err);
}

int engine_recover(struct engine *e, engine_event_fn ev, void *arg, unsigned *ret_left, lserr *err)
{
        struct cat_txn *ts = NULL;
        size_t n = 0;
        unsigned left = 0;
        int r = cat_txn_unresolved(e->cat, &ts, &n, err);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                lserr e2 = {0};
                /* A cut still running in this process is not ours to settle. */
                if (slots_busy(e->slots, ts[i].group))
                        continue;
                r = settle(e, &ts[i], ev, arg, &e2);
                if (r != 0) {
                        left++;
                        if (r < 0)
                                emit(ev, arg, "RECOVER  %s: %s", ts[i].txid, e2.msg);
                }
        }
        free(ts);

        /* What agents hold in doubt that the catalog has already settled, or
         * never heard of (presumed abort). */
        struct item *items = calloc(e->n_links ? e->n_links : 1, sizeof(*items));
        if (!items)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_links; i++) {
                items[i].link = e->links[i];
                set_step(&items[i], "", LOCKSTEP__STEP__STEP_STATUS);
        }
        fan_out(e, items, e->n_links, 5000);
        for (size_t i = 0; i < e->n_links; i++) {
                if (!items[i].rep)
                        continue;
                for (size_t k = 0; k < items[i].rep->n_in_doubt; k++) {
                        const char *txid = items[i].rep->in_doubt[k]->txid;
                        struct cat_txn t;
                        lserr e2 = {0};
                        struct item one = {.link = items[i].link};
                        int commit = 0;
                        if (cat_txn_get(e->cat, txid, &t, &e2) == 0) {
                                if (t.state == CAT_TXN_STARTED)
                                        continue; /* being decided right now */
                                commit = t.state == CAT_TXN_COMMIT || (t.state == CAT_TXN_DONE && t.committed);
                        }
                        emit(ev, arg, "RECOVER  %s in doubt on %s: sending %s", txid, agentlink_id(one.link),
                             commit ? "COMMIT" : "ABORT");
                        if (send_decision_step(e, txid, &one, 1, commit, items[i].rep->in_doubt[k]->revert, ev, arg))
                                left++;
                        if (one.rep)
                                lockstep__reply__free_unpacked(one.rep, NULL);
                }
        }
        items_free(items, e->n_links);
        if (ret_left)
                *ret_left = left;
        return 0;
}

int engine_poll_agents(struct engine *e, lserr *err)
{
        struct item *items = calloc(e->n_links ? e->n_links : 1, sizeof(*items));

        (void)err;
        if (!items)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_links; i++) {
                items[i].link = e->links[i];
                set_step(&items[i], "", LOCKSTEP__STEP__STEP_STATUS);
        }
        fan_out(e, items, e->n_links, 5000);
        for (size_t i = 0; i < e->n_links; i++) {
                struct cat_agent a = {0};
                const struct cfg_peer *p = cfg_coord_agent(e->cfg, agentlink_id(items[i].link));
                struct keys_public pub;
                lserr e2 = {0};
                snprintf(a.id, sizeof(a.id), "%s", p->id);
                snprintf(a.url, sizeof(a.url), "%s", p->url);
                if (keys_load_public(p->pubkey, &pub, &e2) == 0)
                        keys_fingerprint(pub.id, a.fingerprint);
                a.checked_us = fsutil_now_us();
                a.reachable = items[i].rep && items[i].rep->code == LOCKSTEP__ERROR_CODE__OK;
                if (items[i].rep) {
                        snprintf(a.version, sizeof(a.version), "%s", items[i].rep->version);
                        a.in_doubt = (unsigned)items[i].rep->n_in_doubt;
                        a.last_seen_us = a.checked_us;
                        if (!a.reachable)
                                snprintf(a.last_error, sizeof(a.last_error), "%s", items[i].rep->message);
                } else {
                        snprintf(a.last_error, sizeof(a.last_error), "%s", items[i].err.msg);
                }
                if (cat_agent_put(e->cat, &a, &e2) < 0)
                        log_err("%s", e2.msg);
        }
        items_free(items, e->n_links);
        return 0;
}
