/* forward: a follower's requests carried to the leader and its answers back:
 * the seal and checks of both messages, the leader's server, the follower's
 * link. */
#include "forward_priv.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "replay.h"
#include "report.h"
#include "transport.h"

/* One connect of our own, after a call to a tls+tcp:// leader timed out, to
 * say whether its certificate was the cause (nng retries a refused handshake
 * quietly). */
#define PROBE_MS 1000

struct forward {
        char name[LS_NAME_MAX + 1]; /* ha.name */
        char *listen, *tls_cert, *tls_key, *tls_ca;
        const struct keys_secret *key;
        struct env_trusted *peers; /* ha.coordinators, loaded */
        size_t n_peers;
        const struct env_trusted *self; /* our own entry among them */
        size_t request_max, reply_max;
        pthread_mutex_t lock; /* nonces */
        struct replay *nonces;
        struct transport_server *srv;
        forward_handle_fn fn;
        void *arg;
        pthread_mutex_t link_lock; /* the link to the leader */
        char link_key[LS_NAME_MAX + 2 + CFG_HA_URL_MAX + 1]; /* "NAME URL" of the leader linked */
        nng_socket link;
        int linked;
};

static void forward_freep(struct forward **f)
{
        forward_free(*f);
}

/* ---- keys ------------------------------------------------------------------ */

/* ha.coordinators as envelope.c checks keys, and ours among them. */
static int load_peers(struct forward *f, const struct cfg_ha *cfg, lserr *err)
{
        const struct keys_public *own = keys_secret_public(f->key);
        char fpr[KEYS_FPR_LEN], listed[KEYS_FPR_LEN];
        lserr e = {0};
        int r;

        f->peers = calloc(cfg->n_coordinators ? cfg->n_coordinators : 1, sizeof(*f->peers));
        if (!f->peers)
                return lserr_set(err, -ENOMEM, "forward: out of memory");
        for (unsigned i = 0; i < cfg->n_coordinators; i++) {
                r = keys_load_public(cfg->coordinators[i].pubkey, &f->peers[i].pub, &e);
                if (r < 0)
                        return lserr_set(err, r, "ha.coordinators[%u] (\"%s\"): %s", i, cfg->coordinators[i].name,
                                         e.msg);
                snprintf(f->peers[i].name, sizeof(f->peers[i].name), "%s", cfg->coordinators[i].name);
                if (!strcmp(f->peers[i].name, f->name))
                        f->self = &f->peers[i];
        }
        f->n_peers = cfg->n_coordinators;
        r = env_trusted_unique(f->peers, f->n_peers, &e);
        if (r < 0)
                return lserr_set(err, r, "ha.coordinators: %s", e.msg);
        /* coord_ha.c saw our name listed; the key is only known now. */
        if (!f->self)
                return lserr_set(err, LS_ECONFIG, "ha.coordinators: this lockstepd (\"%s\") is not listed", f->name);
        if (memcmp(f->self->pub.id, own->id, KEYS_ID_LEN) != 0) {
                keys_fingerprint(own->id, fpr);
                keys_fingerprint(f->self->pub.id, listed);
                return lserr_set(err, LS_ECONFIG,
                                 "ha.coordinators: \"%s\" is listed with key %s, but this lockstepd signs with %s "
                                 "(coordinator.yaml's key:): list its .pub file there",
                                 f->name, listed, fpr);
        }
        return 0;
}

static const struct env_trusted *peer_named(const struct forward *f, const char *name)
{
        for (size_t i = 0; i < f->n_peers; i++)
                if (!strcmp(f->peers[i].name, name))
                        return &f->peers[i];
        return NULL;
}

static char *dup_or_null(const char *s, bool *oom)
{
        char *d = s ? strdup(s) : NULL;

        if (s && !d)
                *oom = true;
        return d;
}

int forward_new(const struct cfg_ha *cfg, const struct keys_secret *key, size_t request_max, size_t reply_max,
                struct forward **ret, lserr *err)
{
        _cleanup_(forward_freep) struct forward *f = calloc(1, sizeof(*f));
        bool oom = false;
        int r;

        if (!f)
                return lserr_set(err, -ENOMEM, "forward: out of memory");
        pthread_mutex_init(&f->lock, NULL);
        pthread_mutex_init(&f->link_lock, NULL);
        assert(cfg->listen && names_valid(cfg->name)); /* coord_ha.c */
        snprintf(f->name, sizeof(f->name), "%s", cfg->name);
        f->key = key;
        f->request_max = request_max;
        f->reply_max = reply_max;
        f->listen = dup_or_null(cfg->listen, &oom);
        f->tls_cert = dup_or_null(cfg->tls_cert, &oom);
        f->tls_key = dup_or_null(cfg->tls_key, &oom);
        f->tls_ca = dup_or_null(cfg->tls_ca, &oom);
        if (oom)
                return lserr_set(err, -ENOMEM, "forward: out of memory");
        r = load_peers(f, cfg, err);
        if (r < 0)
                return r;
        r = replay_open(NULL, FORWARD_NONCES_MAX, FORWARD_WINDOW_US, &f->nonces, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(f);
        return 0;
}

struct forward *forward_free(struct forward *f)
{
        if (!f)
                return NULL;
        transport_server_stop(f->srv);
        if (f->linked)
                nng_close(f->link);
        replay_free(f->nonces);
        free(f->peers);
        free(f->listen);
        free(f->tls_cert);
        free(f->tls_key);
        free(f->tls_ca);
        pthread_mutex_destroy(&f->lock);
        pthread_mutex_destroy(&f->link_lock);
        free(f);
        return NULL;
}

/* ---- the leader's checks ------------------------------------------------------ */

/* The body's fields, once its signature verified; key is who signed it. */
static int check_body(const struct env_trusted *key, const Lockstep__Forward *fw, long long now_us, lserr *err)
{
        if (fw->nonce.len != REPLAY_NONCE_LEN)
                return lserr_set(err, LS_EMALFORMED, "forward from %s: nonce of %zu bytes, must be %d", key->name,
                                 fw->nonce.len, REPLAY_NONCE_LEN);
        if (!fw->request)
                return lserr_set(err, LS_EMALFORMED, "forward from %s: no request in it", key->name);
        if (fw->caller_uid < -1 || fw->caller_uid > (long long)UINT32_MAX || fw->caller_pid < -1 ||
            fw->caller_pid > (long long)INT32_MAX)
                return lserr_set(err, LS_EMALFORMED, "forward from %s: caller uid %lld or pid %lld out of range",
                                 key->name, (long long)fw->caller_uid, (long long)fw->caller_pid);
        if (!names_valid(fw->from))
                return lserr_set(err, LS_EMALFORMED, "forward from %s: its field from is not a valid name", key->name);
        if (strcmp(fw->from, key->name) != 0)
                return lserr_set(err, LS_ETARGET,
                                 "forward from %s: it says it is from \"%s\", but ha.coordinators lists its key as "
                                 "\"%s\"",
                                 key->name, fw->from, key->name);
        /* Both sides of the window: a clock far ahead would otherwise make a
         * forward that stays good long after it was sent. */
        if (fw->issued_us < now_us - FORWARD_WINDOW_US)
                return lserr_set(err, LS_EEXPIRED, "forward from %s: issued %lld s ago, outside the %lld s window",
                                 key->name, (long long)(now_us - fw->issued_us) / 1000000,
                                 FORWARD_WINDOW_US / 1000000);
        if (fw->issued_us > now_us + FORWARD_WINDOW_US)
                return lserr_set(err, LS_EFUTURE, "forward from %s: issued %lld s ahead, outside the %lld s window",
                                 key->name, (long long)(fw->issued_us - now_us) / 1000000,
                                 FORWARD_WINDOW_US / 1000000);
        return 0;
}

/* The last check, and the only one that remembers. */
static int check_nonce(struct forward *f, const struct env_trusted *key, const Lockstep__Forward *fw,
                       long long now_us, lserr *err)
{
        int r;

        pthread_mutex_lock(&f->lock);
        r = replay_commit_nonce(f->nonces, fw->nonce.data, fw->issued_us, now_us, NULL);
        pthread_mutex_unlock(&f->lock);
        if (r == LS_EREPLAY)
                return lserr_set(err, r, "forward from %s: nonce seen before (replay)", key->name);
        if (r == LS_ENONCEFULL)
                return lserr_set(err, r,
                                 "forward from %s: %d forwards already within the %lld s window, the most this "
                                 "lockstepd keeps track of: refused until the oldest expire",
                                 key->name, FORWARD_NONCES_MAX, FORWARD_WINDOW_US / 1000000);
        return r < 0 ? lserr_set(err, r, "forward from %s: nonce cache: %s", key->name, strerror(-r)) : 0;
}

int forward_verify(struct forward *f, const uint8_t *buf, size_t len, long long now_us, Lockstep__Forward **ret,
                   struct forward_seen *seen, lserr *err)
{
        Lockstep__Envelope *env = NULL;
        Lockstep__Forward *fw = NULL;
        const struct env_trusted *key;
        char fpr[KEYS_FPR_LEN];
        lserr e = {0};
        int r;

        *seen = (struct forward_seen){0};
        r = env_open(ENV_FORWARD, buf, len, f->request_max, &env, &e);
        if (r < 0)
                return lserr_set(err, r, "forward: %s", e.msg);
        key = env_find_key(env, f->peers, f->n_peers);
        if (!key || key == f->self) {
                keys_fingerprint(env->key_id.data, fpr);
                r = key ? lserr_set(err, LS_EUNKNOWNKEY, "forward signed by key %s: this lockstepd's own key", fpr)
                        : lserr_set(err, LS_EUNKNOWNKEY, "forward signed by key %s: key not among ha.coordinators",
                                    fpr);
                goto out;
        }
        snprintf(seen->from, sizeof(seen->from), "%s", key->name);
        if (env_check_signature(ENV_FORWARD, env, &key->pub, &e) < 0) {
                r = lserr_set(err, LS_EBADSIG, "forward from %s: signature does not verify under key %s", key->name,
                              key->name);
                goto out;
        }
        seen->answerable = 1;
        env_hash_body(env->body.data, env->body.len, seen->hash);
        fw = lockstep__forward__unpack(NULL, env->body.len, env->body.data);
        r = fw ? check_body(key, fw, now_us, err)
               : lserr_set(err, LS_EMALFORMED, "forward from %s: body does not unpack", key->name);
        if (r == 0)
                r = check_nonce(f, key, fw, now_us, err);
        if (r == 0)
                *ret = TAKE_PTR(fw);
out:
        if (fw)
                lockstep__forward__free_unpacked(fw, NULL);
        lockstep__envelope__free_unpacked(env, NULL);
        return r;
}

/* ---- seals -------------------------------------------------------------------- */

int forward_seal(struct forward *f, const Lockstep__ControlRequest *q, const struct forward_caller *who,
                 long long now_us, uint8_t **ret, size_t *ret_len, uint8_t ret_hash[ENV_HASH_LEN], lserr *err)
{
        Lockstep__Forward fw = LOCKSTEP__FORWARD__INIT;
        uint8_t nonce[REPLAY_NONCE_LEN];

        randombytes_buf(nonce, sizeof(nonce));
        fw.from = f->name;
        fw.issued_us = now_us;
        fw.nonce.data = nonce;
        fw.nonce.len = sizeof(nonce);
        fw.request = (Lockstep__ControlRequest *)q; /* packed, not changed */
        fw.caller_uid = who->uid;
        fw.caller_pid = who->pid;
        return env_seal_message(ENV_FORWARD, f->key, &fw.base, ret, ret_len, ret_hash, err);
}

int forward_answer(struct forward *f, const uint8_t hash[ENV_HASH_LEN], const Lockstep__ControlReply *rep,
                   uint8_t **ret, size_t *ret_len, lserr *err)
{
        Lockstep__ForwardReply fr = LOCKSTEP__FORWARD_REPLY__INIT;

        fr.request_hash.data = (uint8_t *)hash;
        fr.request_hash.len = ENV_HASH_LEN;
        fr.reply = (Lockstep__ControlReply *)rep; /* packed, not changed */
        fr.leader = f->name;
        return env_seal_message(ENV_FORWARD_REPLY, f->key, &fr.base, ret, ret_len, NULL, err);
}

/* ---- the follower's checks -------------------------------------------------- */

/* The answer's body, once its signature verified. */
static int check_answer(const Lockstep__ForwardReply *fr, const char *leader, const uint8_t hash[ENV_HASH_LEN],
                        lserr *err)
{
        if (fr->request_hash.len != ENV_HASH_LEN || sodium_memcmp(fr->request_hash.data, hash, ENV_HASH_LEN) != 0)
                return lserr_set(err, LS_EPEER, "the answer is to another request (its request hash differs)");
        if (!fr->reply)
                return lserr_set(err, LS_EMALFORMED, "the answer carries no reply");
        if (strcmp(fr->leader, leader) != 0)
                return lserr_set(err, LS_ETARGET, "the answer names leader \"%.64s\", not \"%s\"", fr->leader, leader);
        return 0;
}

int forward_open_reply(struct forward *f, const uint8_t *buf, size_t len, const char *leader,
                       const uint8_t hash[ENV_HASH_LEN], Lockstep__ForwardReply **ret, lserr *err)
{
        const struct env_trusted *want = peer_named(f, leader);
        Lockstep__Envelope *env = NULL;
        Lockstep__ForwardReply *fr = NULL;
        lserr e = {0};
        int r;

        if (!want)
                return lserr_set(err, LS_EUNKNOWNKEY, "the leader is not among ha.coordinators: its answer cannot be "
                                                      "checked");
        r = env_open(ENV_FORWARD_REPLY, buf, len, f->reply_max, &env, &e);
        if (r == LS_EREFUSED)
                return lserr_set(err, r, "%s: is this lockstepd's key in the leader's ha.coordinators?", e.msg);
        if (r < 0)
                return lserr_set(err, r, "answer: %s", e.msg);
        if (!env_find_key(env, want, 1))
                r = lserr_set(err, LS_EUNKNOWNKEY, "the answer is not signed by the key ha.coordinators lists for it");
        else if (env_check_signature(ENV_FORWARD_REPLY, env, &want->pub, &e) < 0)
                r = lserr_set(err, LS_EBADSIG, "the answer's signature does not verify under key %s", leader);
        else if (!(fr = lockstep__forward_reply__unpack(NULL, env->body.len, env->body.data)))
                r = lserr_set(err, LS_EMALFORMED, "the answer does not unpack");
        else
                r = check_answer(fr, leader, hash, err);
        if (r == 0)
                *ret = TAKE_PTR(fr);
        if (fr)
                lockstep__forward_reply__free_unpacked(fr, NULL);
        lockstep__envelope__free_unpacked(env, NULL);
        return r;
}

/* ---- the leader's server ------------------------------------------------------ */

/* Hands a verified forward to the control code and seals what it answers. */
static int handle(struct forward *f, const Lockstep__Forward *fw, const uint8_t hash[ENV_HASH_LEN], uint8_t **ret,
                  size_t *ret_len)
{
        struct forward_caller who = {.via = fw->from, .uid = fw->caller_uid, .pid = fw->caller_pid};
        Lockstep__ControlReply *rep = NULL;
        char cmd[4 * 32 + 1];
        uint8_t *ctl = NULL;
        size_t ctl_len = 0;
        lserr err = {0};
        int r;

        /* The command is the CLI user's text: escaped, and cut short. A
         * follower's CLI polls its op through us: those at debug only. */
        report_escape(cmd, sizeof(cmd), fw->request->command);
        log_at(strcmp(cmd, "op.poll") ? LOG_INFO : LOG_DEBUG, "forward from %s: \"%.32s\" (uid %lld, pid %lld)",
               fw->from, cmd, who.uid, who.pid);
        r = f->fn(f->arg, fw->request, &who, &ctl, &ctl_len);
        if (r >= 0 && !(rep = lockstep__control_reply__unpack(NULL, ctl_len, ctl)))
                r = -EIO;
        if (r >= 0)
                r = forward_answer(f, hash, rep, ret, ret_len, &err);
        if (r < 0)
                log_err("forward from %s: no answer: %s", fw->from, err.msg[0] ? err.msg : strerror(-r));
        if (rep)
                lockstep__control_reply__free_unpacked(rep, NULL);
        free(ctl);
        return r;
}

static int serve_one(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        struct forward *f = arg;
        Lockstep__ControlReply refusal = LOCKSTEP__CONTROL_REPLY__INIT;
        Lockstep__Forward *fw = NULL;
        struct forward_seen seen;
        lserr err = {0};
        int r = forward_verify(f, req, len, fsutil_now_us(), &fw, &seen, &err);

        if (r == 0) {
                r = handle(f, fw, seen.hash, ret, ret_len);
                lockstep__forward__free_unpacked(fw, NULL);
                return r;
        }
        log_warn("%s", err.msg);
        /* Before the signature verified, a code and nothing signed, as the
         * agents answer junk; after, the follower's user reads why. */
        if (!seen.answerable)
                return env_seal_refusal(r, ret, ret_len, NULL);
        refusal.exit_code = 1;
        refusal.error = err.msg;
        refusal.done = 1;
        return forward_answer(f, seen.hash, &refusal, ret, ret_len, NULL);
}

int forward_serve(struct forward *f, unsigned n_workers, forward_handle_fn fn, void *arg, lserr *err)
{
        struct transport_tls tls = {.cert = f->tls_cert, .key = f->tls_key};
        nng_socket s;
        int r;

        assert(!f->srv);
        f->fn = fn;
        f->arg = arg;
        r = transport_listen(f->listen, f->request_max, 0660, &tls, &s, err);
        if (r < 0)
                return r;
        r = transport_serve(s, n_workers, serve_one, f, &f->srv, err);
        if (r < 0)
                nng_close(s);
        return r;
}

/* ---- the follower's link -------------------------------------------------------- */

int forward_leader_of(const char *holder, char ret_name[static LS_NAME_MAX + 1],
                      char ret_url[static CFG_HA_URL_MAX + 1])
{
        const char *sp = strchr(holder, ' '), *peer = NULL;
        size_t n;

        if (!sp || !names_valid_n(holder, (size_t)(sp - holder)))
                return -EINVAL;
        /* peer= is the value's last field (ha.c). */
        for (const char *p = strstr(holder, " peer="); p; p = strstr(p + 1, " peer="))
                peer = p + strlen(" peer=");
        if (!peer)
                return -ENOENT;
        n = strlen(peer);
        if (n == 0 || n > CFG_HA_URL_MAX || strchr(peer, ' '))
                return -EINVAL;
        memcpy(ret_name, holder, (size_t)(sp - holder));
        ret_name[sp - holder] = '\0';
        memcpy(ret_url, peer, n + 1);
        return 0;
}

static int is_tls_url(const char *url)
{
        return strncmp(url, "tls+tcp://", 10) == 0;
}

/* The socket to the leader called name at url: the one kept, or a new one
 * when the leader moved (calls still out on the old one end at once). Its
 * certificate must chain to ha.tls_ca and name the leader's ha.name (a DNS
 * subjectAltName: mbedtls 2.28 matches no IP address ones). */
static int link_get(struct forward *f, const char *name, const char *url, nng_socket *ret, lserr *err)
{
        struct transport_tls tls = {.ca = f->tls_ca, .server_name = name};
        char key[sizeof(f->link_key)];
        int r = 0;

        if (!is_tls_url(url) && strncmp(url, "ipc://", 6) != 0)
                return lserr_set(err, -EINVAL, "its peer URL is neither tls+tcp:// nor ipc://");
        if (is_tls_url(url) && !f->tls_ca)
                return lserr_set(err, -EINVAL, "this lockstepd has no ha.tls_ca to check the leader's certificate with");
        snprintf(key, sizeof(key), "%s %s", name, url);
        pthread_mutex_lock(&f->link_lock);
        if (f->linked && strcmp(f->link_key, key) != 0) {
                nng_close(f->link);
                f->linked = 0;
        }
        if (!f->linked) {
                r = transport_dial(url, f->reply_max, is_tls_url(url) ? &tls : NULL, &f->link, err);
                if (r == 0) {
                        memcpy(f->link_key, key, sizeof(key));
                        f->linked = 1;
                }
        }
        if (r == 0)
                *ret = f->link;
        pthread_mutex_unlock(&f->link_lock);
        return r;
}

/* Why a call got no answer, in words for the follower's user. */
static int call_failed(struct forward *f, const char *name, const char *url, int rc, int timeout_ms, lserr *err)
{
        struct transport_tls tls = {.ca = f->tls_ca, .server_name = name};
        lserr e = {0};

        if (is_tls_url(url) && f->tls_ca && transport_probe(url, &tls, PROBE_MS, &e) == -EACCES)
                return lserr_set(err, -EACCES, "%s", e.msg);
        if (rc == LS_ETIMEDOUT)
                return lserr_set(err, rc, "no answer within %g s", timeout_ms / 1000.0);
        return lserr_set(err, rc, "the call failed (%s)", lserr_name(rc));
}

int forward_call(struct forward *f, const char *name, const char *url, const Lockstep__ControlRequest *q,
                 const struct forward_caller *who, int timeout_ms, Lockstep__ForwardReply **ret, lserr *err)
{
        _cleanup_free_ uint8_t *req = NULL, *resp = NULL;
        uint8_t hash[ENV_HASH_LEN];
        size_t req_len = 0, resp_len = 0;
        nng_socket s;
        lserr e = {0};
        int r;

        assert(!who->via); /* a forwarded request is never forwarded again */
        /* Not sent to a leader whose answer could not be checked. */
        r = peer_named(f, name) ? 0 : lserr_set(&e, LS_EUNKNOWNKEY, "the leader is not among ha.coordinators");
        if (r == 0)
                r = forward_seal(f, q, who, fsutil_now_us(), &req, &req_len, hash, &e);
        /* The leader's socket would drop it unread: say so now. */
        if (r == 0 && req_len > f->request_max)
                r = lserr_set(&e, LS_EOVERSIZE, "a request of %zu bytes, over the %zu a leader takes", req_len,
                              f->request_max);
        if (r == 0)
                r = link_get(f, name, url, &s, &e);
        if (r == 0 && (r = transport_call(s, req, req_len, timeout_ms, &resp, &resp_len, NULL)) < 0)
                r = call_failed(f, name, url, r, timeout_ms, &e);
        if (r == 0)
                r = forward_open_reply(f, resp, resp_len, name, hash, ret, &e);
        if (r < 0)
                return lserr_set(err, r, "forwarding to leader %s at %s: %s; run lockstep on the leader's host", name,
                                 url, e.msg);
        return 0;
}
