/* engine_recover: finishing what a crash or an unreachable agent left
 * unresolved (presumed abort; a logged decision told again; what agents hold
 * in doubt), and polling every agent's status for the catalog. */
#include "engine_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clockskew.h"
#include "fsutil.h"
#include "log.h"
#include "slots.h"

#define STATUS_TIMEOUT_MS 5000

/* A delete cut short: every chain is valid; the cut (or, for a branch delete,
 * the revert) says so. */
static int settle_delete(struct engine *e, const struct cat_txn *t, const struct progress *p, lserr *err)
{
        int r = 0;

        if (t->state == CAT_TXN_STARTED)
                r = cat_txn_decide(e->cat, t->txid, 0, "interrupted by a restart", err);
        if (r >= 0)
                r = cat_txn_finish(e->cat, t->txid, err);
        if (r >= 0 && !strcmp(t->mode, "branch"))
                r = cat_branch_set_status(e->cat, t->name, "delete-failed",
                                          "the branch delete was interrupted by a restart; delete it again", err);
        else if (r >= 0)
                r = cat_cut_set_status(e->cat, t->name, "delete-failed",
                                       "the delete was interrupted by a restart; delete it again", err);
        engine_emit(p, "RECOVER  %s: interrupted delete of %s marked delete-failed", t->txid, t->name);
        return r < 0 ? r : 0;
}

/* The distinct configured agents of a transaction's members. */
static int txn_links(struct engine *e, const char *txid, struct agentlink ***ret, size_t *ret_n, lserr *err)
{
        _cleanup_free_ struct cat_member *m = NULL;
        _cleanup_free_ struct agentlink **links = NULL;
        size_t nm = 0, n = 0;
        int r = cat_members(e->cat, txid, &m, &nm, err);

        if (r < 0)
                return r;
        links = calloc(nm ? nm : 1, sizeof(*links));
        if (!links)
                return -ENOMEM;
        for (size_t i = 0; i < nm; i++) {
                struct agentlink *l = engine_link_of(e, m[i].agent);
                int seen = 0;
                for (size_t k = 0; k < n; k++)
                        seen |= links[k] == l;
                if (l && !seen)
                        links[n++] = l;
        }
        *ret = TAKE_PTR(links);
        *ret_n = n;
        return 0;
}

/* Sends a logged decision (or decides abort) for one transaction. 1 when an
 * agent did not confirm it. */
static int settle(struct engine *e, struct cat_txn *t, const struct progress *p, lserr *err)
{
        _cleanup_free_ struct agentlink **links = NULL;
        size_t n = 0;
        int r, commit;

        if (t->kind == CAT_KIND_DELETE)
                return settle_delete(e, t, p, err);
        if (t->state == CAT_TXN_STARTED) {
                r = cat_txn_decide(e->cat, t->txid, 0, "presumed abort: no decision was logged before a restart", err);
                if (r < 0)
                        return r;
                t->state = CAT_TXN_ABORT;
                engine_emit(p, "RECOVER  %s: no decision logged, presumed abort", t->txid);
        }
        commit = t->state == CAT_TXN_COMMIT;
        /* A committed undo interrupted before it was recorded as such. */
        if (commit && t->kind == CAT_KIND_REVERT && !strcmp(t->mode, "undo"))
                engine_mark_undone(e, t->name);
        r = txn_links(e, t->txid, &links, &n, err);
        if (r < 0)
                return r;
        engine_emit(p, "RECOVER  %s: sending %s to %zu agent(s)", t->txid, commit ? "COMMIT" : "ABORT", n);
        if (engine_tell(e, t->txid, links, n, commit, t->kind == CAT_KIND_REVERT, 0, p))
                return 1;
        return cat_txn_finish(e->cat, t->txid, err);
}

/* Marks busy[i] for each agent e->links[i] that has a member in a group
 * whose cut, delete or revert is running in this process. */
static void mark_busy_agents(struct engine *e, char *busy)
{
        for (unsigned g = 0; g < e->cfg->n_groups; g++) {
                const struct cfg_group *grp = &e->cfg->groups[g];
                if (!slots_busy(e->slots, grp->name))
                        continue;
                for (unsigned m = 0; m < grp->n_members; m++) {
                        long i = engine_link_index(e, grp->members[m].agent);
                        if (i >= 0)
                                busy[i] = 1;
                }
        }
}

/* Every agent's status, asked at once. skip_busy: not the agents of a
 * running operation, which answer its own rounds (a fleet's cut would pay
 * for a second round of signatures and checks in its frozen window); the
 * next pass polls them. */
static int poll_status(struct engine *e, struct items *ret, int skip_busy)
{
        _cleanup_free_ char *busy = calloc(e->n_links ? e->n_links : 1, 1);
        size_t k = 0;

        if (!busy || items_alloc(ret, e->n_links) < 0)
                return -ENOMEM;
        if (skip_busy)
                mark_busy_agents(e, busy);
        for (size_t i = 0; i < e->n_links; i++) {
                if (busy[i])
                        continue;
                ret->v[k].link = e->links[i];
                item_step(&ret->v[k++], "", LOCKSTEP__STEP__STEP_STATUS);
        }
        ret->n = k;
        /* An agent found without a connection is not waited for (its err
         * says why): a down host costs a pass a refused connect, not 5 s. */
        engine_reach(e, ret->v, ret->n);
        for (size_t i = 0; i < ret->n; i++)
                ret->v[i].idle = ret->v[i].err.msg[0] != '\0';
        engine_fan_out(ret->v, ret->n, STATUS_TIMEOUT_MS);
        for (size_t i = 0; i < ret->n; i++)
                ret->v[i].idle = 0;
        return 0;
}

/* What agents hold in doubt that the catalog has already settled, or never
 * heard of (presumed abort), from a poll of every agent. Adds how many could
 * not be settled now to *ret_left. */
static void settle_in_doubt(struct engine *e, const struct items *its_, const struct progress *p,
                            unsigned *ret_left)
{
        const struct items its = *its_;
        unsigned left = 0;

        for (size_t i = 0; i < its.n; i++) {
                struct agentlink *l = its.v[i].link;
                for (size_t k = 0; its.v[i].rep && k < its.v[i].rep->n_in_doubt; k++) {
                        const Lockstep__InDoubt *d = its.v[i].rep->in_doubt[k];
                        struct cat_txn t;
                        lserr err = {0};
                        int commit = 0;
                        if (cat_txn_get(e->cat, d->txid, &t, &err) == 0) {
                                if (t.state == CAT_TXN_STARTED)
                                        continue; /* being decided right now */
                                commit = t.state == CAT_TXN_COMMIT || (t.state == CAT_TXN_DONE && t.committed);
                        }
                        engine_emit(p, "RECOVER  %s in doubt on %s: sending %s", d->txid, agentlink_id(l),
                                    commit ? "COMMIT" : "ABORT");
                        if (engine_tell(e, d->txid, &l, 1, commit, d->revert, 0, p))
                                left++;
                }
        }
        *ret_left += left;
}

/* A clock drifting off while its commands still pass: said before the window
 * starts refusing them (a refusal says so itself, in the agent's last error). */
static void warn_drift(const struct item *it)
{
        long long off = 0, unsure = 0;
        char warn[300];

        if (!item_ok(it) || clockskew_offset(it->rep->now_us, it->cmd.issued_at_us, it->recv_us, &off, &unsure) < 0)
                return;
        clockskew_warning(off, warn, sizeof(warn));
        if (warn[0])
                log_warn("agent \"%s\": %s", agentlink_id(it->link), warn);
}

/* One agent's row from its status answer; its item is e->links[i]'s. */
static void record_agent(struct engine *e, const struct item *it)
{
        long i = engine_link_index(e, agentlink_id(it->link));
        const struct cfg_peer *peer = i < 0 ? NULL : &e->cfg->agents[i];
        struct cat_agent a = {0};
        lserr err = {0};

        assert(peer); /* every link was opened from the configuration */
        warn_drift(it);
        snprintf(a.id, sizeof(a.id), "%s", peer->id);
        snprintf(a.url, sizeof(a.url), "%s", peer->url);
        snprintf(a.fingerprint, sizeof(a.fingerprint), "%s", e->fingerprints[i]);
        a.checked_us = fsutil_now_us();
        a.reachable = item_ok(it);
        if (it->rep) {
                snprintf(a.version, sizeof(a.version), "%s", it->rep->version);
                a.in_doubt = (unsigned)it->rep->n_in_doubt;
                a.last_seen_us = a.checked_us;
                if (!a.reachable)
                        snprintf(a.last_error, sizeof(a.last_error), "%s", it->rep->message);
        } else {
                snprintf(a.last_error, sizeof(a.last_error), "%s", it->err.msg);
        }
        /* A health record: nobody else hears of a failure to write it. */
        if (cat_agent_put(e->cat, &a, &err) < 0)
                log_err("%s", err.msg);
}

/* Status polls are not transactions: only the ones that failed are worth an
 * audit row (each agent's row says when it last answered). One SQLite
 * transaction for the whole fleet's rows. */
static void record_poll(struct engine *e, struct items *its, int agents)
{
        lserr err = {0};
        int batch = cat_batch_begin(e->cat, &err) == 0;

        if (!batch)
                log_err("%s", err.msg);
        for (size_t i = 0; i < its->n; i++) {
                struct item *it = &its->v[i];
                engine_write_audit(e, it, !item_ok(it));
                if (agents)
                        record_agent(e, it);
        }
        lserr_clear(&err);
        if (batch && cat_batch_end(e->cat, &err) < 0)
                log_err("%s", err.msg);
}

/* Unresolved transactions first, then what the polled agents hold in doubt. */
static int recover_with(struct engine *e, const struct items *polled, const struct progress *p, unsigned *ret_left,
                        lserr *err)
{
        _cleanup_free_ struct cat_txn *ts = NULL;
        size_t n = 0;
        unsigned left = 0;
        int r = cat_txn_unresolved(e->cat, &ts, &n, err);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                lserr why = {0};
                /* A cut still running in this process is not ours to settle. */
                if (slots_busy(e->slots, ts[i].group))
                        continue;
                r = settle(e, &ts[i], p, &why);
                if (r == 0)
                        continue;
                left++;
                /* Said in the progress, which the daemon logs: recovery goes
                 * on with the next transaction. */
                if (r < 0)
                        engine_emit(p, "RECOVER  %s: %s", ts[i].txid, why.msg);
        }
        settle_in_doubt(e, polled, p, &left);
        if (ret_left)
                *ret_left = left;
        return 0;
}

/* One status poll of every agent (but the busy ones for the periodic health
 * pass), recorded (agents: their rows too), then recovery with that poll's
 * in-doubt lists. */
static int poll_and_recover(struct engine *e, const struct progress *p, int agents, unsigned *ret_left, lserr *err)
{
        _cleanup_(items_freep) struct items its = {0};

        if (poll_status(e, &its, agents) < 0)
                return lserr_set(err, -ENOMEM, "agent status: out of memory");
        record_poll(e, &its, agents);
        return recover_with(e, &its, p, ret_left, err);
}

int engine_recover(struct engine *e, engine_event_fn ev, void *arg, unsigned *ret_left, lserr *err)
{
        const struct progress p = {ev, arg};

        return poll_and_recover(e, &p, 0, ret_left, err);
}

int engine_poll_agents(struct engine *e, lserr *err)
{
        _cleanup_(items_freep) struct items its = {0};

        if (poll_status(e, &its, 0) < 0)
                return lserr_set(err, -ENOMEM, "agent status: out of memory");
        record_poll(e, &its, 1);
        return 0;
}

int engine_health(struct engine *e, unsigned *ret_left, lserr *err)
{
        const struct progress p = {NULL, NULL};

        return poll_and_recover(e, &p, 1, ret_left, err);
}
