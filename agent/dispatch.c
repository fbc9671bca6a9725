/* dispatch: verify, route to the step's handler, sign the reply. */
#include "dispatch.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "dispatch_priv.h"
#include "fsutil.h"
#include "log.h"
#include "txn.h"

/* Unverified messages cost anyone nothing to send: at most this many log lines
 * per interval, then one line that counts the rest. */
#define JUNK_LOG_BURST 10
#define JUNK_LOG_INTERVAL_US (10LL * 1000000LL)

struct dispatch {
        const struct cfg_agent *cfg;
        const struct keys_secret *key;
        struct env_verifier *v;
        struct hv *hv;
        struct txn_mgr *txns;
        pthread_mutex_t junk_lock; /* the junk log's budget below */
        unsigned junk_burst;
        long long junk_interval_us, junk_since_mono;
        unsigned junk_logged;
        unsigned long junk_suppressed;
};

int dispatch_new(const struct cfg_agent *cfg, const struct keys_secret *key, struct env_verifier *v, struct hv *hv,
                 struct txn_mgr *txns, struct dispatch **ret, lserr *err)
{
        struct dispatch *d = calloc(1, sizeof(*d));

        if (!d)
                return lserr_set(err, -ENOMEM, "dispatch: out of memory");
        d->cfg = cfg;
        d->key = key;
        d->v = v;
        d->hv = hv;
        d->txns = txns;
        pthread_mutex_init(&d->junk_lock, NULL);
        d->junk_burst = JUNK_LOG_BURST;
        d->junk_interval_us = JUNK_LOG_INTERVAL_US;
        d->junk_since_mono = fsutil_mono_us();
        *ret = d;
        return 0;
}

struct dispatch *dispatch_free(struct dispatch *d)
{
        if (!d)
                return NULL;
        pthread_mutex_destroy(&d->junk_lock);
        free(d);
        return NULL;
}

void dispatch_set_junk_log(struct dispatch *d, unsigned burst, long long interval_us)
{
        pthread_mutex_lock(&d->junk_lock);
        d->junk_burst = burst;
        d->junk_interval_us = interval_us;
        pthread_mutex_unlock(&d->junk_lock);
}

/* One unverified message, logged within the budget. */
static void log_junk(struct dispatch *d, int code, const lserr *why)
{
        long long now = fsutil_mono_us();
        unsigned long suppressed = 0;
        int log_it;

        pthread_mutex_lock(&d->junk_lock);
        if (now - d->junk_since_mono >= d->junk_interval_us) {
                suppressed = d->junk_suppressed;
                d->junk_suppressed = 0;
                d->junk_logged = 0;
                d->junk_since_mono = now;
        }
        log_it = d->junk_logged < d->junk_burst;
        if (log_it)
                d->junk_logged++;
        else
                d->junk_suppressed++;
        pthread_mutex_unlock(&d->junk_lock);
        if (suppressed)
                log_warn("refused unverified: %lu more message(s) suppressed from the log", suppressed);
        if (log_it)
                log_warn("refused unverified (%s), answered unsigned: %s", lserr_name(code), why->msg);
}

/* Before the signature verified, nothing of the message is trusted: the answer
 * is a refusal code, unsigned, so junk costs no signature and the agent signs
 * nothing an attacker chose. */
static int refuse_unverified(struct dispatch *d, int code, const lserr *why, uint8_t **ret, size_t *ret_len,
                             lserr *err)
{
        log_junk(d, code, why);
        return env_seal_refusal(code, ret, ret_len, err);
}

static int sign_reply(struct dispatch *d, Lockstep__Reply *rep, uint8_t hash[ENV_HASH_LEN], int have_hash,
                      uint8_t **ret, size_t *ret_len, lserr *err)
{
        lserr e = {0};
        int r;

        rep->agent = (char *)d->cfg->id;
        rep->command_hash.data = hash;
        rep->command_hash.len = have_hash ? ENV_HASH_LEN : 0;
        rep->now_us = fsutil_now_us();
        r = env_seal_reply(d->key, rep, ret, ret_len, &e);
        if (r < 0)
                return lserr_set(err, r, "reply: cannot sign: %s", e.msg);
        return 0;
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

static void command_freep(Lockstep__Command **c)
{
        if (*c)
                lockstep__command__free_unpacked(*c, NULL);
}

/* Status: version, clock and the transactions waiting for a decision. */
static int handle_status(struct dispatch *d, struct answer *a, lserr *err)
{
        int r = txn_in_doubt(d->txns, &a->in_doubt, &a->n_in_doubt);

        if (r < 0)
                return lserr_set(err, r, "status: cannot list the transactions in doubt");
        a->rep.code = LOCKSTEP__ERROR_CODE__OK;
        a->rep.version = (char *)LOCKSTEP_VERSION;
        a->rep.in_doubt = a->in_doubt;
        a->rep.n_in_doubt = a->n_in_doubt;
        return 0;
}

/* Discover: every domain of this host with its lockstep labels. */
static int handle_discover(struct dispatch *d, struct answer *a, lserr *err)
{
        static const char *const states[] = {"running", "paused", "shut off", "other"};
        size_t n = 0;
        int r = hv_list(d->hv, &a->doms, &n, err);

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

/* A transaction step: the stored or fresh reply, completed and signed. */
static int handle_txn(struct dispatch *d, const Lockstep__Command *cmd, uint8_t hash[ENV_HASH_LEN], uint8_t **ret,
                      size_t *ret_len, lserr *err)
{
        _cleanup_free_ uint8_t *packed = NULL;
        size_t len = 0;
        Lockstep__Reply *rep;
        int r = txn_step(d->txns, cmd, &packed, &len);

        if (r < 0)
                return lserr_set(err, r, "txid=%s step=%s: no reply could be made", cmd->txid,
                                 env_step_name(cmd->step));
        rep = lockstep__reply__unpack(NULL, len, packed);
        if (!rep)
                return lserr_set(err, -ENOMEM, "txid=%s step=%s: stored reply does not unpack", cmd->txid,
                                 env_step_name(cmd->step));
        r = sign_reply(d, rep, hash, 1, ret, ret_len, err);
        /* sign_reply pointed these at our memory: unhook before freeing. */
        rep->agent = NULL;
        rep->command_hash.data = NULL;
        rep->command_hash.len = 0;
        lockstep__reply__free_unpacked(rep, NULL);
        return r;
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

/* A verified command that is refused is answered, signed, naming its txid and
 * step: the coordinator learns why at once instead of waiting for its deadline,
 * and can tell the refusal is of that very command. */
static int refuse(struct dispatch *d, int code, const lserr *why, const struct env_refusal *rf,
                  uint8_t hash[ENV_HASH_LEN], uint8_t **ret, size_t *ret_len, lserr *err)
{
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        char msg[LSERR_MSG_MAX + 64], txid[LS_NAME_MAX + 1];

        snprintf(msg, sizeof(msg), "%s: command refused: %s", d->cfg->id, why->msg);
        snprintf(txid, sizeof(txid), "%s", rf->txid);
        log_warn("refused command (%s): %s", lserr_name(code), why->msg);
        rep.txid = txid;
        rep.step = rf->step;
        rep.code = LOCKSTEP__ERROR_CODE__E_REJECTED;
        rep.reject_reason = code;
        rep.message = msg;
        /* Only a holder of the key learns it; it lets that coordinator resume
         * above another process signing with the same key instead of being
         * refused until it restarts. */
        if (code == LS_ECOUNTER)
                rep.counter_seen = rf->counter_seen;
        return sign_reply(d, &rep, hash, 1, ret, ret_len, err);
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
static int late_opening(struct dispatch *d, const Lockstep__Command *cmd, struct answer *a)
{
        lserr e = {0};

        if (cmd->step == LOCKSTEP__STEP__STEP_DECIDE || cmd->step == LOCKSTEP__STEP__STEP_REVERT_DECIDE) {
                /* The decision goes on: an agent that cannot write its memory
                 * still holds the txid until it restarts. */
                if (txn_note_decided(d->txns, cmd->txid, &e) < 0)
                        log_err("txid=%s step=%s: cannot remember the decision durably: %s", cmd->txid,
                                env_step_name(cmd->step), e.msg);
                return 0;
        }
        if (!is_opening_step(cmd->step) || !txn_was_decided(d->txns, cmd->txid))
                return 0;
        snprintf(a->msg, sizeof(a->msg),
                 "%s: %s: transaction %s was already decided on this agent: a late opening step is refused",
                 d->cfg->id, env_step_name(cmd->step), cmd->txid);
        log_warn("txid=%s step=%s refused: the transaction was already decided (a delayed or replayed command)",
                 cmd->txid, env_step_name(cmd->step));
        a->rep.code = LOCKSTEP__ERROR_CODE__E_BAD_STATE;
        a->rep.state = LOCKSTEP__TXN_STATE__TXN_ABORTED;
        a->rep.message = a->msg;
        return 1;
}

/* STATUS, DISCOVER and steps this agent does not know, answered in a->rep.
 * < 0 only when no reply can be made. */
static int answer_local(struct dispatch *d, const Lockstep__Command *cmd, struct answer *a, lserr *err)
{
        lserr why = {0};
        int r;

        switch (cmd->step) {
        case LOCKSTEP__STEP__STEP_STATUS:
                return handle_status(d, a, err);
        case LOCKSTEP__STEP__STEP_DISCOVER:
                /* A failed discover is an answer, not a dropped request. */
                r = handle_discover(d, a, &why);
                if (r < 0) {
                        snprintf(a->msg, sizeof(a->msg), "%s: discover: %s", d->cfg->id, why.msg);
                        a->rep.code = LOCKSTEP__ERROR_CODE__E_INTERNAL;
                        a->rep.message = a->msg;
                }
                return 0;
        default:
                /* The verifier refuses unknown steps; this is a step it knows
                 * and this table does not. */
                snprintf(a->msg, sizeof(a->msg), "%s: step %s is not supported by this agent", d->cfg->id,
                         env_step_name(cmd->step));
                a->rep.code = LOCKSTEP__ERROR_CODE__E_UNSUPPORTED;
                a->rep.message = a->msg;
                return 0;
        }
}

/* The reply to one request; < 0 with err when none can be made. */
static int answer(struct dispatch *d, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len, lserr *err)
{
        _cleanup_(command_freep) Lockstep__Command *cmd = NULL;
        _cleanup_(answer_done) struct answer a = {.rep = LOCKSTEP__REPLY__INIT};
        const struct env_trusted *key = NULL;
        struct env_refusal rf = {0};
        uint8_t hash[ENV_HASH_LEN];
        long long t0 = fsutil_mono_us();
        lserr why = {0};
        int r;

        r = env_verify_command(d->v, req, len, fsutil_now_us(), &cmd, &key, &rf, &why);
        if (r < 0 && !rf.answerable)
                return refuse_unverified(d, r, &why, ret, ret_len, err);
        /* The signature verified, so the envelope unpacks and hashes. */
        if (env_body_hash(req, len, ENV_MAX_DEFAULT, hash) < 0)
                return lserr_set(err, LS_EMALFORMED, "a verified envelope does not hash");
        if (r < 0)
                return refuse(d, r, &why, &rf, hash, ret, ret_len, err);
        a.rep.txid = cmd->txid;
        a.rep.step = cmd->step;
        if (is_txn_step(cmd->step) && late_opening(d, cmd, &a))
                return sign_reply(d, &a.rep, hash, 1, ret, ret_len, err);
        if (is_txn_step(cmd->step)) {
                r = handle_txn(d, cmd, hash, ret, ret_len, err);
                log_info("txid=%s step=%s key=%s dur_ms=%.1f", cmd->txid, env_step_name(cmd->step), key->name,
                         (double)(fsutil_mono_us() - t0) / 1000.0);
                return r;
        }
        r = answer_local(d, cmd, &a, err);
        if (r < 0)
                return r;
        log_debug("txid=%s step=%s key=%s code=%d dur_ms=%.1f", cmd->txid[0] ? cmd->txid : "-",
                  env_step_name(cmd->step), key->name, a.rep.code, (double)(fsutil_mono_us() - t0) / 1000.0);
        return sign_reply(d, &a.rep, hash, 1, ret, ret_len, err);
}

int dispatch_handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        lserr err = {0};
        int r = answer(arg, req, len, ret, ret_len, &err);

        /* The transport drops a request without a reply silently: say it here, once. */
        if (r < 0)
                log_err("request dropped without a reply (%s): %s", lserr_name(r), err.msg);
        return r;
}
