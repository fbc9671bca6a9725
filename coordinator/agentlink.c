/* agentlink: signed request/verified reply with one agent. */
#include "agentlink.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clockskew.h"
#include "failpoint.h"
#include "fsutil.h"
#include "log.h"
#include "names.h"

struct agentlink {
        char id[LS_NAME_MAX + 1];
        char *url;
        struct keys_public pinned;
        const struct keys_secret *key;
        struct counter *ctr;
        nng_socket sock;
        struct transport_pipes pipes; /* the socket's connections */
        /* tls+tcp:// only: what the agent's certificate is verified against,
         * kept to tell a refused certificate from an agent that is down. */
        char *tls_ca;
        char *server_name;
        const struct agentlink_fence *fence;
        _Atomic uint64_t last_epoch; /* the last epoch a command went out with */
};

int agentlink_open(const char *agent_id, const char *url, const struct keys_public *pinned,
                   const struct keys_secret *key, struct counter *ctr, const struct transport_tls *tls,
                   struct agentlink **ret, lserr *err)
{
        struct agentlink *l;
        lserr e = {0};
        int r;

        if (!names_valid(agent_id))
                return lserr_set(err, -EINVAL, "agent id \"%s\" is not a valid name", agent_id);
        l = calloc(1, sizeof(*l));
        if (!l || !(l->url = strdup(url))) {
                free(l);
                return -ENOMEM;
        }
        transport_pipes_init(&l->pipes);
        snprintf(l->id, sizeof(l->id), "%s", agent_id);
        l->pinned = *pinned;
        l->key = key;
        l->ctr = ctr;
        if (tls && ((tls->ca && !(l->tls_ca = strdup(tls->ca))) ||
                    (tls->server_name && !(l->server_name = strdup(tls->server_name))))) {
                agentlink_close(l);
                return -ENOMEM;
        }
        r = transport_dial_counted(url, ENV_MAX_DEFAULT, tls, &l->pipes, &l->sock, &e);
        if (r < 0) {
                agentlink_close(l);
                return lserr_set(err, r, "agent \"%s\": %s", agent_id, e.msg);
        }
        *ret = l;
        return 0;
}

struct agentlink *agentlink_close(struct agentlink *l)
{
        if (!l)
                return NULL;
        if (nng_socket_id(l->sock) > 0)
                nng_close(l->sock); /* no pipe event after it */
        transport_pipes_destroy(&l->pipes);
        free(l->url);
        free(l->tls_ca);
        free(l->server_name);
        free(l);
        return NULL;
}

/* Short: it runs only after a call failed, and one agent at a time. */
#define PROBE_MS 1000

int agentlink_fail(const struct agentlink *l, const Lockstep__Command *cmd, int rc, lserr *err)
{
        struct transport_tls tls = {.ca = l->tls_ca, .server_name = l->server_name};
        lserr e = {0};

        if (rc == -ECANCELED)
                return lserr_set(err, rc, "agent \"%s\": %s: not waited for: lockstepd is stopping", l->id,
                                 env_step_name(cmd->step));
        /* nng retries a refused TLS handshake quietly, so a call only times out:
         * one connect of our own says whether the certificate was the cause. */
        if (l->tls_ca && transport_probe(l->url, &tls, PROBE_MS, &e) == -EACCES)
                return lserr_set(err, -EACCES, "agent \"%s\": %s: %s", l->id, env_step_name(cmd->step), e.msg);
        if (rc == LS_ETIMEDOUT)
                return lserr_set(err, rc, "agent \"%s\" (%s): %s: no answer before the deadline", l->id, l->url,
                                 env_step_name(cmd->step));
        return lserr_set(err, rc, "agent \"%s\" (%s): %s: connection failed", l->id, l->url,
                         env_step_name(cmd->step));
}

int agentlink_wait_connected(struct agentlink *l, long long deadline_us)
{
        return transport_pipes_wait(&l->pipes, deadline_us);
}

int agentlink_unconnected(const struct agentlink *l, int probe, lserr *err)
{
        struct transport_tls tls = {.ca = l->tls_ca, .server_name = l->server_name};
        lserr e = {0};
        int r;

        if (!probe)
                return lserr_set(err, -ENOTCONN, "agent \"%s\" (%s): not connected", l->id, l->url);
        r = transport_probe(l->url, l->tls_ca ? &tls : NULL, PROBE_MS, &e);
        if (r == 0) /* it answers a connect now: err stays empty */
                return 0;
        return lserr_set(err, r, "agent \"%s\": not connected: %s", l->id, e.msg);
}

void agentlink_set_fence(struct agentlink *l, const struct agentlink_fence *f)
{
        l->fence = f;
}

const char *agentlink_id(const struct agentlink *l)
{
        return l->id;
}

nng_socket agentlink_socket(const struct agentlink *l)
{
        return l->sock;
}

const char *agentlink_url(const struct agentlink *l)
{
        return l->url;
}

int agentlink_seal(struct agentlink *l, Lockstep__Command *cmd, struct agentlink_req *ret, lserr *err)
{
        uint8_t nonce[REPLAY_NONCE_LEN];
        uint64_t counter;
        lserr e = {0};
        int r;

        if (!cmd->target || !cmd->target[0])
                cmd->target = l->id;
        cmd->epoch = 0;
        /* Asked at each command: a leader that lost etcd stops at once, not
         * at the end of the round. */
        if (l->fence && !l->fence->leading(l->fence->arg, &cmd->epoch)) {
                /* Test builds only: a deposed leader that sends anyway, with
                 * the epoch it last held, so tests see the agents refuse it. */
                if (!failpoint_on("send-when-deposed") || !(cmd->epoch = atomic_load(&l->last_epoch)))
                        return lserr_set(err, -ESTALE, "agent \"%s\": %s: not sent: this lockstepd is not the leader",
                                         l->id, env_step_name(cmd->step));
                log_warn("agent \"%s\": %s: failpoint send-when-deposed: sent with stale epoch %llu", l->id,
                         env_step_name(cmd->step), (unsigned long long)cmd->epoch);
        }
        if (cmd->epoch)
                atomic_store(&l->last_epoch, cmd->epoch);
        r = counter_next(l->ctr, &counter, &e);
        if (r >= 0)
                r = env_seal_command(l->key, cmd, counter, fsutil_now_us(), nonce, &ret->buf, &ret->len, ret->hash, &e);
        /* The nonce lived on this stack: the packed bytes hold the copy. */
        cmd->nonce.data = NULL;
        cmd->nonce.len = 0;
        if (r < 0)
                return lserr_set(err, r, "agent \"%s\": %s: %s", l->id, env_step_name(cmd->step), e.msg);
        return 0;
}

/* Gives a refusal of cmd for its time the words that say which clock is off
 * and by how much. The reply verified; only its message changes, and it keeps
 * the agent's. Left as it was when there is no memory for the new one. */
static void clock_words(const struct agentlink *l, const Lockstep__Command *cmd, long long recv_us,
                        Lockstep__Reply *rep)
{
        const ProtobufCFieldDescriptor *fd =
                protobuf_c_message_descriptor_get_field_by_name(&lockstep__reply__descriptor, "message");
        char text[LSERR_MSG_MAX];
        long long off = 0, unsure = 0;
        char *m;

        if (clockskew_offset(rep->now_us, cmd->issued_at_us, recv_us, &off, &unsure) < 0)
                return;
        clockskew_refusal_text(l->id, env_step_name(cmd->step), rep->message, off, unsure, text, sizeof(text));
        m = strdup(text);
        if (!m)
                return;
        /* An empty string may be the descriptor's default, which is not ours to free. */
        if (rep->message != fd->default_value)
                free(rep->message);
        rep->message = m;
}

int agentlink_accept(struct agentlink *l, const Lockstep__Command *cmd, const struct agentlink_req *req,
                     const uint8_t *resp, size_t resp_len, long long recv_us, Lockstep__Reply **ret, lserr *err)
{
        Lockstep__Reply *rep = NULL;
        lserr e = {0};
        int r = env_verify_reply(resp, resp_len, ENV_MAX_DEFAULT, &l->pinned, l->id, req->hash, &rep, &e);

        /* An unsigned refusal is a transport failure with a code, never a vote:
         * anyone on the path could have sent it. */
        if (r == LS_EREFUSED)
                return lserr_set(err, r, "agent \"%s\": %s: %s; is this coordinator's key among the agent's "
                                 "authorized keys, and its pinned key the agent's?",
                                 l->id, env_step_name(cmd->step), e.msg);
        if (r < 0)
                return lserr_set(err, r, "agent \"%s\": %s: reply ignored: %s", l->id, env_step_name(cmd->step), e.msg);
        /* Rejections too: the agent names the refused command's txid and step,
         * so a bit flipped on the path cannot turn a command into a refusal of
         * another one. */
        if (strcmp(rep->txid, cmd->txid ? cmd->txid : "") != 0 || rep->step != cmd->step) {
                r = lserr_set(err, LS_EPEER, "agent \"%s\": %s: reply ignored: it answers transaction \"%.64s\" step %s",
                              l->id, env_step_name(cmd->step), rep->txid, env_step_name(rep->step));
                lockstep__reply__free_unpacked(rep, NULL);
                return r;
        }
        /* A leader's command carries its epoch; an agent whose reply does not
         * echo it predates the fence, and would obey a deposed leader too. */
        if (cmd->epoch && rep->code != LOCKSTEP__ERROR_CODE__E_REJECTED && rep->epoch_obeyed != cmd->epoch) {
                r = lserr_set(err, LS_EPEER,
                              "agent \"%s\": %s: its lockstep-agent does not keep the leader epoch fence (its reply "
                              "carries no epoch): with coordinators in a cluster every agent must; upgrade "
                              "lockstep-agent on that host",
                              l->id, env_step_name(cmd->step));
                lockstep__reply__free_unpacked(rep, NULL);
                return r;
        }
        if (clockskew_refused(rep)) {
                clock_words(l, cmd, recv_us, rep);
                log_warn("%s", rep->message);
        }
        *ret = rep;
        return 0;
}

int agentlink_heal_counter(struct agentlink *l, const Lockstep__Command *cmd, const Lockstep__Reply *rep, lserr *err)
{
        lserr e = {0};
        int r;

        if (rep->code != LOCKSTEP__ERROR_CODE__E_REJECTED || rep->reject_reason != LS_ECOUNTER ||
            rep->counter_seen == 0)
                return 0;
        r = counter_advance(l->ctr, rep->counter_seen, &e);
        if (r < 0)
                return lserr_set(err, r,
                                 "agent \"%s\": %s: counter %" PRIu64 " refused as stale, agent reports %" PRIu64 ": %s",
                                 l->id, env_step_name(cmd->step), cmd->counter, rep->counter_seen, e.msg);
        log_warn("agent \"%s\": %s: counter %" PRIu64 " refused as stale, the agent has accepted %" PRIu64
                 " from this key (another process signs with it, or the counter file went back): counter moved "
                 "past it, sending once more",
                 l->id, env_step_name(cmd->step), cmd->counter, rep->counter_seen);
        return 1;
}

static int call_once(struct agentlink *l, Lockstep__Command *cmd, int timeout_ms, Lockstep__Reply **ret, lserr *err)
{
        struct agentlink_req req = {0};
        uint8_t *resp = NULL;
        size_t resp_len = 0;
        lserr e = {0};
        int r = agentlink_seal(l, cmd, &req, err);

        if (r < 0)
                return r;
        r = transport_call(l->sock, req.buf, req.len, timeout_ms, &resp, &resp_len, &e);
        if (r == LS_ETIMEDOUT || r == -ECONNRESET)
                r = agentlink_fail(l, cmd, r, err);
        else if (r < 0)
                r = lserr_set(err, r, "agent \"%s\" (%s): %s: %s", l->id, l->url, env_step_name(cmd->step), e.msg);
        else
                r = agentlink_accept(l, cmd, &req, resp, resp_len, fsutil_now_us(), ret, err);
        free(req.buf);
        free(resp);
        return r;
}

int agentlink_call(struct agentlink *l, Lockstep__Command *cmd, int timeout_ms, Lockstep__Reply **ret, lserr *err)
{
        Lockstep__Reply *rep = NULL;
        int r = call_once(l, cmd, timeout_ms, &rep, err);

        if (r < 0)
                return r;
        /* Once only: should the agent refuse again, that refusal is the answer,
         * so a peer cannot keep this call looping. */
        r = agentlink_heal_counter(l, cmd, rep, err);
        if (r > 0) {
                lockstep__reply__free_unpacked(rep, NULL);
                rep = NULL;
                r = call_once(l, cmd, timeout_ms, &rep, err);
        }
        if (r < 0) {
                if (rep)
                        lockstep__reply__free_unpacked(rep, NULL);
                return r;
        }
        *ret = rep;
        return 0;
}
