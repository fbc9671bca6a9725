/* agentlink: the coordinator's side of one agent: a socket dialed to it, its
 * pinned public key, and calls that seal a command (fresh nonce, next counter)
 * and accept only a reply that verifies against that key, names that agent and
 * answers that very command. */
#pragma once

#include "counter.h"
#include "envelope.h"
#include "keys.h"
#include "lockstep.pb-c.h"
#include "lserr.h"
#include "transport.h"

struct agentlink;

/* High availability: whether this lockstepd leads now, and its epoch (see
 * election.h). Every command sealed carries the epoch; none is sealed while
 * leading() says 0. */
struct agentlink_fence {
        int (*leading)(void *arg, uint64_t *epoch);
        void *arg;
};

/* Borrows key and ctr (shared by every link of a coordinator); copies the rest. */
int agentlink_open(const char *agent_id, const char *url, const struct keys_public *pinned,
                   const struct keys_secret *key, struct counter *ctr, const struct transport_tls *tls,
                   struct agentlink **ret, lserr *err);
struct agentlink *agentlink_close(struct agentlink *l);

/* Fills err for a call to l that got no reply (rc: LS_ETIMEDOUT or
 * -ECONNRESET from the transport) and returns the code: for a tls+tcp://
 * agent whose certificate is refused, -EACCES and a message that says so (a
 * quick connect of its own finds out); else rc and "no answer" / "connection
 * failed". Each names the agent and cmd's step. */
int agentlink_fail(const struct agentlink *l, const Lockstep__Command *cmd, int rc, lserr *err);

/* 1 once the agent has a live connection (nng connects in the background),
 * 0 when it still has none at deadline_us (fsutil_mono_us's clock). */
int agentlink_wait_connected(struct agentlink *l, long long deadline_us);
/* Why the agent has no connection, into err: with probe, one connect of our
 * own (up to 1 s) says why (refused, no route, its certificate), and 0 with
 * err untouched when that connect went through; else only that it has none.
 * Returns err's code. */
int agentlink_unconnected(const struct agentlink *l, int probe, lserr *err);

const char *agentlink_id(const struct agentlink *l);

/* From now on l seals commands only while f says we lead, with its epoch
 * (borrowed; NULL: no fence, epoch 0). A refused seal is -ESTALE. */
void agentlink_set_fence(struct agentlink *l, const struct agentlink_fence *f);

/* Sends cmd (its time, nonce and counter are filled in here, its target too
 * unless set) and waits
 * up to timeout_ms for the verified reply; *ret is the caller's
 * (lockstep__reply__free_unpacked). A reply that does not verify, or answers
 * another transaction or step (rejections included), is refused with LS_EPEER /
 * the verify code and never returned; an agent's unsigned refusal (it could not
 * check our signature: unknown key, bad signature, malformed) is LS_EREFUSED. A stale-counter refusal is healed and the command sent once
 * more, with a deadline of its own (agentlink_heal_counter); a second one is
 * the reply returned. Thread-safe: calls to one agent may overlap. */
int agentlink_call(struct agentlink *l, Lockstep__Command *cmd, int timeout_ms, Lockstep__Reply **ret, lserr *err);

/* For rep, the verified reply to cmd as last sealed: when the agent refused it
 * for a stale counter (E_REJECTED, stale-counter, with the highest counter it
 * accepted from our key), moves the shared counter past that value, logs the
 * move at warning and returns 1: the caller seals cmd again (fresh nonce, new
 * counter) and sends it once more, once. Returns 0 for any other reply, and
 * < 0 when the counter cannot move (a report too far ahead, see
 * counter_advance; the counter file): err says why and the counter is as it was. */
int agentlink_heal_counter(struct agentlink *l, const Lockstep__Command *cmd, const Lockstep__Reply *rep, lserr *err);

/* The two halves of agentlink_call, for sending to many agents at once. */
struct agentlink_req {
        uint8_t *buf; /* sealed command, malloc'd */
        size_t len;
        uint8_t hash[ENV_HASH_LEN];
};
int agentlink_seal(struct agentlink *l, Lockstep__Command *cmd, struct agentlink_req *ret, lserr *err);
/* recv_us: our Unix time (fsutil_now_us) when resp came in. A refusal of cmd
 * for its issue time gets, as its message, how far the agent's clock is from
 * ours (clockskew_refusal_text), the agent's own words kept inside. */
int agentlink_accept(struct agentlink *l, const Lockstep__Command *cmd, const struct agentlink_req *req,
                     const uint8_t *resp, size_t resp_len, long long recv_us, Lockstep__Reply **ret, lserr *err);
nng_socket agentlink_socket(const struct agentlink *l);
const char *agentlink_url(const struct agentlink *l);
