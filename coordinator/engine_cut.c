/* engine_cut: a cut of a group (FREEZE everywhere, then SNAPSHOT, then the
 * decision) and its preflight, CHECK, which sends a cut's FREEZE validation
 * without freezing: both build the same per-agent member lists from the
 * group's configuration. */
#include "engine_priv.h"
#include "failpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clockskew.h"
#include "log.h"
#include "names.h"
#include "report.h"
#include "slots.h"

/* What FREEZE (and CHECK) asks of every agent. */
struct cut_spec {
        const struct cfg_group *g;
        const char *snap; /* the snapshot name: overlay file suffix */
        Lockstep__Mode mode;
        unsigned lease_ms;
        int by_tier;   /* several tiers (g->n_tiers): one FREEZE round per tier, front first */
        unsigned tier; /* the tier of the FREEZE round in flight */
};

static const char *cfg_member_agent(const void *ctx, size_t i)
{
        return ((const struct cfg_group *)ctx)->members[i].agent;
}

/* One item per agent holding members of g. */
static int build_items(struct engine *e, const struct cfg_group *g, struct items *ret, lserr *err)
{
        _cleanup_(items_freep) struct items its = {0};
        _cleanup_free_ size_t *item = calloc(g->n_members ? g->n_members : 1, sizeof(*item));
        size_t bad = 0;
        int r;

        if (!item)
                return -ENOMEM;
        r = items_by_agent(e, g->n_members, cfg_member_agent, g, &its, item, &bad);
        if (r == -ENOENT)
                return lserr_set(err, -EINVAL, "group \"%s\": member %s@%s: agent not configured", g->name,
                                 g->members[bad].vm, g->members[bad].agent);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < g->n_members; i++)
                item_add_member(&its.v[item[i]], g->members[i].vm, g->members[i].tier, g->members[i].crash);
        *ret = its;
        its = (struct items){0};
        return 0;
}

static void freeze_fill(struct item *it, const void *ctx)
{
        const struct cut_spec *s = ctx;
        Lockstep__FreezeRequest *f = &it->pl.freeze;

        f->snapshot = (char *)s->snap;
        f->mode = s->mode;
        f->lease_ms = s->lease_ms;
        /* Only the name: each agent has the commands, per VM. */
        f->hook = s->g->hook ? s->g->hook : (char *)"";
        f->n_members = it->n_members;
        f->members = it->memberp;
        f->by_tier = s->by_tier;
        f->tier = s->tier;
}

/* A FREEZE round of tier k > 0 goes only to the agents with a member in it:
 * every agent had tier 0's, where it validated all its members. */
static int freeze_skip(const struct item *it, const void *ctx)
{
        const struct cut_spec *s = ctx;

        if (!s->by_tier || s->tier == 0)
                return 0;
        for (size_t k = 0; k < it->n_members; k++)
                if (it->memberp[k]->tier == s->tier)
                        return 0;
        return 1;
}

static void freeze_say(const struct round *rd, const struct item *it, const char *why)
{
        const struct cut_spec *s = rd->ctx;
        char detail[512] = "";
        size_t off = 0;

        if (why) {
                engine_emit(rd->p, "FREEZE   %-12s NO: %s", agentlink_id(it->link), why);
                return;
        }
        /* "vm1 12 ms, vm2 9 ms": how long each member took to freeze (by
         * tier: the members of this round's tier; the agent answers for its
         * members in the order they were sent). */
        for (size_t k = 0; k < it->rep->n_members && off < sizeof(detail) - 1; k++) {
                const Lockstep__MemberResult *mr = it->rep->members[k];
                double ms = mr->timings ? (double)mr->timings->freeze_us / 1000.0 : 0.0;
                if (s->by_tier && k < it->n_members && !strcmp(it->memberp[k]->vm, mr->vm) &&
                    it->memberp[k]->tier != s->tier)
                        continue;
                off += (size_t)snprintf(detail + off, sizeof(detail) - off, off ? ", %s %.0f ms" : "%s %.0f ms",
                                        mr->vm, ms);
        }
        if (s->by_tier)
                engine_emit(rd->p, "FREEZE   %-12s tier %u yes (%s)", agentlink_id(it->link), s->tier,
                            off ? detail : "none of its members");
        else
                engine_emit(rd->p, "FREEZE   %-12s yes (%s)", agentlink_id(it->link), detail);
}

static void snapshot_say(const struct round *rd, const struct item *it, const char *why)
{
        if (why)
                engine_emit(rd->p, "SNAPSHOT %-12s FAILED: %s", agentlink_id(it->link), why);
        else
                engine_emit(rd->p, "SNAPSHOT %-12s done, %zu member(s) thawed", agentlink_id(it->link),
                            it->rep->n_members);
}

static const char *mode_wire_name(Lockstep__Mode m)
{
        return m == LOCKSTEP__MODE__MODE_PAUSE ? "pause" : m == LOCKSTEP__MODE__MODE_MEMORY ? "memory" : "quiesce";
}

/* The request checked and the group's defaults applied. */
static int cut_spec_of(const struct engine *e, const struct engine_cut_req *req, const struct cfg_group **ret_g,
                       int *ret_mode, unsigned *ret_lease_s, lserr *err)
{
        const struct cfg_group *g = cfg_coord_group(e->cfg, req->group);
        unsigned lease_s;

        if (!g)
                return lserr_set(err, -ENOENT, "group \"%s\" is not in the configuration", req->group);
        if (req->name && !names_valid(req->name))
                return lserr_set(err, -EINVAL, "snapshot name \"%s\" is not a valid name ([A-Za-z0-9._-], 1..64)",
                                 req->name);
        lease_s = req->lease_s ? req->lease_s : g->lease_s;
        if (lease_s == 0 || lease_s > 3600)
                return lserr_set(err, -EINVAL, "lease of %u s is out of range (1..3600)", lease_s);
        *ret_g = g;
        *ret_mode = req->mode >= 0 ? req->mode : (int)g->mode;
        *ret_lease_s = lease_s;
        return 0;
}

/* Logs the cut as begun and the placeholders of its members. */
static int cut_begin_once(struct engine *e, struct cat_txn *t, const struct cut_spec *s, const struct items *its,
                          const struct progress *p, char ret_txid[65], lserr *err)
{
        const struct cfg_group *g = s->g;
        lserr why = {0};
        /* The transaction and its members' placeholders in one SQLite
         * transaction: one sync to disk before anything is sent. */
        int batch = cat_batch_begin(e->cat, &why) == 0, r = engine_begin(e, t, its, ret_txid, err);

        for (size_t i = 0; r == 0 && i < its->n; i++)
                engine_record_silence(e, t->txid, &its->v[i]); /* placeholders until each agent answers */
        lserr_clear(&why);
        if (batch && cat_batch_end(e->cat, &why) < 0 && r == 0) {
                /* Not durable: nothing may be sent. */
                ret_txid[0] = '\0';
                return lserr_set(err, why.code, "%s", why.msg);
        }
        if (r < 0)
                return r;
        engine_emit(p, "BEGIN    %s: group %s, %u member(s) on %zu agent(s), mode %s, lease %u s", t->txid, g->name,
                    g->n_members, its->n, mode_wire_name(s->mode), s->lease_ms / 1000);
        return 0;
}

/* A txid found taken (on etcd only at the batch's end) is drawn again, and
 * the name with it when the name is the txid. */
static int cut_begin(struct engine *e, struct cat_txn *t, const struct cut_spec *s, const struct items *its,
                     const struct progress *p, char ret_txid[65], lserr *err)
{
        for (int tries = 1;; tries++) {
                int r = cut_begin_once(e, t, s, its, p, ret_txid, err), named = strcmp(t->name, t->txid) == 0;
                if (r != -EEXIST || tries >= ENGINE_TXID_DRAWS)
                        return r;
                lserr_clear(err);
                e->make_txid(t->txid);
                if (named)
                        snprintf(t->name, sizeof(t->name), "%s", t->txid);
        }
}

/* Some agent has no connection (engine_reach_all): the cut ends before FREEZE,
 * nothing sent to any agent, so nobody was frozen for it and there is nobody
 * to tell. Its members say why; the abort is logged and finished at once. */
static int cut_unsent(struct engine *e, const struct cat_txn *t, struct round *rd, struct items *its,
                      const struct progress *p, lserr *err)
{
        int r;

        for (size_t i = 0; i < its->n; i++)
                its->v[i].silent_pending = 1; /* the members' rows say why */
        r = engine_record_and_decide(e, t->txid, its->v, its->n, rd->g, 0, rd->reason, p, err);
        if (r < 0)
                return r;
        engine_tell_items(e, t->txid, its->v, its->n, 0, 0, p);
        return 1;
}

/* Phase 1, every agent validates and freezes its members and votes; phase 2,
 * only once every member is frozen, the snapshots; then the decision, durable
 * before any agent hears it. Nothing is written to the catalog between the
 * first FREEZE sent and the last thaw: both rounds' records wait until then
 * (a crash meanwhile leaves the placeholders, and presumed abort). */
static int cut_run(struct engine *e, const struct cat_txn *t, struct cut_spec *s, struct items *its,
                   const struct progress *p, lserr *err)
{
        struct round rd = {.e = e, .txid = t->txid, .timeout_ms = engine_step_ms(e), .g = s->g, .pending = 1,
                           .defer = 1, .ctx = s, .p = p};
        int commit, r;

        failpoint_stop("before-freeze");
        rd.step = LOCKSTEP__STEP__STEP_FREEZE;
        rd.fill = freeze_fill;
        rd.say = freeze_say;
        rd.skip = freeze_skip;
        if (!engine_reach_all(&rd, its->v, its->n))
                return cut_unsent(e, t, &rd, its, p, err);
        /* Tiers: front first, every agent at once within a tier, the next
         * tier only once the whole tier before it is frozen everywhere. */
        commit = 1;
        for (s->tier = 0; commit && s->tier < s->g->n_tiers; s->tier++) {
                commit = engine_round(&rd, its->v, its->n);
                if (commit && s->by_tier)
                        engine_emit(p, "FREEZE   tier %u (%s) frozen", s->tier, s->g->tiers[s->tier]);
        }
        failpoint_stop("after-freeze");
        if (commit) {
                rd.step = LOCKSTEP__STEP__STEP_SNAPSHOT;
                rd.fill = NULL;
                rd.skip = NULL;
                rd.say = snapshot_say;
                commit = engine_round(&rd, its->v, its->n);
        }
        /* Replies in, nothing written or decided: the records and the
         * decision go in one transaction. */
        failpoint_stop("after-snapshot");
        r = engine_record_and_decide(e, t->txid, its->v, its->n, s->g, commit, rd.reason, p, err);
        if (r < 0)
                return r;
        failpoint_stop("after-decide");
        engine_tell_items(e, t->txid, its->v, its->n, commit, 0, p);
        failpoint_stop("after-tell");
        return commit ? 0 : 1;
}

int engine_snapshot(struct engine *e, const struct engine_cut_req *req, engine_event_fn ev, void *arg,
                    char ret_txid[65], lserr *err)
{
        const struct progress p = {ev, arg};
        _cleanup_(items_freep) struct items its = {0};
        const struct cfg_group *g = NULL;
        struct cat_txn t = {0};
        struct cut_spec s;
        unsigned lease_s = 0;
        int mode = 0, r;

        r = cut_spec_of(e, req, &g, &mode, &lease_s, err);
        if (r < 0)
                return r;
        r = engine_take_slot_cfg(e, g, &p, err);
        if (r < 0)
                return r;
        e->make_txid(t.txid);
        t.kind = CAT_KIND_SNAPSHOT;
        snprintf(t.group, sizeof(t.group), "%s", g->name);
        snprintf(t.name, sizeof(t.name), "%s", req->name ? req->name : t.txid);
        snprintf(t.mode, sizeof(t.mode), "%s", cfg_mode_name((enum cfg_mode)mode));
        t.lease_ms = lease_s * 1000;
        s = (struct cut_spec){.g = g, .snap = t.name, .mode = (Lockstep__Mode)mode, .lease_ms = t.lease_ms,
                              .by_tier = g->n_tiers > 1};
        r = build_items(e, g, &its, err);
        if (r == 0)
                r = cut_begin(e, &t, &s, &its, &p, ret_txid, err);
        if (r == 0)
                r = cut_run(e, &t, &s, &its, &p, err);
        slots_drop(e->slots, g->name);
        return r;
}

/* ---- check -------------------------------------------------------------------- */

static void check_fill(struct item *it, const void *ctx)
{
        const struct cut_spec *s = ctx;

        it->pl.check.mode = s->mode;
        it->pl.check.lease_ms = s->lease_ms;
        it->pl.check.hook = s->g->hook ? s->g->hook : (char *)"";
        it->pl.check.members = it->memberp;
        it->pl.check.n_members = it->n_members;
}

/* The agent's clock against ours, from its signed answer; a member that
 * passes is still warned of a clock past half the window, before the window
 * starts refusing its commands. */
static void check_clock(const struct item *it, struct engine_check_member *out)
{
        char warn[300], was[sizeof(out->message)];
        long long off = 0, unsure = 0;

        if (!it->rep || clockskew_offset(it->rep->now_us, it->cmd.issued_at_us, it->recv_us, &off, &unsure) < 0)
                return;
        out->clock_known = 1;
        out->clock_offset_ms = off / 1000;
        clockskew_warning(off, warn, sizeof(warn));
        if (!out->ok || !warn[0])
                return;
        snprintf(was, sizeof(was), "%s", out->message);
        snprintf(out->message, sizeof(out->message), "%.380s%s%s", was, was[0] ? "; " : "", warn);
}

/* One result line: the member's own answer, or why its agent gave none. */
static void check_result(const struct item *it, const Lockstep__Member *m, struct engine_check_member *out)
{
        snprintf(out->vm, sizeof(out->vm), "%s", m->vm);
        snprintf(out->agent, sizeof(out->agent), "%s", agentlink_id(it->link));
        if (!it->rep) {
                /* An agent that answered with an unsigned refusal code is there
                 * but cannot check our signature: a key to fix, not a network. */
                snprintf(out->code, sizeof(out->code), "%s",
                         it->err.code == LS_EREFUSED ? "WRONG_KEY" : "UNREACHABLE");
                snprintf(out->message, sizeof(out->message), "%s", it->err.msg);
                return;
        }
        if (it->rep->code == LOCKSTEP__ERROR_CODE__E_REJECTED) {
                /* The agent answered but refused us: unknown key, role, clock... */
                snprintf(out->code, sizeof(out->code), "%s", clockskew_refused(it->rep) ? "CLOCK" : "E_REJECTED");
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

/* An agent engine_reach found without a connection (its err says why) is
 * not waited for: its members are UNREACHABLE at once, not after the step's
 * deadline. */
static int check_skip(const struct item *it, const void *ctx)
{
        (void)ctx;
        return it->err.msg[0] != '\0';
}

int engine_check(struct engine *e, const char *group, int mode, unsigned lease_s, struct engine_check_member **ret,
                 size_t *ret_n, lserr *err)
{
        const struct cfg_group *g = cfg_coord_group(e->cfg, group);
        _cleanup_(items_freep) struct items its = {0};
        _cleanup_free_ struct engine_check_member *out = NULL;
        struct cut_spec s;
        struct round rd = {.e = e, .step = LOCKSTEP__STEP__STEP_CHECK, .fill = check_fill, .ctx = &s};
        char txid[65];
        size_t k = 0;
        int r, failed = 0;

        if (!g)
                return lserr_set(err, -ENOENT, "group \"%s\" is not in the configuration", group);
        s = (struct cut_spec){.g = g, .mode = (Lockstep__Mode)(mode < 0 ? (int)g->mode : mode),
                              .lease_ms = (lease_s ? lease_s : g->lease_s) * 1000};
        /* Shaped like a cut's txid, so every file name checked is as long as a cut's. */
        engine_make_txid(txid);
        txid[0] = 'c';
        txid[1] = 'k';
        r = build_items(e, g, &its, err);
        if (r < 0)
                return r;
        out = calloc(g->n_members ? g->n_members : 1, sizeof(*out));
        if (!out)
                return -ENOMEM;
        /* A guest agent ping may take its whole deadline on a hung guest. */
        rd.txid = txid;
        rd.timeout_ms = engine_step_ms(e);
        rd.skip = check_skip;
        engine_reach(e, its.v, its.n);
        engine_round(&rd, its.v, its.n);
        for (size_t i = 0; i < its.n; i++)
                for (size_t m = 0; m < its.v[i].n_members; m++) {
                        assert(k < g->n_members);
                        check_result(&its.v[i], its.v[i].memberp[m], &out[k]);
                        check_clock(&its.v[i], &out[k]);
                        failed |= !out[k].ok;
                        k++;
                }
        *ret = TAKE_PTR(out);
        *ret_n = k;
        return failed ? 1 : 0;
}
