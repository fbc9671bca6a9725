/* engine: the coordinator's side of the snapshot protocol. It logs every
 * transaction before sending anything, fans each step out to all agents of the
 * group at once, counts an answer only when it verifies, logs the decision
 * durably before any agent hears it, and finishes whatever a crash left
 * unresolved (presumed abort). */
#pragma once

#include <stddef.h>

#include "agentlink.h"
#include "catalog.h"
#include "counter.h"
#include "coord_config.h"
#include "keys.h"
#include "lserr.h"
#include "slots.h"

struct engine;

/* Borrows cfg, key, cat, the command counter and the slots (fleet limits);
 * they must outlive the engine. The counter and slots are the daemon's, so
 * that an engine rebuilt on a config reload goes on where the last one was.
 * Opens one link per configured agent. */
int engine_new(const struct cfg_coord *cfg, const struct keys_secret *key, struct catalog *cat, struct counter *ctr,
               struct slots *slots, struct engine **ret, lserr *err);
/* High availability: every command of e's links carries the fence's epoch,
 * and none is sent while it says we do not lead (agentlink_set_fence). f is
 * borrowed and outlives e. */
void engine_set_fence(struct engine *e, const struct agentlink_fence *f);
struct engine *engine_free(struct engine *e);
/* lockstepd stops: every engine's calls in flight end now and none is retried
 * (the catalog keeps what is undone for recovery). Once, for good. */
void engine_stop_all(void);

/* Progress, one line per event (step and agent), for a live display. */
typedef void (*engine_event_fn)(void *arg, const char *line);

struct engine_cut_req {
        const char *group;
        const char *name; /* NULL: the txid */
        int mode;         /* enum cfg_mode, or -1 for the group's */
        unsigned lease_s; /* 0: the group's */
};

/* Takes one cut of a group. ret_txid gets its id as soon as it is logged.
 * Returns 0 when committed, 1 when aborted (reasons in the catalog), < 0 when
 * it could not start (unknown group, a cut of it already running...). */
int engine_snapshot(struct engine *e, const struct engine_cut_req *req, engine_event_fn ev, void *arg,
                    char ret_txid[65], lserr *err);

/* One member's preflight result. */
struct engine_check_member {
        char vm[65], agent[65];
        int ok;
        char code[32];     /* OK, E_NO_GUEST_AGENT..., UNREACHABLE, WRONG_KEY, CLOCK, E_REJECTED */
        char message[700]; /* why not, naming VM, host and step; for an OK one, a clock far off */
        int clock_known;   /* the agent's signed answer carried its clock: */
        long long clock_offset_ms; /* how far ahead of ours (< 0: behind) */
};

/* Runs FREEZE's validation on every member of a group without freezing
 * anything (CHECK, to every agent at once): the files a cut would create,
 * formats, free space, guest agents, members busy in another transaction, the
 * lease against each agent's lease_max, and that every agent answers and
 * trusts our key. *ret (one per member, malloc'd, the caller's) is set unless
 * < 0. Returns 0 when a cut would be accepted, 1 when not, < 0 when the check
 * could not run (unknown group). mode -1 and lease_s 0 mean the group's. */
int engine_check(struct engine *e, const char *group, int mode, unsigned lease_s, struct engine_check_member **ret,
                 size_t *ret_n, lserr *err);

/* Deletes a committed cut: every member's overlay of it is merged into its
 * backing image while the VMs run. All members or the cut is marked
 * delete-failed with the reason; deleting again finishes it. Returns 0 when
 * deleted, 1 when not (reasons in the catalog), < 0 when it could not start. */
int engine_delete(struct engine *e, const char *cut_txid, engine_event_fn ev, void *arg, char ret_txid[65],
                  lserr *err);

/* Puts a group back on a committed cut (undo: back on the pre-revert branch
 * that revert `id` kept), all-or-nothing across hosts: PREPARE everywhere
 * (images there and sound, nothing touched on failure), STOP front tiers
 * first, SWITCH, START back tiers first (each tier once the previous one's
 * guest agents answer), then the decision. A failure before it is decided puts
 * every member back on its pre-revert branch. Returns 0 when reverted, 1 when
 * not, < 0 when it could not start. */
int engine_revert(struct engine *e, const char *id, int undo, engine_event_fn ev, void *arg, char ret_txid[65],
                  lserr *err);

/* Finishes every unresolved transaction: no decision -> abort; decided but not
 * acknowledged by every agent -> the decision is sent again. Then asks every
 * agent for its in-doubt transactions and settles those too. *ret_left counts
 * what could not be finished now (agent unreachable). */
int engine_recover(struct engine *e, engine_event_fn ev, void *arg, unsigned *ret_left, lserr *err);

/* Asks every agent for its status at once and records it in the catalog. */
int engine_poll_agents(struct engine *e, lserr *err);
/* The health thread's pass: one status poll of every agent, recorded, then
 * engine_recover with the in-doubt lists of that same poll. */
int engine_health(struct engine *e, unsigned *ret_left, lserr *err);
