/* execute: status, discover and the transaction steps, answered with an unsigned
 * packed Reply. Runs in the root executor; the command was verified upstream. */
#include "execute.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "envelope.h"
#include "log.h"
#include "names.h"

struct execute {
        const struct cfg_agent *cfg;
        struct hv *hv;
        struct txn_mgr *txns;
};

int execute_new(const struct cfg_agent *cfg, struct hv *hv, struct txn_mgr *txns, struct execute **ret, lserr *err)
{
        struct execute *x = calloc(1, sizeof(*x));

        if (!x)
                return lserr_set(err, -ENOMEM, "execute: out of memory");
        x->cfg = cfg;
        x->hv = hv;
        x->txns = txns;
        *ret = x;
        return 0;
}

struct execute *execute_free(struct execute *x)
{
        free(x);
        return NULL;
}

/* One request's reply and what it points at; answer_done frees it all. */
struct answer {
        Lockstep__Reply rep;
        char msg[LSERR_MSG_MAX + 64];
        Lockstep__InDoubt **in_doubt;
        size_t n_in_doubt;
        struct hv_domain *doms;
        Lockstep__MemberResult **found;
        size_t n_found;
};

static void answer_done(struct answer *a)
{
        for (size_t i = 0; i < a->n_found; i++)
                free(a->found[i]);
        free(a->found);
        free(a->doms);
        txn_in_doubt_free(a->in_doubt, a->n_in_doubt);
}

/* Status: version, clock and the transactions waiting for a decision. */
static int handle_status(struct execute *x, struct answer *a, lserr *err)
{
        int r = txn_in_doubt(x->txns, &a->in_doubt, &a->n_in_doubt);

        if (r < 0)
                return lserr_set(err, r, "status: cannot list the transactions in doubt");
        a->rep.code = LOCKSTEP__ERROR_CODE__OK;
        a->rep.version = (char *)LOCKSTEP_VERSION;
        a->rep.in_doubt = a->in_doubt;
        a->rep.n_in_doubt = a->n_in_doubt;
        return 0;
}

/* Discover: every domain of this host with its lockstep labels. */
static int handle_discover(struct execute *x, struct answer *a, lserr *err)
{
        static const char *const states[] = {"running", "paused", "shut off", "other"};
        size_t n = 0;
        int r = hv_list(x->hv, &a->doms, &n, err);

        if (r < 0)
                return r;
        a->found = calloc(n ? n : 1, sizeof(*a->found));
        if (!a->found)
                return lserr_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                Lockstep__MemberResult *mr = calloc(1, sizeof(*mr));
                if (!mr)
                        return lserr_set(err, -ENOMEM, "out of memory");
                a->found[a->n_found++] = mr;
                lockstep__member_result__init(mr);
                assert((unsigned)a->doms[i].state < sizeof(states) / sizeof(states[0]));
                mr->vm = a->doms[i].name;
                mr->group_label = a->doms[i].group;
                mr->tier_label = a->doms[i].tier;
                mr->state = (char *)states[a->doms[i].state];
        }
        a->rep.members = a->found;
        a->rep.n_members = n;
        a->rep.code = LOCKSTEP__ERROR_CODE__OK;
        return 0;
}

/* Steps the transaction manager answers; the rest are answered here. */
static int is_txn_step(Lockstep__Step step)
{
        switch (step) {
        case LOCKSTEP__STEP__STEP_FREEZE:
        case LOCKSTEP__STEP__STEP_SNAPSHOT:
        case LOCKSTEP__STEP__STEP_DECIDE:
        case LOCKSTEP__STEP__STEP_DELETE:
        case LOCKSTEP__STEP__STEP_REVERT_PREPARE:
        case LOCKSTEP__STEP__STEP_REVERT_STOP:
        case LOCKSTEP__STEP__STEP_REVERT_SWITCH:
        case LOCKSTEP__STEP__STEP_REVERT_START:
        case LOCKSTEP__STEP__STEP_REVERT_DECIDE:
        case LOCKSTEP__STEP__STEP_CHECK:
                return 1;
        default:
                return 0;
        }
}

static int is_opening_step(Lockstep__Step step)
{
        return step == LOCKSTEP__STEP__STEP_FREEZE || step == LOCKSTEP__STEP__STEP_REVERT_PREPARE ||
               step == LOCKSTEP__STEP__STEP_DELETE;
}

/* Before a transaction step runs: a decision of a txid this agent does not
 * have is remembered, and an opening step of a txid already decided (one held
 * back on the path until after its ABORT) is answered in a->rep with its
 * refusal: returns 1. CHECK is not an opening step: it takes nothing. */
static int late_opening(struct execute *x, const Lockstep__Command *cmd, struct answer *a)
{
        lserr e = {0};

        if (cmd->step == LOCKSTEP__STEP__STEP_DECIDE || cmd->step == LOCKSTEP__STEP__STEP_REVERT_DECIDE) {
                /* The decision goes on: an agent that cannot write its memory
                 * still holds the txid until it restarts. */
                if (txn_note_decided(x->txns, cmd->txid, &e) < 0)
                        log_err("txid=%s step=%s: cannot remember the decision durably: %s", cmd->txid,
                                env_step_name(cmd->step), e.msg);
                return 0;
        }
        if (!is_opening_step(cmd->step) || !txn_was_decided(x->txns, cmd->txid))
                return 0;
        snprintf(a->msg, sizeof(a->msg),
                 "%s: %s: transaction %s was already decided on this agent: a late opening step is refused",
                 x->cfg->id, env_step_name(cmd->step), cmd->txid);
        log_warn("txid=%s step=%s refused: the transaction was already decided (a delayed or replayed command)",
                 cmd->txid, env_step_name(cmd->step));
        a->rep.code = LOCKSTEP__ERROR_CODE__E_BAD_STATE;
        a->rep.state = LOCKSTEP__TXN_STATE__TXN_ABORTED;
        a->rep.message = a->msg;
        return 1;
}

/* STATUS, DISCOVER and steps this agent does not know, answered in a->rep.
 * < 0 only when no reply can be made. */
static int answer_local(struct execute *x, const Lockstep__Command *cmd, struct answer *a, lserr *err)
{
        lserr why = {0};
        int r;

        switch (cmd->step) {
        case LOCKSTEP__STEP__STEP_STATUS:
                return handle_status(x, a, err);
        case LOCKSTEP__STEP__STEP_DISCOVER:
                /* A failed discover is an answer, not a dropped request. */
                r = handle_discover(x, a, &why);
                if (r < 0) {
                        snprintf(a->msg, sizeof(a->msg), "%s: discover: %s", x->cfg->id, why.msg);
                        a->rep.code = LOCKSTEP__ERROR_CODE__E_INTERNAL;
                        a->rep.message = a->msg;
                }
                return 0;
        default:
                /* The verifier refuses unknown steps; this is a step it knows
                 * and this table does not. */
                snprintf(a->msg, sizeof(a->msg), "%s: step %s is not supported by this agent", x->cfg->id,
                         env_step_name(cmd->step));
                a->rep.code = LOCKSTEP__ERROR_CODE__E_UNSUPPORTED;
                a->rep.message = a->msg;
                return 0;
        }
}

static int pack_reply(const Lockstep__Reply *rep, uint8_t **ret, size_t *ret_len, lserr *err)
{
        size_t n = lockstep__reply__get_packed_size(rep);
        uint8_t *buf = malloc(n ? n : 1);

        if (!buf)
                return lserr_set(err, -ENOMEM, "reply: out of memory");
        lockstep__reply__pack(rep, buf);
        *ret = buf;
        *ret_len = n;
        return 0;
}

int execute_command(void *arg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len, lserr *err)
{
        struct execute *x = arg;
        _cleanup_(answer_done) struct answer a = {.rep = LOCKSTEP__REPLY__INIT};
        int r;

        a.rep.txid = cmd->txid;
        a.rep.step = cmd->step;
        if (is_txn_step(cmd->step) && late_opening(x, cmd, &a))
                return pack_reply(&a.rep, ret, ret_len, err);
        if (is_txn_step(cmd->step)) {
                r = txn_step(x->txns, cmd, ret, ret_len);
                if (r < 0)
                        return lserr_set(err, r, "txid=%s step=%s: no reply could be made", cmd->txid,
                                         env_step_name(cmd->step));
                return 0;
        }
        r = answer_local(x, cmd, &a, err);
        if (r < 0)
                return r;
        return pack_reply(&a.rep, ret, ret_len, err);
}
