/* forward_priv: forward.c's checks and seals, for its unit test and fuzz
 * harness (the sockets around them are in forward.h). */
#pragma once

#include "envelope.h"
#include "forward.h"

/* What forward_verify learnt of a forward, filled on every path. */
struct forward_seen {
        int answerable;             /* the signature verified: a refusal may be signed and carry hash */
        char from[LS_NAME_MAX + 1]; /* the signing key's name in ha.coordinators; "" before it is known */
        uint8_t hash[ENV_HASH_LEN]; /* the body's hash, when answerable */
};

/* The leader's checks of one forward, in this order: size, envelope, its key
 * among ha.coordinators and not this lockstepd's own, signature (the forward's
 * tag), body and its fields, `from` is the key's listed name, issue time
 * within FORWARD_WINDOW_US of now_us, nonce not seen; then the nonce is
 * remembered. Thread-safe. On success *ret is the caller's
 * (lockstep__forward__free_unpacked); on failure it is untouched and err says
 * why, naming the step. *seen is filled either way. */
int forward_verify(struct forward *f, const uint8_t *buf, size_t len, long long now_us, Lockstep__Forward **ret,
                   struct forward_seen *seen, lserr *err);

/* The follower's side: q for who, issued at now_us with a fresh nonce, signed
 * with this lockstepd's key. *ret is malloc'd, the caller's; ret_hash gets
 * the hash the answer must carry. */
int forward_seal(struct forward *f, const Lockstep__ControlRequest *q, const struct forward_caller *who,
                 long long now_us, uint8_t **ret, size_t *ret_len, uint8_t ret_hash[ENV_HASH_LEN], lserr *err);

/* The leader's answer to the forward whose body hashes to hash: rep as is,
 * signed with this lockstepd's key. *ret is malloc'd, the caller's. */
int forward_answer(struct forward *f, const uint8_t hash[ENV_HASH_LEN], const Lockstep__ControlReply *rep,
                   uint8_t **ret, size_t *ret_len, lserr *err);

/* The follower's checks of an answer: not an unsigned refusal (LS_EREFUSED),
 * signed under the forward reply's tag by the key ha.coordinators lists for
 * leader, naming leader, carrying hash and a reply. *ret is the caller's
 * (lockstep__forward_reply__free_unpacked); untouched on failure. */
int forward_open_reply(struct forward *f, const uint8_t *buf, size_t len, const char *leader,
                       const uint8_t hash[ENV_HASH_LEN], Lockstep__ForwardReply **ret, lserr *err);
