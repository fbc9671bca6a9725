/* engine_priv: what the engine's files share (engine.c, engine_cut.c,
 * engine_delete.c, engine_revert.c, engine_recover.c) and its unit test sees:
 * one agent's part of a step, the round that runs a step on every agent, the
 * decision, progress lines. Not for the rest of the coordinator. */
#pragma once

#include <assert.h>
#include <stddef.h>

#include "agentlink.h"
#include "cleanup.h"
#include "engine.h"
#include "lockstep.pb-c.h"
#include "strset.h"

#define ENGINE_REASON_MAX 700

struct engine {
        const struct cfg_coord *cfg;
        const struct keys_secret *key;
        struct catalog *cat;
        struct counter *ctr;      /* borrowed: it outlives a config reload */
        struct slots *slots;      /* borrowed, as the counter */
        struct agentlink **links; /* one per cfg->agents[i] */
        size_t n_links;
        struct strset *link_set; /* agent id -> index in links */
        char (*fingerprints)[KEYS_FPR_LEN];   /* of each link's public key */
        void (*make_txid)(char out[65]);      /* engine_make_txid; a test may repeat ids */
};

/* Above this many agents in a round, only refusals get a progress line of
 * their own; the rest are counted in one. */
#define ENGINE_SAY_MAX 40

/* Where progress lines go: the daemon's log and, when fn is set, a live display. */
struct progress {
        engine_event_fn fn;
        void *arg;
};

void engine_emit(const struct progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One step's request. step says which member of the union is live; every
 * step has its own request type, as in Command's payload oneof. */
struct payload {
        Lockstep__Step step;
        union {
                Lockstep__FreezeRequest freeze;
                Lockstep__SnapshotRequest snapshot;
                Lockstep__DecideRequest decide;
                Lockstep__DeleteRequest del;
                Lockstep__RevertPrepareRequest rprep;
                Lockstep__RevertStopRequest rstop;
                Lockstep__RevertSwitchRequest rswitch;
                Lockstep__RevertStartRequest rstart;
                Lockstep__RevertDecideRequest rdecide;
                Lockstep__StatusRequest status;
                Lockstep__CheckRequest check;
        };
};

/* One agent's part of a transaction: its members (and, for a revert or a
 * delete, the images they name), and the step in flight with its answer. */
struct item {
        struct agentlink *link;
        Lockstep__Member *members;  /* n_members of them; memberp points at each */
        Lockstep__Member **memberp;
        size_t n_members;
        Lockstep__MemberDisks *mdisks; /* per member, the cut's images (attach_cut_images) */
        Lockstep__MemberDisks **mdiskp;
        size_t n_mdisks;
        Lockstep__DiskImage *dimgs;
        Lockstep__DiskImage **dimgp;
        Lockstep__Command cmd;
        struct payload pl;
        struct agentlink_req req;
        struct transport_call *call; /* its slot in the current fan-out */
        Lockstep__Reply *rep;        /* verified reply, or NULL */
        long long recv_us;           /* our Unix time when it came in: its now_us is read against it */
        lserr err;                   /* why there is none */
        /* Not yet in the catalog: audit rows of the sends and answers, and the
         * replies of deferred rounds (struct round's defer), in order. Each
         * row's detail is its own copy (malloc'd; engine_write_audit frees it). */
        struct cat_audit *aud;
        size_t n_aud, cap_aud;
        Lockstep__Reply *held[4];
        size_t n_held;
        int keep_rep;       /* the next item_step moves rep to held instead of freeing it */
        int silent_pending; /* its last round had no answer and records its members as pending */
        int said_yes;       /* some round of the transaction had its yes (a FREEZE by tier may follow) */
        int idle;           /* sits this round out (struct round's skip): engine_fan_out sends it nothing */
        int unsent;         /* nothing of the transaction was sent to it: nothing to tell it either */
};

/* An owned array of items. */
struct items {
        struct item *v;
        size_t n;
};

int items_alloc(struct items *its, size_t cap);
void items_free(struct items *its);
static inline void items_freep(struct items *its)
{
        items_free(its);
}

/* Makes it->cmd a fresh command of step for txid (borrowed) with an
 * initialised, empty payload, and drops the last reply. */
void item_step(struct item *it, const char *txid, Lockstep__Step step);
/* Whether the agent answered yes. */
int item_ok(const struct item *it);
/* The first reason an agent's answer was not a yes. */
void item_why(const struct item *it, char *out, size_t n);
/* Room for n members in it (members, memberp); then item_add_member. */
int item_members_alloc(struct item *it, size_t n);
void item_add_member(struct item *it, const char *vm, unsigned tier, int crash);
/* Items for n members whose agents are agent(ctx, i): one per agent, in the
 * order the members first name them, each with room for its own members only;
 * ret_item[i] is member i's item, to item_add_member to. -ENOENT with *ret_bad
 * the first member whose agent is not configured. */
int items_by_agent(struct engine *e, size_t n, const char *(*agent)(const void *ctx, size_t i), const void *ctx,
                   struct items *ret, size_t *ret_item, size_t *ret_bad);

/* Returns how many of the items' agents have no connection, each with it->err
 * saying why. The first few without one are probed (a refused connect or
 * certificate fails at once, unreachable within 1 s); one that answers the
 * probe, or is not probed, gets up to 3 s (the step's deadline if shorter) to
 * connect. Before a cut's FREEZE: an agent that is not connected would only
 * time it out while the others hold their guests frozen. */
size_t engine_reach(struct engine *e, struct item *items, size_t n);

struct agentlink *engine_link_of(struct engine *e, const char *agent);
/* The index of agent in e->links, -1 when it is not configured. */
long engine_link_index(const struct engine *e, const char *agent);
int engine_step_ms(const struct engine *e);

/* Sends every item's command at once and collects verified replies; every
 * item without one has err set. Each send and answer gets an audit row in the
 * item (it->aud), for engine_record_items to write. */
void engine_fan_out(struct item *items, size_t n, int timeout_ms);

/* Writes the item's pending audit rows (keep 0: drops them) and empties them. */
void engine_write_audit(struct engine *e, struct item *it, int keep);
/* Writes what the items hold for the catalog, in one SQLite transaction: their
 * audit rows, then (g set) the replies of deferred rounds and the last one's,
 * and the members of an agent that gave no answer as pending. */
void engine_record_items(struct engine *e, const char *txid, struct item *items, size_t n,
                         const struct cfg_group *g);

/* For an agent that gave no answer (yet), its members as pending with the
 * reason (it->err). */
void engine_record_silence(struct engine *e, const char *txid, const struct item *it);

/* One step run on every agent at once: fill builds each item's payload after
 * item_step, then the step fans out, each answer is recorded in the catalog
 * (g set: replies with g's tiers; pending set: silent agents' members as
 * pending) and said (say, why NULL for a yes), and the votes are counted. */
struct round {
        struct engine *e;
        const char *txid;
        Lockstep__Step step;
        int timeout_ms;
        const struct cfg_group *g;
        int pending;
        /* Nothing is written to the catalog by the round: its records wait in
         * the items for engine_record_items (a cut's frozen window). */
        int defer;
        void (*fill)(struct item *it, const void *ctx);
        void (*say)(const struct round *rd, const struct item *it, const char *why);
        /* Set: an item it says yes to sits the round out (sends nothing, its
         * last answer stands: a FREEZE round of a tier it has no member in). */
        int (*skip)(const struct item *it, const void *ctx);
        const void *ctx; /* for fill, say and skip */
        const struct progress *p;
        char reason[ENGINE_REASON_MAX]; /* out: the last agent's why not */
};

/* Returns 1 when every agent said yes, 0 when not (rd->reason says why). */
int engine_round(struct round *rd, struct item *items, size_t n);

/* Before rd's step, a transaction's first: 1 when every item's agent has a
 * connection (engine_reach). Else 0 and nothing may be sent: every item is
 * marked unsent (nothing to tell it either), each one without a connection is
 * said (the first only, past ENGINE_SAY_MAX agents), rd->reason is the first
 * one's why, and the other items' err say what they were not sent for. */
int engine_reach_all(struct round *rd, struct item *items, size_t n);

/* Logs *t as begun (txid made here unless set, start time now, members those
 * of its) before anything is sent: from here on a crash is presumed abort.
 * ret_txid gets the txid once it is logged. */
int engine_begin(struct engine *e, struct cat_txn *t, const struct items *its, char ret_txid[65], lserr *err);
void engine_make_txid(char out[65]);
/* A txid is drawn without asking the catalog first (on etcd that is a round
 * trip per cut). Its random part is 24 bits, so two of the same second
 * collide about once in 200,000 transactions (a soak of 100,000 cuts and
 * prunes met one): the begin refuses a taken one (-EEXIST) and it is drawn
 * again, up to this many times. */
#define ENGINE_TXID_DRAWS 16

/* engine_record_items and the decision in one SQLite transaction: one sync to
 * disk after the last thaw instead of two. The decision counts as logged only
 * once that transaction is on disk. */
int engine_record_and_decide(struct engine *e, const char *txid, struct item *items, size_t n,
                             const struct cfg_group *g, int commit, const char *reason, const struct progress *p,
                             lserr *err);
/* Logs the decision durably (before any agent hears it). < 0 when it could
 * not: nothing was decided and recovery tells the agents ABORT. */
int engine_log_decision(struct engine *e, const char *txid, int commit, const char *reason,
                        const struct progress *p, lserr *err);
/* Tells the n agents of links the decision (DECIDE, or REVERT_DECIDE for a
 * revert), retrying those that do not confirm. Returns how many never did.
 * With finish, the transaction is finished once all did, in the batch of
 * the last try's audit rows. */
size_t engine_tell(struct engine *e, const char *txid, struct agentlink *const *links, size_t n, int commit,
                   int revert, int finish, const struct progress *p);
/* engine_tell to the items' agents; finishes the transaction when all
 * confirmed, else says lockstepd keeps retrying. */
void engine_tell_items(struct engine *e, const char *txid, const struct item *items, size_t n, int commit,
                       int revert, const struct progress *p);

/* The group's slot for the members of a configured group or of a recorded
 * transaction; drop it with slots_drop(group). */
int engine_take_slot_cfg(struct engine *e, const struct cfg_group *g, const struct progress *p, lserr *err);
int engine_take_slot_cat(struct engine *e, const char *group, const struct cat_member *m, size_t n,
                         const struct progress *p, lserr *err);

/* One item per agent of a recorded transaction's members (crash consistency
 * from g, which may be NULL). The members point into *ret_m, which must
 * outlive the items. */
int engine_items_of(struct engine *e, const char *txid, const struct cfg_group *g, struct cat_member **ret_m,
                    size_t *ret_nm, struct items *ret, lserr *err);
/* Gives each item its members' images of cut txid from the catalog. The
 * payload points into *ret_im, the caller's. */
int engine_attach_cut_images(struct engine *e, const char *txid, struct items *its, struct cat_image **ret_im,
                             lserr *err);

/* An undo committed: the branch revert id kept is the live chain again. */
void engine_mark_undone(struct engine *e, const char *id);
