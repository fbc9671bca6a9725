/* dispatch: verify, hand the command to the executor, sign its reply. */
#include "dispatch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "dispatch_priv.h"
#include "failpoint.h"
#include "fsutil.h"
#include "log.h"

/* Unverified messages cost anyone nothing to send: at most this many log lines
 * per interval, then one line that counts the rest. */
#define JUNK_LOG_BURST 10
#define JUNK_LOG_INTERVAL_US (10LL * 1000000LL)

struct dispatch {
        const struct cfg_agent *cfg;
        const struct keys_secret *key;
        struct env_verifier *v;
        dispatch_exec_fn exec;
        void *exec_arg;
        pthread_mutex_t junk_lock; /* the junk log's budget below */
        unsigned junk_burst;
        long long junk_interval_us, junk_since_mono;
        unsigned junk_logged;
        unsigned long junk_suppressed;
};

int dispatch_new(const struct cfg_agent *cfg, const struct keys_secret *key, struct env_verifier *v,
                 dispatch_exec_fn exec, void *exec_arg, struct dispatch **ret, lserr *err)
{
        struct dispatch *d = calloc(1, sizeof(*d));

        if (!d)
                return lserr_set(err, -ENOMEM, "dispatch: out of memory");
        d->cfg = cfg;
        d->key = key;
        d->v = v;
        d->exec = exec;
        d->exec_arg = exec_arg;
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

static void command_freep(Lockstep__Command **c)
{
        if (*c)
                lockstep__command__free_unpacked(*c, NULL);
}

/* The executor's unsigned reply to a verified command, completed and signed. */
static int handle_exec(struct dispatch *d, const Lockstep__Command *cmd, uint8_t hash[ENV_HASH_LEN], uint8_t **ret,
                       size_t *ret_len, lserr *err)
{
        _cleanup_free_ uint8_t *packed = NULL;
        size_t len = 0;
        Lockstep__Reply *rep;
        int r = d->exec(d->exec_arg, cmd, &packed, &len, err);

        if (r < 0)
                return r;
        rep = lockstep__reply__unpack(NULL, len, packed);
        if (!rep)
                return lserr_set(err, LS_EMALFORMED, "txid=%s step=%s: the executor's reply does not unpack",
                                 cmd->txid, env_step_name(cmd->step));
        /* The epoch this command passed the fence with: the leader learns that
         * this agent keeps the fence. */
        rep->epoch_obeyed = failpoint_on("agent-predates-epoch") ? 0 : cmd->epoch;
        r = sign_reply(d, rep, hash, 1, ret, ret_len, err);
        /* sign_reply pointed these at our memory: unhook before freeing. */
        rep->agent = NULL;
        rep->command_hash.data = NULL;
        rep->command_hash.len = 0;
        lockstep__reply__free_unpacked(rep, NULL);
        return r;
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
        /* A deposed leader learns the epoch that replaced it. */
        if (code == LS_EEPOCH)
                rep.epoch_seen = rf->epoch_seen;
        return sign_reply(d, &rep, hash, 1, ret, ret_len, err);
}

/* Tests hold or kill the agent between a step's work and its reply. */
static void reply_failpoint(Lockstep__Step step)
{
        char name[64];

        snprintf(name, sizeof(name), "agent-reply-%s", env_step_name(step));
        failpoint_stop(name);
}

/* The reply to one request; < 0 with err when none can be made. */
static int answer(struct dispatch *d, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len, lserr *err)
{
        _cleanup_(command_freep) Lockstep__Command *cmd = NULL;
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
        r = handle_exec(d, cmd, hash, ret, ret_len, err);
        if (r == 0 && cmd->txid[0])
                reply_failpoint(cmd->step);
        /* Status and discover (no txid) are polled: debug only. */
        if (cmd->txid[0])
                log_info("txid=%s step=%s key=%s dur_ms=%.1f", cmd->txid, env_step_name(cmd->step), key->name,
                         (double)(fsutil_mono_us() - t0) / 1000.0);
        else
                log_debug("step=%s key=%s dur_ms=%.1f", env_step_name(cmd->step), key->name,
                          (double)(fsutil_mono_us() - t0) / 1000.0);
        return r;
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
