/* envelope: Ed25519 signatures over tagged bodies and the command verification
 * pipeline an agent runs before it acts on anything. */
#include "envelope.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define TAG_COMMAND "lockstep/v1/command"
#define TAG_REPLY "lockstep/v1/reply"
#define TAG_FORWARD "lockstep/v1/forward"
#define TAG_FORWARD_REPLY "lockstep/v1/forward-reply"
#define MAX_MEMBERS 1024
#define MAX_TIER 64
#define MAX_LEASE_MS (3600u * 1000u)
/* Reverts to one cut a delete names; far more than retention ever keeps. */
#define MAX_REVERTS 1024

struct env_verifier {
        char self[LS_NAME_MAX + 1];
        struct env_trusted *keys;
        size_t n_keys;
        struct replay *rp;
        long long window_us;
        size_t max_size;
        pthread_mutex_t lock; /* serialises the replay state */
};

/* Each kind's tag and its name in messages. Tags include their NUL so no tag
 * is a prefix of another message. */
static const struct {
        const char *tag, *name;
} kinds[] = {
        [ENV_COMMAND] = {TAG_COMMAND, "command"},
        [ENV_REPLY] = {TAG_REPLY, "reply"},
        [ENV_FORWARD] = {TAG_FORWARD, "forward"},
        [ENV_FORWARD_REPLY] = {TAG_FORWARD_REPLY, "forward reply"},
};

static const char *kind_name(enum env_kind kind)
{
        assert((size_t)kind < sizeof(kinds) / sizeof(kinds[0]));
        return kinds[kind].name;
}

static void tag_of(enum env_kind kind, const uint8_t **ret, size_t *ret_len)
{
        assert((size_t)kind < sizeof(kinds) / sizeof(kinds[0]));
        *ret = (const uint8_t *)kinds[kind].tag;
        *ret_len = strlen(kinds[kind].tag) + 1;
}

void env_hash_body(const uint8_t *body, size_t len, uint8_t ret[ENV_HASH_LEN])
{
        crypto_generichash(ret, ENV_HASH_LEN, body, len, NULL, 0);
}

int env_seal(enum env_kind kind, const struct keys_secret *key, const uint8_t *body, size_t body_len,
             uint8_t **ret, size_t *ret_len, lserr *err)
{
        Lockstep__Envelope env = LOCKSTEP__ENVELOPE__INIT;
        const struct keys_public *pub = keys_secret_public(key);
        uint8_t sig[ENV_SIG_LEN], *out;
        const uint8_t *tag;
        size_t tag_len, n;
        int r;

        tag_of(kind, &tag, &tag_len);
        r = keys_sign2(key, tag, tag_len, body, body_len, sig);
        if (r < 0)
                return lserr_set(err, r, "sign: out of memory");
        env.version = ENV_VERSION;
        env.key_id.data = (uint8_t *)pub->id;
        env.key_id.len = KEYS_ID_LEN;
        env.body.data = (uint8_t *)body;
        env.body.len = body_len;
        env.signature.data = sig;
        env.signature.len = sizeof(sig);
        n = lockstep__envelope__get_packed_size(&env);
        out = malloc(n ? n : 1);
        if (!out)
                return lserr_set(err, -ENOMEM, "seal: out of memory");
        lockstep__envelope__pack(&env, out);
        *ret = out;
        *ret_len = n;
        return 0;
}

int env_seal_message(enum env_kind kind, const struct keys_secret *key, const ProtobufCMessage *msg, uint8_t **ret,
                     size_t *ret_len, uint8_t *ret_hash, lserr *err)
{
        size_t n = protobuf_c_message_get_packed_size(msg);
        uint8_t *body = malloc(n ? n : 1);
        int r;

        if (!body)
                return lserr_set(err, -ENOMEM, "seal: out of memory");
        protobuf_c_message_pack(msg, body);
        r = env_seal(kind, key, body, n, ret, ret_len, err);
        if (r == 0 && ret_hash)
                env_hash_body(body, n, ret_hash);
        free(body);
        return r;
}

int env_seal_command(const struct keys_secret *key, Lockstep__Command *cmd, uint64_t counter, long long now_us,
                     uint8_t nonce_buf[REPLAY_NONCE_LEN], uint8_t **ret, size_t *ret_len,
                     uint8_t ret_hash[ENV_HASH_LEN], lserr *err)
{
        randombytes_buf(nonce_buf, REPLAY_NONCE_LEN);
        cmd->issued_at_us = now_us;
        cmd->nonce.data = nonce_buf;
        cmd->nonce.len = REPLAY_NONCE_LEN;
        cmd->counter = counter;
        return env_seal_message(ENV_COMMAND, key, &cmd->base, ret, ret_len, ret_hash, err);
}

int env_seal_reply(const struct keys_secret *key, const Lockstep__Reply *reply, uint8_t **ret, size_t *ret_len,
                   lserr *err)
{
        return env_seal_message(ENV_REPLY, key, &reply->base, ret, ret_len, NULL, err);
}

int env_trusted_unique(const struct env_trusted *keys, size_t n, lserr *err)
{
        char fpr[KEYS_FPR_LEN];

        for (size_t i = 1; i < n; i++)
                for (size_t j = 0; j < i; j++) {
                        if (memcmp(keys[i].pub.id, keys[j].pub.id, KEYS_ID_LEN) != 0)
                                continue;
                        keys_fingerprint(keys[i].pub.id, fpr);
                        return lserr_set(err, LS_ECONFIG,
                                         "trusted keys \"%s\" and \"%s\" have the same key id %s: "
                                         "trust each key once (remove one of them)",
                                         keys[j].name, keys[i].name, fpr);
                }
        return 0;
}

int env_verifier_new(const char *self_id, const struct env_trusted *keys, size_t n_keys, struct replay *rp,
                     long long window_us, size_t max_size, struct env_verifier **ret, lserr *err)
{
        struct env_verifier *v;

        if (!names_valid(self_id))
                return lserr_set(err, -EINVAL, "verifier: agent id \"%s\" is not a valid name", self_id);
        if (sodium_init() < 0)
                return lserr_set(err, -EIO, "libsodium: initialisation failed");
        if (env_trusted_unique(keys, n_keys, err) < 0)
                return LS_ECONFIG;
        v = calloc(1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        v->keys = calloc(n_keys ? n_keys : 1, sizeof(*keys));
        if (!v->keys) {
                free(v);
                return -ENOMEM;
        }
        if (n_keys)
                memcpy(v->keys, keys, n_keys * sizeof(*keys));
        v->n_keys = n_keys;
        snprintf(v->self, sizeof(v->self), "%s", self_id);
        v->rp = rp;
        v->window_us = window_us;
        v->max_size = max_size;
        pthread_mutex_init(&v->lock, NULL);
        *ret = v;
        return 0;
}

struct env_verifier *env_verifier_free(struct env_verifier *v)
{
        if (!v)
                return NULL;
        pthread_mutex_destroy(&v->lock);
        sodium_memzero(v->keys, v->n_keys * sizeof(*v->keys));
        free(v->keys);
        free(v);
        return NULL;
}

/* An unsigned refusal where a reply was expected: a failure, never a reply. */
static int refusal_failure(enum env_kind kind, Lockstep__Envelope *env, lserr *err)
{
        Lockstep__Refusal why = env->refusal;
        int alone = env->version == 0 && env->key_id.len == 0 && env->body.len == 0 && env->signature.len == 0;

        lockstep__envelope__free_unpacked(env, NULL);
        if (!alone)
                return lserr_set(err, LS_EMALFORMED, "envelope carries a refusal code and a signed message");
        return lserr_set(err, LS_EREFUSED, "refused the %s before checking its signature (%s, unsigned)",
                         kind == ENV_FORWARD_REPLY ? "forward" : "command", env_refusal_name(why));
}

/* Size, envelope unpack and the fixed-size fields, common to every kind. Only
 * a reply may be an unsigned refusal (LS_EREFUSED). */
int env_open(enum env_kind kind, const uint8_t *buf, size_t len, size_t max_size, Lockstep__Envelope **ret,
             lserr *err)
{
        Lockstep__Envelope *env;

        if (len > max_size)
                return lserr_set(err, LS_EOVERSIZE, "message of %zu bytes is over the %zu-byte limit", len,
                                 max_size);
        env = lockstep__envelope__unpack(NULL, len, buf);
        if (!env)
                return lserr_set(err, LS_EMALFORMED, "envelope does not unpack");
        if ((kind == ENV_REPLY || kind == ENV_FORWARD_REPLY) && env->refusal != LOCKSTEP__REFUSAL__REFUSAL_NONE)
                return refusal_failure(kind, env, err);
        if (env->key_id.len != KEYS_ID_LEN || env->signature.len != ENV_SIG_LEN) {
                lockstep__envelope__free_unpacked(env, NULL);
                return lserr_set(err, LS_EMALFORMED, "envelope: key id or signature has the wrong length");
        }
        if (env->version != ENV_VERSION) {
                unsigned ver = env->version;
                lockstep__envelope__free_unpacked(env, NULL);
                return lserr_set(err, LS_EVERSION, "envelope version %u is not supported (this is %u)", ver,
                                 ENV_VERSION);
        }
        *ret = env;
        return 0;
}

const struct env_trusted *env_find_key(const Lockstep__Envelope *env, const struct env_trusted *keys, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (memcmp(keys[i].pub.id, env->key_id.data, KEYS_ID_LEN) == 0)
                        return &keys[i];
        return NULL;
}

int env_check_signature(enum env_kind kind, const Lockstep__Envelope *env, const struct keys_public *pub, lserr *err)
{
        const uint8_t *tag;
        size_t tag_len, n;
        uint8_t *msg;
        int ok;

        tag_of(kind, &tag, &tag_len);
        n = tag_len + env->body.len;
        msg = malloc(n);
        if (!msg)
                return lserr_set(err, -ENOMEM, "verify: out of memory");
        memcpy(msg, tag, tag_len);
        if (env->body.len)
                memcpy(msg + tag_len, env->body.data, env->body.len);
        ok = crypto_sign_verify_detached(env->signature.data, msg, n, pub->pk) == 0;
        free(msg);
        if (!ok)
                return lserr_set(err, LS_EBADSIG, "signature does not verify for this %s", kind_name(kind));
        return 0;
}

static int check_name(const char *field, const char *s, int may_be_empty, lserr *err)
{
        if (may_be_empty && s[0] == '\0')
                return 0;
        if (!names_valid(s))
                return lserr_set(err, LS_EMALFORMED, "field %s is not a valid name ([A-Za-z0-9._-], 1..%d bytes)",
                                 field, LS_NAME_MAX);
        return 0;
}

static int check_members(size_t n, Lockstep__Member *const *m, lserr *err)
{
        if (n > MAX_MEMBERS)
                return lserr_set(err, LS_EMALFORMED, "field members: %zu members, more than %d", n, MAX_MEMBERS);
        for (size_t i = 0; i < n; i++) {
                int r = check_name("members.vm", m[i]->vm, 0, err);
                if (r < 0)
                        return r;
                if (m[i]->tier > MAX_TIER || (unsigned)m[i]->consistency > LOCKSTEP__CONSISTENCY__CONSISTENCY_CRASH)
                        return lserr_set(err, LS_EMALFORMED, "member \"%s\": tier or consistency out of range",
                                         m[i]->vm);
        }
        return 0;
}

static int check_decision(Lockstep__Decision d, lserr *err)
{
        if (d != LOCKSTEP__DECISION__DECISION_COMMIT && d != LOCKSTEP__DECISION__DECISION_ABORT)
                return lserr_set(err, LS_EMALFORMED, "field decision: must be commit or abort");
        return 0;
}

/* The payload case that each step must carry. */
static const Lockstep__Command__PayloadCase step_payload[] = {
        [LOCKSTEP__STEP__STEP_STATUS] = LOCKSTEP__COMMAND__PAYLOAD_STATUS,
        [LOCKSTEP__STEP__STEP_DISCOVER] = LOCKSTEP__COMMAND__PAYLOAD_DISCOVER,
        [LOCKSTEP__STEP__STEP_FREEZE] = LOCKSTEP__COMMAND__PAYLOAD_FREEZE,
        [LOCKSTEP__STEP__STEP_SNAPSHOT] = LOCKSTEP__COMMAND__PAYLOAD_SNAPSHOT,
        [LOCKSTEP__STEP__STEP_DECIDE] = LOCKSTEP__COMMAND__PAYLOAD_DECIDE,
        [LOCKSTEP__STEP__STEP_REVERT_PREPARE] = LOCKSTEP__COMMAND__PAYLOAD_REVERT_PREPARE,
        [LOCKSTEP__STEP__STEP_REVERT_STOP] = LOCKSTEP__COMMAND__PAYLOAD_REVERT_STOP,
        [LOCKSTEP__STEP__STEP_REVERT_SWITCH] = LOCKSTEP__COMMAND__PAYLOAD_REVERT_SWITCH,
        [LOCKSTEP__STEP__STEP_REVERT_START] = LOCKSTEP__COMMAND__PAYLOAD_REVERT_START,
        [LOCKSTEP__STEP__STEP_REVERT_DECIDE] = LOCKSTEP__COMMAND__PAYLOAD_REVERT_DECIDE,
        [LOCKSTEP__STEP__STEP_DELETE] = LOCKSTEP__COMMAND__PAYLOAD_DELETE,
        [LOCKSTEP__STEP__STEP_CHECK] = LOCKSTEP__COMMAND__PAYLOAD_CHECK,
};

static int check_freeze(const Lockstep__FreezeRequest *fr, lserr *err)
{
        int r = check_name("freeze.snapshot", fr->snapshot, 0, err);

        if (r < 0)
                return r;
        if ((unsigned)fr->mode > LOCKSTEP__MODE__MODE_MEMORY)
                return lserr_set(err, LS_EMALFORMED, "field freeze.mode: unknown mode %d", fr->mode);
        r = check_name("freeze.hook", fr->hook, 1, err);
        if (r < 0)
                return r;
        if (fr->tier > MAX_TIER || (!fr->by_tier && fr->tier))
                return lserr_set(err, LS_EMALFORMED, "field freeze.tier: %u out of range (0..%u, with by_tier)",
                                 fr->tier, MAX_TIER);
        if (fr->lease_ms == 0 || fr->lease_ms > MAX_LEASE_MS)
                return lserr_set(err, LS_EMALFORMED, "field freeze.lease_ms: %u out of range (1..%u)", fr->lease_ms,
                                 MAX_LEASE_MS);
        return check_members(fr->n_members, fr->members, err);
}

/* Every field a peer controls, checked before anything reads it. */
static int check_command_fields(const Lockstep__Command *c, lserr *err)
{
        unsigned step = (unsigned)c->step;
        int r;

        if (c->nonce.len != REPLAY_NONCE_LEN)
                return lserr_set(err, LS_EMALFORMED, "field nonce: %zu bytes, must be %d", c->nonce.len,
                                 REPLAY_NONCE_LEN);
        r = check_name("target", c->target, 0, err);
        if (r < 0)
                return r;
        /* etcd revisions stay far below this; a larger one would only lock
         * every later leader out. */
        if (c->epoch > ENV_EPOCH_MAX)
                return lserr_set(err, LS_EMALFORMED, "field epoch: %" PRIu64 " is beyond %" PRIu64, c->epoch,
                                 (uint64_t)ENV_EPOCH_MAX);
        if (step == 0 || step >= sizeof(step_payload) / sizeof(step_payload[0]))
                return lserr_set(err, LS_EMALFORMED, "field step: unknown step %u", step);
        if (c->payload_case != step_payload[step])
                return lserr_set(err, LS_EMALFORMED, "step %s does not match the command's payload",
                                 env_step_name(c->step));
        r = check_name("txid", c->txid, step == LOCKSTEP__STEP__STEP_STATUS || step == LOCKSTEP__STEP__STEP_DISCOVER,
                       err);
        if (r < 0)
                return r;
        switch (c->payload_case) {
        case LOCKSTEP__COMMAND__PAYLOAD_FREEZE:
                return check_freeze(c->freeze, err);
        case LOCKSTEP__COMMAND__PAYLOAD_DECIDE:
                return check_decision(c->decide->decision, err);
        case LOCKSTEP__COMMAND__PAYLOAD_REVERT_DECIDE:
                return check_decision(c->revert_decide->decision, err);
        case LOCKSTEP__COMMAND__PAYLOAD_REVERT_PREPARE:
                r = check_name("revert_prepare.cut_txid", c->revert_prepare->cut_txid, 0, err);
                if (r >= 0)
                        r = check_name("revert_prepare.snapshot", c->revert_prepare->snapshot, 0, err);
                if (r >= 0)
                        r = check_members(c->revert_prepare->n_members, c->revert_prepare->members, err);
                return r;
        case LOCKSTEP__COMMAND__PAYLOAD_DELETE:
                r = check_name("delete.cut_txid", c->delete_->cut_txid, 0, err);
                if (r >= 0)
                        r = check_name("delete.snapshot", c->delete_->snapshot, 0, err);
                if (r >= 0 && c->delete_->n_reverts > MAX_REVERTS)
                        r = lserr_set(err, LS_EMALFORMED, "field delete.reverts: %zu names, at most %d",
                                      c->delete_->n_reverts, MAX_REVERTS);
                for (size_t i = 0; r >= 0 && i < c->delete_->n_reverts; i++)
                        r = check_name("delete.reverts", c->delete_->reverts[i], 0, err);
                if (r >= 0)
                        r = check_members(c->delete_->n_members, c->delete_->members, err);
                return r;
        case LOCKSTEP__COMMAND__PAYLOAD_CHECK:
                if ((unsigned)c->check->mode > LOCKSTEP__MODE__MODE_MEMORY)
                        return lserr_set(err, LS_EMALFORMED, "field check.mode: unknown mode %d", c->check->mode);
                if (c->check->lease_ms > MAX_LEASE_MS)
                        return lserr_set(err, LS_EMALFORMED, "field check.lease_ms: %u out of range (0..%u)",
                                         c->check->lease_ms, MAX_LEASE_MS);
                r = check_name("check.hook", c->check->hook, 1, err);
                if (r < 0)
                        return r;
                return check_members(c->check->n_members, c->check->members, err);
        case LOCKSTEP__COMMAND__PAYLOAD_REVERT_STOP:
                if (c->revert_stop->tier > MAX_TIER)
                        return lserr_set(err, LS_EMALFORMED, "field revert_stop.tier out of range");
                return 0;
        case LOCKSTEP__COMMAND__PAYLOAD_REVERT_START:
                if (c->revert_start->tier > MAX_TIER)
                        return lserr_set(err, LS_EMALFORMED, "field revert_start.tier out of range");
                return 0;
        default:
                return 0;
        }
}

/* What a signed refusal of cmd may name. */
static void refusal_names(const Lockstep__Command *cmd, struct env_refusal *rf)
{
        unsigned step = (unsigned)cmd->step;

        rf->answerable = 1;
        if (names_valid(cmd->txid))
                snprintf(rf->txid, sizeof(rf->txid), "%s", cmd->txid);
        if (step < sizeof(step_payload) / sizeof(step_payload[0]))
                rf->step = cmd->step;
}

/* The leader-epoch fence holds every command but a read-only one without an
 * epoch (a status probe, monitoring, `lockstep check` of a lockstepd without
 * high availability): those change nothing an old leader could misuse. */
static int fenced(const Lockstep__Command *cmd)
{
        int read_only = cmd->step == LOCKSTEP__STEP__STEP_STATUS || cmd->step == LOCKSTEP__STEP__STEP_DISCOVER ||
                        cmd->step == LOCKSTEP__STEP__STEP_CHECK;

        return !(read_only && cmd->epoch == 0);
}

int env_verify_command(struct env_verifier *v, const uint8_t *buf, size_t len, long long now_us,
                       Lockstep__Command **ret_cmd, const struct env_trusted **ret_key,
                       struct env_refusal *ret_refusal, lserr *err)
{
        Lockstep__Envelope *env = NULL;
        Lockstep__Command *cmd = NULL;
        const struct env_trusted *key = NULL;
        struct env_refusal rf = {0};
        char fpr[KEYS_FPR_LEN];
        int r;

        r = env_open(ENV_COMMAND, buf, len, v->max_size, &env, err);
        if (r < 0) {
                if (ret_refusal)
                        *ret_refusal = rf;
                return r;
        }
        key = env_find_key(env, v->keys, v->n_keys);
        if (!key) {
                keys_fingerprint(env->key_id.data, fpr);
                r = lserr_set(err, LS_EUNKNOWNKEY, "command signed by unknown key %s", fpr);
                goto out;
        }
        r = env_check_signature(ENV_COMMAND, env, &key->pub, err);
        if (r < 0)
                goto out;
        cmd = lockstep__command__unpack(NULL, env->body.len, env->body.data);
        if (!cmd) {
                r = lserr_set(err, LS_EMALFORMED, "command body from key \"%s\" does not unpack", key->name);
                goto out;
        }
        refusal_names(cmd, &rf);
        r = check_command_fields(cmd, err);
        if (r < 0)
                goto out;
        if (strcmp(cmd->target, v->self) != 0) {
                r = lserr_set(err, LS_ETARGET, "command is for agent \"%s\", this is \"%s\"", cmd->target, v->self);
                goto out;
        }
        if (cmd->issued_at_us < now_us - v->window_us) {
                r = lserr_set(err, LS_EEXPIRED, "command issued %lld ms ago, outside the %lld s window",
                              (now_us - cmd->issued_at_us) / 1000, v->window_us / 1000000);
                goto out;
        }
        if (cmd->issued_at_us > now_us + v->window_us) {
                r = lserr_set(err, LS_EFUTURE, "command issued %lld ms in the future, outside the %lld s window",
                              (cmd->issued_at_us - now_us) / 1000, v->window_us / 1000000);
                goto out;
        }
        pthread_mutex_lock(&v->lock);
        r = replay_check_nonce(v->rp, cmd->nonce.data, now_us, err);
        /* The epoch before the counter: a deposed leader hears that it is
         * deposed, not that its counter is stale (which it would heal and
         * send again for nothing). */
        if (r >= 0 && fenced(cmd))
                r = replay_check_epoch(v->rp, cmd->epoch, &rf.epoch_seen, err);
        if (r >= 0)
                r = replay_check_counter(v->rp, key->pub.id, cmd->counter, &rf.counter_seen, err);
        if (r >= 0 && !(env_step_roles(cmd->step) & key->roles))
                r = lserr_set(err, LS_EROLE, "key \"%s\" has no role that allows step %s", key->name,
                              env_step_name(cmd->step));
        if (r >= 0 && fenced(cmd))
                r = replay_commit_epoch(v->rp, cmd->epoch, err);
        if (r >= 0)
                r = replay_commit(v->rp, key->pub.id, cmd->nonce.data, cmd->issued_at_us, cmd->counter, now_us,
                                  err);
        pthread_mutex_unlock(&v->lock);
        if (r < 0)
                goto out;
        *ret_cmd = cmd;
        *ret_key = key;
        cmd = NULL;
out:
        if (r < 0 && ret_refusal)
                *ret_refusal = rf;
        if (cmd)
                lockstep__command__free_unpacked(cmd, NULL);
        lockstep__envelope__free_unpacked(env, NULL);
        return r;
}

Lockstep__Refusal env_refusal_of(int code)
{
        switch (code) {
        case LS_EUNKNOWNKEY:
                return LOCKSTEP__REFUSAL__REFUSAL_UNKNOWN_KEY;
        case LS_EBADSIG:
                return LOCKSTEP__REFUSAL__REFUSAL_BAD_SIGNATURE;
        case LS_EVERSION:
                return LOCKSTEP__REFUSAL__REFUSAL_VERSION;
        default:
                return LOCKSTEP__REFUSAL__REFUSAL_MALFORMED;
        }
}

const char *env_refusal_name(Lockstep__Refusal r)
{
        switch (r) {
        case LOCKSTEP__REFUSAL__REFUSAL_MALFORMED:
                return "malformed";
        case LOCKSTEP__REFUSAL__REFUSAL_UNKNOWN_KEY:
                return "unknown-key";
        case LOCKSTEP__REFUSAL__REFUSAL_BAD_SIGNATURE:
                return "bad-signature";
        case LOCKSTEP__REFUSAL__REFUSAL_VERSION:
                return "bad-version";
        default:
                return "unknown-refusal";
        }
}

int env_seal_refusal(int code, uint8_t **ret, size_t *ret_len, lserr *err)
{
        Lockstep__Envelope env = LOCKSTEP__ENVELOPE__INIT;
        size_t n;
        uint8_t *out;

        env.refusal = env_refusal_of(code);
        n = lockstep__envelope__get_packed_size(&env);
        out = malloc(n);
        if (!out)
                return lserr_set(err, -ENOMEM, "refusal: out of memory");
        lockstep__envelope__pack(&env, out);
        *ret = out;
        *ret_len = n;
        return 0;
}

int env_verify_reply(const uint8_t *buf, size_t len, size_t max_size, const struct keys_public *pinned,
                     const char *agent_id, const uint8_t cmd_hash[ENV_HASH_LEN], Lockstep__Reply **ret,
                     lserr *err)
{
        Lockstep__Envelope *env = NULL;
        Lockstep__Reply *rep = NULL;
        int r;

        r = env_open(ENV_REPLY, buf, len, max_size, &env, err);
        if (r < 0)
                return r;
        if (memcmp(env->key_id.data, pinned->id, KEYS_ID_LEN) != 0) {
                r = lserr_set(err, LS_EUNKNOWNKEY, "reply from \"%s\" is not signed by its pinned key", agent_id);
                goto out;
        }
        r = env_check_signature(ENV_REPLY, env, pinned, err);
        if (r < 0)
                goto out;
        rep = lockstep__reply__unpack(NULL, env->body.len, env->body.data);
        if (!rep) {
                r = lserr_set(err, LS_EMALFORMED, "reply body from \"%s\" does not unpack", agent_id);
                goto out;
        }
        if (strcmp(rep->agent, agent_id) != 0) {
                r = lserr_set(err, LS_ETARGET, "reply names agent \"%.64s\", expected \"%s\"", rep->agent, agent_id);
                goto out;
        }
        if (rep->command_hash.len != ENV_HASH_LEN || sodium_memcmp(rep->command_hash.data, cmd_hash, ENV_HASH_LEN)) {
                r = lserr_set(err, LS_EPEER, "reply from \"%s\" answers another command", agent_id);
                goto out;
        }
        *ret = rep;
        rep = NULL;
out:
        if (rep)
                lockstep__reply__free_unpacked(rep, NULL);
        lockstep__envelope__free_unpacked(env, NULL);
        return r;
}

int env_body_hash(const uint8_t *buf, size_t len, size_t max_size, uint8_t ret_hash[ENV_HASH_LEN])
{
        Lockstep__Envelope *env;

        if (len > max_size)
                return LS_EOVERSIZE;
        env = lockstep__envelope__unpack(NULL, len, buf);
        if (!env)
                return LS_EMALFORMED;
        env_hash_body(env->body.data, env->body.len, ret_hash);
        lockstep__envelope__free_unpacked(env, NULL);
        return 0;
}

unsigned env_step_roles(Lockstep__Step step)
{
        switch (step) {
        case LOCKSTEP__STEP__STEP_STATUS:
        case LOCKSTEP__STEP__STEP_DISCOVER:
        case LOCKSTEP__STEP__STEP_CHECK:
                return CFG_ROLE_SNAPSHOT | CFG_ROLE_REVERT | CFG_ROLE_DELETE | CFG_ROLE_ADMIN;
        case LOCKSTEP__STEP__STEP_FREEZE:
        case LOCKSTEP__STEP__STEP_SNAPSHOT:
        case LOCKSTEP__STEP__STEP_DECIDE:
                return CFG_ROLE_SNAPSHOT | CFG_ROLE_ADMIN;
        case LOCKSTEP__STEP__STEP_REVERT_PREPARE:
        case LOCKSTEP__STEP__STEP_REVERT_STOP:
        case LOCKSTEP__STEP__STEP_REVERT_SWITCH:
        case LOCKSTEP__STEP__STEP_REVERT_START:
        case LOCKSTEP__STEP__STEP_REVERT_DECIDE:
                return CFG_ROLE_REVERT | CFG_ROLE_ADMIN;
        case LOCKSTEP__STEP__STEP_DELETE:
                return CFG_ROLE_DELETE | CFG_ROLE_ADMIN;
        default:
                return 0;
        }
}

const char *env_step_name(Lockstep__Step step)
{
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&lockstep__step__descriptor, (int)step);

        /* "STEP_FREEZE" -> "FREEZE" */
        return v ? v->name + strlen("STEP_") : "UNKNOWN";
}
