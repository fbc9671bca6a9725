/* txn_priv: what the txn_*.c files share: a transaction, its members, the
 * manager, and the helpers every step uses. Not for use outside txn_*.c and
 * the unit tests. */
#pragma once

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "decided.h"
#include "names.h"
#include "txn.h"
#include "workers.h"

/* parallel_per_host's ceiling (agent_config.c checks the same bound). */
#define TXN_POOL_MAX 64
/* How long a member step's thread waits for the next step before it ends:
 * longer than a cut's rounds, shorter than a schedule's minute. */
#define TXN_WORKER_IDLE_MS 20000
#define TXN_MSG_MAX 600

struct member {
        char vm[LS_NAME_MAX + 1];
        unsigned tier;
        int crash;       /* consistency: crash, paused instead of frozen */
        const struct cfg_hook *hook; /* t->hook as agent.yaml has it for this VM */
        int want_freeze; /* fsfreeze is part of this member's cut */
        int want_pause;  /* vCPUs are suspended for this member's cut */
        int quiesced;    /* frozen by us and not yet thawed */
        int paused;      /* paused by us and not yet resumed */
        int held;        /* was frozen/paused for this cut: SNAPSHOT needs every member held */
        struct hv_image imgs[HV_MAX_DISKS];
        size_t n_imgs;
        long long freeze_us, snapshot_us, thaw_us, frozen_at_us, thawed_at_us;
        long long freeze_start_mono, thaw_done_mono;
        long long check_us, ping_us; /* validation's parts, for the FREEZE's log line */
        int code; /* Lockstep__ErrorCode */
        char msg[TXN_MSG_MAX];
        int was_running; /* revert: running at PREPARE, started again */
        int switched;    /* revert: disks point at the cut */
        struct hv_removed *removed; /* branch delete: the files removed (malloc'd) */
        size_t n_removed;
};

struct stored {
        Lockstep__Step step;
        uint32_t sub; /* the tier, for revert STOP/START */
        uint8_t *buf;
        size_t len;
};

/* FREEZE, SNAPSHOT, DECIDE; or PREPARE, STOP and START per tier, SWITCH, DECIDE. */
#define TXN_MAX_STORED (4 + 2 * 65)

struct txn {
        char txid[LS_NAME_MAX + 1];
        char snap[LS_NAME_MAX + 1]; /* the cut's name: only older cuts' files carry it */
        char cut[LS_NAME_MAX + 1];  /* the cut's txid (delete, revert): files carry it */
        Lockstep__Mode mode;
        Lockstep__JournalState state;
        int decided, lease_expired;
        long long lease_deadline_mono, lease_deadline_unix;
        long long finished_mono; /* when it reached COMMITTED/ABORTED, for pruning */
        struct member *m;
        size_t n;
        struct stored replies[TXN_MAX_STORED];
        size_t n_replies;
        int revert, undo;
        int check; /* a CHECK: validated only, never listed */
        int branch; /* a DELETE of revert `cut`'s pre-revert branch */
        char hook[LS_NAME_MAX + 1]; /* FREEZE's or CHECK's guest hook, by name; "" none */
        pthread_mutex_t lock; /* one step at a time */
        struct txn *next;
};

struct txn_mgr {
        const struct cfg_agent *cfg;
        struct hv *hv;
        struct guardian *g;
        struct workers *workers; /* the pool's threads, kept between steps (NULL: one per task) */
        struct decided *decided; /* txids decided before they were seen open (under lock) */
        pthread_mutex_t lock; /* the list, member ownership and decided */
        struct txn *list;
        pthread_t reaper;
        pthread_cond_t wake;
        int stop, reaper_started;
        int kicked; /* a step ran since the lease thread last looked (under lock) */
};

/* ---- txn_mgr.c: transactions and the list of open ones ---- */

/* A new transaction with n members (none when n is 0); NULL when out of memory. */
struct txn *txn_new(const char *txid, size_t n);
/* The same, with the members of a request (vm, tier, consistency) in order. */
struct txn *txn_new_members(const char *txid, Lockstep__Member *const *members, size_t n);
struct txn *txn_free(struct txn *t);
static inline void txn_freep(struct txn **t)
{
        *t = txn_free(*t);
}
#define _cleanup_txn_ __attribute__((cleanup(txn_freep)))

/* The transaction txid or NULL (mg->lock held). */
struct txn *txn_find(struct txn_mgr *mg, const char *txid);
/* Which open transaction holds vm, if any (mg->lock held); also one that
 * ended but still retries a failed thaw or resume of it (*ret_thawing 1). */
struct txn *txn_holder(struct txn_mgr *mg, const char *vm, int *ret_thawing);
/* Adds t to the open ones, taking its members: a member that another open
 * transaction holds is marked E_BUSY ("<step>: held by ..."), every member of
 * a txid already decided here (txn_note_decided) E_BAD_STATE. Returns with
 * t->lock held, t in `state` (or ABORTED when a member was busy) and 1 when a
 * member was busy; -EEXIST (t not added, still the caller's) when a resend of
 * the same txid is being worked on right now. */
int txn_enlist(struct txn_mgr *mg, struct txn *t, Lockstep__JournalState state, const char *step);

/* ---- txn_member.c: what steps do to members ---- */

Lockstep__ErrorCode txn_wire_code(int r);
/* Records the first failure of a member, prefixed "<vm>@<host>: " (the only
 * place that prefix is made: fmt must not name the VM). */
void txn_member_fail(const struct txn_mgr *mg, struct member *mb, Lockstep__ErrorCode code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* What a step did to a member that went well; never overwrites a failure. */
void txn_member_note(struct member *mb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
Lockstep__ErrorCode txn_first_code(const struct txn *t);
/* Whether any member failed. */
int txn_any_failed(const struct txn *t);
/* Thaws/resumes one member. Returns 0 when nothing of ours is left on it. */
int txn_undo_member(struct txn_mgr *mg, struct txn *t, struct member *mb, int report_early);
void txn_undo_all(struct txn_mgr *mg, struct txn *t);
typedef int (*txn_member_fn)(struct txn_mgr *, struct txn *, struct member *);
/* Runs fn on every member of tier `tier`, up to parallel_per_host at once
 * (snapshots and thaws: they load the host's disks and CPUs). */
void txn_run_tier(struct txn_mgr *mg, struct txn *t, unsigned tier, txn_member_fn fn);
/* Runs fn on every member of tier `tier` at once (up to TXN_POOL_MAX): for
 * freezes, which wait on each guest's agent and load the host little; bounding
 * them by parallel_per_host held the whole group frozen longer. */
void txn_run_tier_wide(struct txn_mgr *mg, struct txn *t, unsigned tier, txn_member_fn fn);
/* Runs fn on every member whatever its tier, all at once (up to TXN_POOL_MAX):
 * for steps that no tier order binds and that only read (validation). */
void txn_run_all(struct txn_mgr *mg, struct txn *t, txn_member_fn fn);
unsigned txn_max_tier(const struct txn *t);
/* Removes a cut's overlays of mb (ABORT, recovery); kept on failure so a
 * resent ABORT tries again. */
int txn_discard_member(struct txn_mgr *mg, struct txn *t, struct member *mb);
/* txn_discard_member on every member with overlays, through the pool; a
 * member whose discard failed keeps its n_imgs. */
void txn_discard_all(struct txn_mgr *mg, struct txn *t);

/* ---- txn_pool.c: a step on many members at once ---- */

/* Whether a member takes part (arg: what the caller chose, e.g. a tier). */
typedef int (*txn_member_pick)(const struct member *mb, unsigned arg);
/* How many members are worked on at once: parallel_per_host, 1 when unset. */
unsigned txn_pool_size(const struct txn_mgr *mg);
/* txn_pool_run's width: every chosen member at once, up to TXN_POOL_MAX. */
#define TXN_POOL_WIDE UINT_MAX
/* Runs fn on every member that pick chooses, at most txn_pool_size at once
 * (width 0) or all of them (TXN_POOL_WIDE);
 * the caller's thread is one of the workers, so a pool of 1 runs them in
 * order (reverse: last member first) on the caller's thread. The caller holds
 * t->lock; fn may change its own member only, never t, and must not journal:
 * the caller persists once the phase is over. Returns when all are done. */
void txn_pool_run(struct txn_mgr *mg, struct txn *t, txn_member_pick pick, unsigned arg, int reverse,
                  unsigned width, txn_member_fn fn);

/* ---- txn_reply.c: replies, stored and resent ---- */

Lockstep__TxnState txn_wire_state(Lockstep__JournalState s);
/* The reply of a step, from the transaction's members. Packed, malloc'd. */
int txn_pack_reply(const struct txn_mgr *mg, const struct txn *t, Lockstep__Step step, Lockstep__ErrorCode code,
                   const char *message, uint8_t **ret, size_t *ret_len);
/* A reply for a command that never became a transaction step. */
int txn_plain_reply(const char *txid, Lockstep__Step step, Lockstep__ErrorCode code, const char *message,
                    uint8_t **ret, size_t *ret_len);
/* Stores the reply of a step (sub: the tier of a revert STOP/START, else 0),
 * journals it with the state, then hands a copy to the caller. */
int txn_finish_step(struct txn_mgr *mg, struct txn *t, Lockstep__Step step, uint32_t sub, Lockstep__ErrorCode code,
                    const char *message, uint8_t **ret, size_t *ret_len);
const struct stored *txn_stored_reply(const struct txn *t, Lockstep__Step step, uint32_t sub);

/* ---- txn_journal.c: the journal record of a transaction ---- */

/* The one mapping between a transaction and its wire form, both ways: to the
 * wire (fields point into the transaction, nothing allocated) or from it
 * (copied into the transaction). */
enum txn_dir { TXN_TO_WIRE, TXN_FROM_WIRE };
void txn_map_timings(enum txn_dir d, struct member *mb, Lockstep__Timings *tm);
void txn_map_disk(enum txn_dir d, struct hv_image *im, Lockstep__DiskImage *di);

/* Writes the transaction's journal record. */
int txn_persist(struct txn_mgr *mg, const struct txn *t, lserr *err);
/* Journals, or logs loudly: the guests must still be thawed. */
int txn_persist_or_log(struct txn_mgr *mg, const struct txn *t);
/* The transaction a journal record describes, unlisted, nothing acted on. */
struct txn *txn_from_journal(const Lockstep__JournalTxn *jt);

/* ---- txn_lease.c: the lease thread ---- */

/* Thaws a frozen transaction whose lease is over: it can only abort. */
void txn_expire_lease(struct txn_mgr *mg, struct txn *t);
/* Frees a decided, finished transaction's members (t->lock held or t unlisted);
 * it answers from its stored replies alone. Not while one is frozen or paused. */
void txn_compact(struct txn *t);
/* One pass of the lease thread: expired leases, retried thaws, pruning.
 * Returns when the next pass is due: TXN_TICK_US while a lease runs, a step
 * is in progress, a thaw is retried or members wait to be freed; else
 * TXN_IDLE_US (pruning is by the hour). */
long long txn_lease_tick(struct txn_mgr *mg);
/* A step ran: the lease thread looks at once (it may be sleeping idle). */
void txn_lease_kick(struct txn_mgr *mg);
int txn_lease_start(struct txn_mgr *mg, lserr *err);
void txn_lease_stop(struct txn_mgr *mg);

/* ---- txn_revert.c: the revert protocol and pre-revert branches ---- */

int txn_revert_prepare(struct txn_mgr *mg, const Lockstep__Command *cmd, uint8_t **ret, size_t *ret_len);
/* STOP, SWITCH, START and DECIDE of an open revert (t->lock held). */
int txn_revert_step(struct txn_mgr *mg, struct txn *t, const Lockstep__Command *cmd, uint8_t **ret,
                    size_t *ret_len);
/* Puts every switched member back on its pre-revert branch and starts what was
 * running: the one undo path, for ABORT and for recovery. */
int txn_revert_rollback(struct txn_mgr *mg, struct txn *t);
/* Deletes the pre-revert branch revert t->cut kept for mb. */
int txn_drop_branch(struct txn_mgr *mg, struct txn *t, struct member *mb, lserr *err);
