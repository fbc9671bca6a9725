/* envelope: signing and verifying lockstep messages. A command is checked in a
 * fixed order, each refusal with its own code: size -> envelope unpack -> known
 * key -> signature -> body unpack and field checks -> target -> time window ->
 * nonce -> counter -> leader epoch -> role. Nothing is remembered for a refused command. A
 * refusal before the signature verified is answered with an unsigned envelope
 * that carries only a Refusal code (env_seal_refusal). */
#pragma once

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "roles.h"
#include "keys.h"
#include "lockstep.pb-c.h"
#include "lserr.h"
#include "names.h"
#include "replay.h"

#define ENV_VERSION 1
#define ENV_MAX_DEFAULT (1024 * 1024)
#define ENV_HASH_LEN 32
#define ENV_SIG_LEN 64
#define ENV_WINDOW_DEFAULT_US (30LL * 1000000LL)
/* The largest leader epoch a command may carry (2^53: far above any etcd revision). */
#define ENV_EPOCH_MAX (1ULL << 53)

/* Each kind signs under a tag of its own, so no signed message of one kind
 * verifies as another: an agent's command is never a forward between
 * coordinators, nor the reverse. */
enum env_kind {
        ENV_COMMAND,       /* coordinator -> agent */
        ENV_REPLY,         /* agent -> coordinator */
        ENV_FORWARD,       /* follower lockstepd -> leader (coordinator/forward.c) */
        ENV_FORWARD_REPLY, /* leader -> follower */
};

/* A coordinator key an agent trusts, with the roles it holds (enum cfg_role bits). */
struct env_trusted {
        struct keys_public pub;
        unsigned roles;
        char name[LS_NAME_MAX + 1];
};

/* Signs body under kind's tag and packs the envelope. *ret is malloc'd, the
 * caller's. */
int env_seal(enum env_kind kind, const struct keys_secret *key, const uint8_t *body, size_t body_len,
             uint8_t **ret, size_t *ret_len, lserr *err);
/* Packs msg and seals it as env_seal does; ret_hash (may be NULL) gets the
 * hash of the packed body, the one an answer to it carries. */
int env_seal_message(enum env_kind kind, const struct keys_secret *key, const ProtobufCMessage *msg, uint8_t **ret,
                     size_t *ret_len, uint8_t *ret_hash, lserr *err);
/* The hash a reply carries of the body it answers (BLAKE2b-256). */
void env_hash_body(const uint8_t *body, size_t len, uint8_t ret[ENV_HASH_LEN]);

/* The steps of any signed message, for verifiers of their own (forwards): */
/* Size, unpack, the lengths of key id and signature, version: what is checked
 * before a key is looked up. An unsigned refusal where a reply kind
 * (ENV_REPLY, ENV_FORWARD_REPLY) was expected is LS_EREFUSED. *ret is the
 * caller's (lockstep__envelope__free_unpacked); untouched on failure. */
int env_open(enum env_kind kind, const uint8_t *buf, size_t len, size_t max_size, Lockstep__Envelope **ret,
             lserr *err);
/* The key among keys[n] whose id env carries, or NULL. */
const struct env_trusted *env_find_key(const Lockstep__Envelope *env, const struct env_trusted *keys, size_t n);
/* 0 when env's signature verifies under pub over kind's tag and the body;
 * else LS_EBADSIG (also for a message of another kind). */
int env_check_signature(enum env_kind kind, const Lockstep__Envelope *env, const struct keys_public *pub, lserr *err);

/* Fills cmd's issue time (now_us), a fresh random nonce (stored in nonce_buf,
 * which must outlive the pack) and counter, then packs and seals it. ret_hash
 * gets the hash a reply must carry. */
int env_seal_command(const struct keys_secret *key, Lockstep__Command *cmd, uint64_t counter, long long now_us,
                     uint8_t nonce_buf[REPLAY_NONCE_LEN], uint8_t **ret, size_t *ret_len,
                     uint8_t ret_hash[ENV_HASH_LEN], lserr *err);

int env_seal_reply(const struct keys_secret *key, const Lockstep__Reply *reply, uint8_t **ret, size_t *ret_len,
                   lserr *err);

/* The agent finds the key of a command by its 8-byte id: two trusted keys with one
 * id (the same key listed twice, or a collision) would leave it to pick one of
 * them, and its roles. Refuses that (LS_ECONFIG), naming both entries. */
int env_trusted_unique(const struct env_trusted *keys, size_t n, lserr *err);

struct env_verifier;

/* keys are copied (refused unless env_trusted_unique); rp is borrowed and must
 * outlive the verifier. */
int env_verifier_new(const char *self_id, const struct env_trusted *keys, size_t n_keys, struct replay *rp,
                     long long window_us, size_t max_size, struct env_verifier **ret, lserr *err);
struct env_verifier *env_verifier_free(struct env_verifier *v);

/* What a refused command allows its answer to say. */
struct env_refusal {
        /* The signature verified and the body unpacked: the refusal may be
         * signed, and names the command's txid and step. When 0 the answer is
         * an unsigned refusal code (env_seal_refusal), nothing more. */
        int answerable;
        char txid[LS_NAME_MAX + 1]; /* "" when the body's txid is not a valid name */
        Lockstep__Step step;        /* 0 when the body's step is unknown */
        /* LS_ECOUNTER: the highest counter accepted from the signing key, so the
         * coordinator can move past it. */
        uint64_t counter_seen;
        /* LS_EEPOCH: the highest leader epoch the agent obeyed. */
        uint64_t epoch_seen;
};

/* Thread-safe. On success *ret_cmd (free with lockstep__command__free_unpacked)
 * and *ret_key (points into the verifier) are set and the nonce and counter are
 * remembered durably. On failure the outputs are untouched and err says why,
 * except *ret_refusal (may be NULL), which is filled on every failure. */
int env_verify_command(struct env_verifier *v, const uint8_t *buf, size_t len, long long now_us,
                       Lockstep__Command **ret_cmd, const struct env_trusted **ret_key,
                       struct env_refusal *ret_refusal, lserr *err);

/* The unsigned answer to a command refused before its signature verified
 * (code: LS_EUNKNOWNKEY, LS_EBADSIG, LS_EVERSION; anything else is malformed):
 * an envelope with only its refusal set. Costs no signature and says nothing
 * an attacker chose. *ret is malloc'd, the caller's. */
int env_seal_refusal(int code, uint8_t **ret, size_t *ret_len, lserr *err);
/* The wire's Refusal for a verifier code, and its short name ("unknown-key"). */
Lockstep__Refusal env_refusal_of(int code);
const char *env_refusal_name(Lockstep__Refusal r);

/* Checks a reply against the agent's pinned key, its id and the hash of the
 * command it must answer. *ret is the caller's (lockstep__reply__free_unpacked).
 * An unsigned refusal is never a reply: LS_EREFUSED, err names its code. */
int env_verify_reply(const uint8_t *buf, size_t len, size_t max_size, const struct keys_public *pinned,
                     const char *agent_id, const uint8_t cmd_hash[ENV_HASH_LEN], Lockstep__Reply **ret,
                     lserr *err);

/* Hash of an envelope's body, so a refused command can still be answered. */
int env_body_hash(const uint8_t *buf, size_t len, size_t max_size, uint8_t ret_hash[ENV_HASH_LEN]);

/* Roles (enum cfg_role bits) any of which allows the step. */
unsigned env_step_roles(Lockstep__Step step);
const char *env_step_name(Lockstep__Step step);
