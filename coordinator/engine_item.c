/* engine_item: one agent's part of an engine step: its members, the command
 * for the step in flight, and the answer (or why there is none). */
#include "engine_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "fsutil.h"

int items_alloc(struct items *its, size_t cap)
{
        its->v = calloc(cap ? cap : 1, sizeof(*its->v));
        its->n = 0;
        return its->v ? 0 : -ENOMEM;
}

void items_free(struct items *its)
{
        for (size_t i = 0; its->v && i < its->n; i++) {
                struct item *it = &its->v[i];
                free(it->req.buf);
                free(it->members);
                free(it->memberp);
                free(it->mdisks);
                free(it->mdiskp);
                free(it->dimgs);
                free(it->dimgp);
                for (size_t k = 0; k < it->n_aud; k++)
                        free((char *)it->aud[k].detail); /* audit_at's copies */
                free(it->aud);
                for (size_t k = 0; k < it->n_held; k++)
                        lockstep__reply__free_unpacked(it->held[k], NULL);
                if (it->rep)
                        lockstep__reply__free_unpacked(it->rep, NULL);
        }
        free(its->v);
        its->v = NULL;
        its->n = 0;
}

int item_members_alloc(struct item *it, size_t n)
{
        it->members = calloc(n ? n : 1, sizeof(*it->members));
        it->memberp = calloc(n ? n : 1, sizeof(*it->memberp));
        return it->members && it->memberp ? 0 : -ENOMEM;
}

/* The caller sized the arrays for every member it adds. */
void item_add_member(struct item *it, const char *vm, unsigned tier, int crash)
{
        Lockstep__Member *mm = &it->members[it->n_members];

        lockstep__member__init(mm);
        mm->vm = (char *)vm;
        mm->tier = tier;
        mm->consistency = crash ? LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH : LOCKSTEP__CONSISTENCY__CONSISTENCY_QUIESCE;
        it->memberp[it->n_members++] = mm;
}

/* Points cmd at the payload's live member; the step picks it. */
static void item_wire(struct item *it)
{
        Lockstep__Command *c = &it->cmd;
        struct payload *pl = &it->pl;

        switch (pl->step) {
        case LOCKSTEP__STEP__STEP_FREEZE:
                lockstep__freeze_request__init(&pl->freeze);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_FREEZE;
                c->freeze = &pl->freeze;
                break;
        case LOCKSTEP__STEP__STEP_SNAPSHOT:
                lockstep__snapshot_request__init(&pl->snapshot);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_SNAPSHOT;
                c->snapshot = &pl->snapshot;
                break;
        case LOCKSTEP__STEP__STEP_DECIDE:
                lockstep__decide_request__init(&pl->decide);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_DECIDE;
                c->decide = &pl->decide;
                break;
        case LOCKSTEP__STEP__STEP_DELETE:
                lockstep__delete_request__init(&pl->del);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_DELETE;
                c->delete_ = &pl->del;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_PREPARE:
                lockstep__revert_prepare_request__init(&pl->rprep);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_PREPARE;
                c->revert_prepare = &pl->rprep;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_STOP:
                lockstep__revert_stop_request__init(&pl->rstop);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_STOP;
                c->revert_stop = &pl->rstop;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_SWITCH:
                lockstep__revert_switch_request__init(&pl->rswitch);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_SWITCH;
                c->revert_switch = &pl->rswitch;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_START:
                lockstep__revert_start_request__init(&pl->rstart);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_START;
                c->revert_start = &pl->rstart;
                break;
        case LOCKSTEP__STEP__STEP_REVERT_DECIDE:
                lockstep__revert_decide_request__init(&pl->rdecide);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_REVERT_DECIDE;
                c->revert_decide = &pl->rdecide;
                break;
        case LOCKSTEP__STEP__STEP_CHECK:
                lockstep__check_request__init(&pl->check);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_CHECK;
                c->check = &pl->check;
                break;
        case LOCKSTEP__STEP__STEP_STATUS:
                lockstep__status_request__init(&pl->status);
                c->payload_case = LOCKSTEP__COMMAND__PAYLOAD_STATUS;
                c->status = &pl->status;
                break;
        default:
                assert(!"a step the engine never sends");
        }
}

void item_step(struct item *it, const char *txid, Lockstep__Step step)
{
        lockstep__command__init(&it->cmd);
        it->cmd.txid = (char *)txid;
        it->cmd.step = step;
        it->pl.step = step;
        item_wire(it);
        /* A deferred round's reply is still to be recorded. The newest wins a
         * full table (a cut of many tiers): an agent's later reply says all
         * that its earlier ones of the cut said. */
        if (it->rep && it->keep_rep && it->n_held == sizeof(it->held) / sizeof(it->held[0]))
                lockstep__reply__free_unpacked(it->held[--it->n_held], NULL);
        if (it->rep && it->keep_rep)
                it->held[it->n_held++] = it->rep;
        else if (it->rep)
                lockstep__reply__free_unpacked(it->rep, NULL);
        it->rep = NULL;
        it->keep_rep = 0;
}

int item_ok(const struct item *it)
{
        return it->rep && it->rep->code == LOCKSTEP__ERROR_CODE__OK;
}

void item_why(const struct item *it, char *out, size_t n)
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


int items_by_agent(struct engine *e, size_t n, const char *(*agent)(const void *ctx, size_t i), const void *ctx,
                   struct items *ret, size_t *ret_item, size_t *ret_bad)
{
        _cleanup_(items_freep) struct items its = {0};
        _cleanup_free_ size_t *count = calloc(e->n_links ? e->n_links : 1, sizeof(*count));
        _cleanup_free_ long *slot = calloc(e->n_links ? e->n_links : 1, sizeof(*slot));
        size_t n_items = 0;

        if (!count || !slot)
                return -ENOMEM;
        /* First how many members each agent has: items sized for their own. */
        for (size_t i = 0; i < n; i++) {
                long li = engine_link_index(e, agent(ctx, i));
                if (li < 0) {
                        *ret_bad = i;
                        return -ENOENT;
                }
                n_items += count[li]++ == 0;
                slot[li] = -1;
        }
        if (items_alloc(&its, n_items) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                long li = engine_link_index(e, agent(ctx, i));
                if (slot[li] < 0) {
                        slot[li] = (long)its.n++;
                        its.v[slot[li]].link = e->links[li];
                        if (item_members_alloc(&its.v[slot[li]], count[li]) < 0)
                                return -ENOMEM;
                }
                ret_item[i] = (size_t)slot[li];
        }
        *ret = its;
        its = (struct items){0};
        return 0;
}

/* Above the dialer's longest back-off between tries (2 s, transport_dial). */
#define REACH_WAIT_MS 3000
/* Only the first few agents without a connection get a probe (up to 1 s
 * each): a fleet with a hundred hosts down is not kept a hundred seconds. */
#define REACH_PROBES 3

size_t engine_reach(struct engine *e, struct item *items, size_t n)
{
        int wait_ms = engine_step_ms(e) < REACH_WAIT_MS ? engine_step_ms(e) : REACH_WAIT_MS;
        long long deadline = fsutil_mono_us() + (long long)wait_ms * 1000;
        size_t down = 0, probes = 0;

        for (size_t i = 0; i < n; i++) {
                struct agentlink *l = items[i].link;
                int probed = 0;
                if (agentlink_wait_connected(l, 0))
                        continue;
                /* A refused connect or certificate is known at once: no wait
                 * for it. One that goes through: nng's next try will too. */
                if (probes < REACH_PROBES) {
                        probes++;
                        if (agentlink_unconnected(l, 1, &items[i].err) < 0) {
                                down++;
                                continue;
                        }
                        probed = 1;
                }
                if (agentlink_wait_connected(l, probed ? fsutil_mono_us() + wait_ms * 1000LL : deadline))
                        continue;
                if (probed)
                        lserr_set(&items[i].err, -ENOTCONN,
                                  "agent \"%s\" (%s): not connected: a connect of lockstepd's own gets through, "
                                  "but its link did not reconnect within %d ms",
                                  agentlink_id(l), agentlink_url(l), wait_ms);
                else
                        agentlink_unconnected(l, 0, &items[i].err);
                down++;
        }
        return down;
}

static void unsent(struct round *rd, struct item *items, size_t n)
{
        const char *first = NULL;
        size_t down = 0;

        for (size_t i = 0; i < n; i++) {
                struct item *it = &items[i];
                it->unsent = 1;
                if (!it->err.msg[0])
                        continue;
                /* A fleet's every line would drown the first. */
                if (rd->say && (down == 0 || n <= ENGINE_SAY_MAX))
                        rd->say(rd, it, it->err.msg);
                down++;
                if (!first) {
                        first = agentlink_id(it->link);
                        snprintf(rd->reason, sizeof(rd->reason), "%s; nothing was sent, nothing %s", it->err.msg,
                                 rd->step == LOCKSTEP__STEP__STEP_FREEZE ? "frozen" : "touched");
                }
        }
        engine_emit(rd->p, "%-8s not sent: %zu of %zu agent(s) not connected, nothing %s", env_step_name(rd->step), down,
                    n, rd->step == LOCKSTEP__STEP__STEP_FREEZE ? "frozen" : "touched");
        for (size_t i = 0; i < n; i++)
                if (!items[i].err.msg[0])
                        lserr_set(&items[i].err, -ENOTCONN, "not sent: agent \"%s\" is not connected",
                                  first ? first : "?");
}

int engine_reach_all(struct round *rd, struct item *items, size_t n)
{
        if (engine_reach(rd->e, items, n) == 0)
                return 1;
        unsent(rd, items, n);
        return 0;
}
