/* dispatch: verify, route to the step's handler, sign the reply. */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"
#include "txn.h"

struct dispatch {
        const struct cfg_agent *cfg;
        const struct keys_secret *key;
        struct env_verifier *v;
        struct hv *hv;
        struct txn_mgr *txns;
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
        *ret = d;
        return 0;
}

struct dispatch *dispatch_free(struct dispatch *d)
{
        free(d);
        return NULL;
}

static int sign_reply(struct dispatch *d, Lockstep__Reply *rep, uint8_t hash[ENV_HASH_LEN], int have_hash,
                      uint8_t **ret, size_t *ret_len)
{
        lserr err = {0};
        int r;

        rep->agent = (char *)d->cfg->id;
        rep->command_hash.data = hash;
        rep->command_hash.len = have_hash ? ENV_HASH_LEN : 0;
        rep->now_us = fsutil_now_us();
        r = env_seal_reply(d->key, rep, ret, ret_len, &err);
        if (r < 0)
                log_err("reply: cannot sign: %s", err.msg);
        return r;
}

/* Status: version, clock and the transactions waiting for a decision. */
static int handle_status(struct dispatch *d, Lockstep__Reply *rep, Lockstep__InDoubt ***ret, size_t *ret_n)
{
        int r = txn_in_doubt(d->txns, ret, ret_n);

        if (r < 0)
                return r;
        rep->code = LOCKSTEP__ERROR_CODE__OK;
        rep->version = (char *)LOCKSTEP_VERSION;
        rep->in_doubt = *ret;
        rep->n_in_doubt = *ret_n;
        return 0;
}

/* Discover: every domain of this host with its lockstep labels. */
static int handle_discover(struct dispatch *d, Lockstep__Reply *rep, struct hv_domain **doms,
                           Lockstep__MemberResult ***ret, lserr *err)
{
        static const char *const states[] = {"running", "paused", "shut off", "other"};
        Lockstep__MemberResult **mr;
        size_t n = 0;
        int r = hv_list(d->hv, doms, &n, err);

        if (r < 0)
                return r;
        mr = calloc(n ? n : 1, sizeof(*mr));
        if (!mr)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                mr[i] = calloc(1, sizeof(**mr));
                if (!mr[i]) {
                        for (size_t k = 0; k < i; k++)
                                free(mr[k]);
                        free(mr);
                        return -ENOMEM;
                }
                lockstep__member_result__init(mr[i]);
                mr[i]->vm = (*doms)[i].name;
                mr[i]->group_label = (*doms)[i].group;
                mr[i]->tier_label = (*doms)[i].tier;
                mr[i]->state = (char *)states[(*doms)[i].state];
        }
        rep->members = mr;
        rep->n_members = n;
        rep->code = LOCKSTEP__ERROR_CODE__OK;
        *ret = mr;
        return 0;
}

/* A transaction step: the stored or fresh reply, completed and signed. */
static int handle_txn(struct dispatch *d, const Lockstep__Command *cmd, uint8_t hash[ENV_HASH_LEN], uint8_t **ret,
                      size_t *ret_len)
{
        uint8_t *packed = NULL;
        size_t len = 0;
        Lockstep__Reply *rep;
        int r = txn_step(d->txns, cmd, &packed, &len);

        if (r < 0)
                return r;
        rep = lockstep__reply__unpack(NULL, len, packed);
        free(packed);
        if (!rep)
                return -ENOMEM;
        r = sign_reply(d, rep, hash, 1, ret, ret_len);
        /* sign_reply pointed these at our memory: unhook before freeing. */
        rep->agent = NULL;
        rep->command_hash.data = NULL;
        rep->command_hash.len = 0;
        lockstep__reply__free_unpacked(rep, NULL);
        return r;
}

int dispatch_handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        struct dispatch *d = arg;
        Lockstep__Reply rep = LOCKSTEP__REPLY__INIT;
        Lockstep__Command *cmd = NULL;
        const struct env_trusted *key = NULL;
        uint8_t hash[ENV_HASH_LEN];
        int have_hash = env_body_hash(req, len, ENV_MAX_DEFAULT, hash) == 0;
        long long t0 = fsutil_mono_us();
        lserr err = {0};
        char msg[LSERR_MSG_MAX + 64];
        Lockstep__InDoubt **in_doubt = NULL;
        size_t n_in_doubt = 0;
        struct hv_domain *doms = NULL;
        Lockstep__MemberResult **found = NULL;
        uint64_t counter_seen = 0;
        int r;

        r = env_verify_command(d->v, req, len, fsutil_now_us(), &cmd, &key, &counter_seen, &err);
        if (r < 0) {
                /* Answer refusals too: the coordinator learns why at once instead
                 * of waiting for its deadline. */
                snprintf(msg, sizeof(msg), "%s: command refused: %s", d->cfg->id, err.msg);
                log_warn("refused command (%s): %s", lserr_name(r), err.msg);
                rep.code = LOCKSTEP__ERROR_CODE__E_REJECTED;
                rep.reject_reason = r;
                rep.message = msg;
                /* Set only after the signature checked out, so only a holder of
                 * the key learns it; it lets that coordinator resume above another
                 * process signing with the same key instead of being refused
                 * until it restarts. */
                if (r == LS_ECOUNTER)
                        rep.counter_seen = counter_seen;
                return sign_reply(d, &rep, hash, have_hash, ret, ret_len);
        }
        rep.txid = cmd->txid;
        rep.step = cmd->step;
        switch (cmd->step) {
        case LOCKSTEP__STEP__STEP_STATUS:
                r = handle_status(d, &rep, &in_doubt, &n_in_doubt);
                break;
        case LOCKSTEP__STEP__STEP_DISCOVER:
                r = handle_discover(d, &rep, &doms, &found, &err);
                if (r < 0) {
                        snprintf(msg, sizeof(msg), "%s: discover: %s", d->cfg->id, err.msg);
                        rep.code = LOCKSTEP__ERROR_CODE__E_INTERNAL;
                        rep.message = msg;
                        r = 0;
                }
                break;
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
                r = handle_txn(d, cmd, hash, ret, ret_len);
                log_info("txid=%s step=%s key=%s dur_ms=%.1f", cmd->txid, env_step_name(cmd->step), key->name,
                         (double)(fsutil_mono_us() - t0) / 1000.0);
                lockstep__command__free_unpacked(cmd, NULL);
                return r;
        default:
                snprintf(msg, sizeof(msg), "%s: step %s is not supported by this agent", d->cfg->id,
                         env_step_name(cmd->step));
                rep.code = LOCKSTEP__ERROR_CODE__E_UNSUPPORTED;
                rep.message = msg;
                r = 0;
                break;
        }
        if (r < 0) {
                lockstep__command__free_unpacked(cmd, NULL);
                return r;
        }
        log_debug("txid=%s step=%s key=%s code=%d dur_ms=%.1f", cmd->txid[0] ? cmd->txid : "-",
                 env_step_name(cmd->step), key->name, rep.code, (double)(fsutil_mono_us() - t0) / 1000.0);
        r = sign_reply(d, &rep, hash, have_hash, ret, ret_len);
        if (found)
                for (size_t i = 0; i < rep.n_members; i++)
                        free(found[i]);
        free(found);
        free(doms);
        txn_in_doubt_free(in_doubt, n_in_doubt);
        lockstep__command__free_unpacked(cmd, NULL);
        return r;
}
