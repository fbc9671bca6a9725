/* txn: the agent's transactions, one state machine:
 *   IDLE -> FROZEN -> SNAPPED -> COMMITTED | ABORTED
 * FREEZE validates every member, then freezes them (front tiers first); a
 * partial freeze is undone before voting no. SNAPSHOT is accepted only in
 * FROZEN and within the lease; it snapshots each member (back tiers first) and
 * thaws it at once. DECIDE commits or discards. A member held by one open
 * transaction is refused by another. Every (txid, step) is answered once and
 * the same reply is returned for a resent command. Every state change is
 * journaled before it is acted on; the lease is enforced here and, should the
 * agent die, by the guardian. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "agent_config.h"
#include "guardian.h"
#include "hv.h"
#include "lockstep.pb-c.h"
#include "lserr.h"

struct txn_mgr;

/* Borrows cfg, hv and g (g may be NULL in tests: no guardian). Starts the lease
 * thread. */
int txn_mgr_new(const struct cfg_agent *cfg, struct hv *hv, struct guardian *g, struct txn_mgr **ret,
                lserr *err);

/* Reads the journal back: thaws what was frozen (the transaction can then only
 * abort), discards what a crash cut short while snapshotting, keeps SNAPPED
 * overlays pending. Call once, before serving. */
int txn_mgr_recover(struct txn_mgr *m, lserr *err);

/* Thaws and resumes everything this agent froze or paused (SIGTERM). */
void txn_mgr_shutdown(struct txn_mgr *m);

struct txn_mgr *txn_mgr_free(struct txn_mgr *m);

/* Runs FREEZE, SNAPSHOT, DECIDE or DELETE of cmd (already verified), or returns the
 * stored reply of that (txid, step). *ret is a packed Reply without agent,
 * command hash or time (the caller adds them and signs), malloc'd, the
 * caller's. Returns < 0 only when no reply can be made (out of memory). */
int txn_step(struct txn_mgr *m, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len);

/* A DECIDE or REVERT_DECIDE of txid is about to run: when this agent has no
 * transaction txid, remembers durably, for twice the command time window, that
 * it was decided, so that a FREEZE, REVERT_PREPARE or DELETE of it delivered
 * late is refused (txn_was_decided, and again when it would take members).
 * < 0 with err when the memory could not be written (it still holds txid). */
int txn_note_decided(struct txn_mgr *m, const char *txid, lserr *err);
/* Whether an opening step of txid must be refused: txid was decided here
 * before it was ever open, within the remembered time. */
int txn_was_decided(struct txn_mgr *m, const char *txid);

/* Transactions whose decision has not arrived. *ret is the caller's: free with
 * txn_in_doubt_free. */
int txn_in_doubt(struct txn_mgr *m, Lockstep__InDoubt ***ret, size_t *ret_n);
void txn_in_doubt_free(Lockstep__InDoubt **v, size_t n);

/* Lease checks run every this many microseconds... */
#define TXN_TICK_US 100000LL
/* ... while there is lease work; with none (no open cut, nothing to thaw or
 * free), this often, or when a step runs. */
#define TXN_IDLE_US (10LL * 1000000LL)
/* Finished transactions are remembered this long for resent commands (with
 * their journal files)... */
#define TXN_KEEP_US (3600LL * 1000000LL)
/* ... but only the newest TXN_KEEP_MAX of them once they are older than twice
 * the command time window (no command sent while they ran can arrive after
 * that): an agent that cuts every few seconds holds at most this many, or
 * what two windows bring, not an hour of them. */
#define TXN_KEEP_MAX 1024
/* ... and their members only this long: then only their stored replies. */
#define TXN_COMPACT_US (1LL * 1000000LL)
