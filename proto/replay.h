/* replay: what an agent remembers to refuse a command it has already seen: a
 * bounded cache of nonces (kept for the time window) and, per coordinator key,
 * the highest command counter accepted, stored durably.
 *
 * Counters are checked WireGuard-style: anything at or below (highest - 64) is
 * refused, and inside that window each counter is accepted once. The window lets
 * commands that were sent in order but verified on two threads in the other
 * order both pass; after a restart the window is unknown and everything at or
 * below the stored highest is refused. The window also lets a command held back
 * on the path arrive after a later one: an opening step delayed past its
 * transaction's decision is refused by the agent's memory of decided txids
 * (agent/decided.h), not here. Not thread-safe: the caller serialises. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "lserr.h"

#define REPLAY_NONCE_LEN 16
#define REPLAY_WINDOW 64

struct replay;

/* state_dir holds one file per key ("counter-<hex id>"); max_nonces bounds memory.
 * state_dir NULL: nonces only, in memory (replay_check_nonce and
 * replay_commit_nonce; the counter and epoch calls are then not to be made). */
int replay_open(const char *state_dir, size_t max_nonces, long long window_us, struct replay **ret, lserr *err);
struct replay *replay_free(struct replay *r);

/* Read-only checks; nothing is remembered until replay_commit(). */
int replay_check_nonce(struct replay *r, const uint8_t nonce[REPLAY_NONCE_LEN], long long now_us, lserr *err);
/* On LS_ECOUNTER, *ret_highest (may be NULL) gets the highest counter accepted
 * from the key, so the refusal can tell the sender where to resume; it is
 * untouched on success and on any other failure. */
int replay_check_counter(struct replay *r, const uint8_t key_id[KEYS_ID_LEN], uint64_t counter,
                         uint64_t *ret_highest, lserr *err);

/* High availability's fence: the highest leader epoch accepted, from any
 * coordinator key, kept in <state_dir>/epoch. A lower epoch is a deposed
 * leader's: LS_EEPOCH, and *ret_highest (may be NULL) gets the stored one.
 * Epoch 0 (a coordinator without HA) passes only while none was ever seen. */
int replay_check_epoch(struct replay *r, uint64_t epoch, uint64_t *ret_highest, lserr *err);
/* Remembers epoch when it is above the stored one: on disk before it returns. */
int replay_commit_epoch(struct replay *r, uint64_t epoch, lserr *err);

/* Remembers the nonce alone, until issued_at (or now_us, if later) + window:
 * LS_EREPLAY when seen, LS_ENONCEFULL when the cache holds max_nonces unexpired
 * nonces (nothing is dropped early: that would let its message in again). */
int replay_commit_nonce(struct replay *r, const uint8_t nonce[REPLAY_NONCE_LEN], long long issued_at_us,
                        long long now_us, lserr *err);

/* Remembers the nonce (until issued_at + window) and the counter; a new highest
 * counter is on disk before this returns. On failure nothing is remembered. */
int replay_commit(struct replay *r, const uint8_t key_id[KEYS_ID_LEN], const uint8_t nonce[REPLAY_NONCE_LEN],
                  long long issued_at_us, uint64_t counter, long long now_us, lserr *err);
