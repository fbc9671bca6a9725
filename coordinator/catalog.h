/* catalog: the coordinator's durable state in SQLite (WAL, synchronous=FULL,
 * versioned schema with migrations): agents, groups, cuts (snapshots) with their
 * members, images and timings, the transaction/decision log, and an audit of
 * every command sent and every reply. One connection per struct catalog; the
 * functions are thread-safe (one mutex around the connection). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "lserr.h"

#define CAT_SCHEMA_VERSION 6

struct catalog;

/* Opens (creating and migrating as needed) the catalog file. A file whose
 * schema is newer than this program is refused. */
int cat_open(const char *path, struct catalog **ret, lserr *err);
struct catalog *cat_close(struct catalog *c);

/* Groups this thread's single-row writes that follow (cat_put_member,
 * cat_put_image, cat_audit_add, cat_agent_put, cat_txn_decide,
 * cat_txn_finish: each one statement) into one SQLite transaction:
 * one sync to disk instead of one per row. Other threads' catalog calls wait
 * until cat_batch_end, so a batch holds records already in memory, never a
 * network round. A row that fails is reported by its own call; the others stay. */
int cat_batch_begin(struct catalog *c, lserr *err);
/* Commits the batch and lets other threads in again; always ends it. */
int cat_batch_end(struct catalog *c, lserr *err);

/* High availability (an etcd catalog): from now on every write holds only
 * while etcd's key leader_key has create revision epoch (this lockstepd still
 * leads); a write that does not fails with -ESTALE and changes nothing. A
 * no-op for an SQLite catalog, which has one writer. */
int cat_set_fence(struct catalog *c, const char *leader_key, uint64_t epoch, lserr *err);

/* ---- transactions (the decision log) ---------------------------------- */

enum cat_txn_state {
        CAT_TXN_STARTED,   /* logged before anything is sent */
        CAT_TXN_COMMIT,    /* decision logged: commit */
        CAT_TXN_ABORT,     /* decision logged: abort */
        CAT_TXN_DONE,      /* every agent acknowledged the decision */
};

enum cat_kind {
        CAT_KIND_SNAPSHOT, /* a cut */
        CAT_KIND_REVERT,
        CAT_KIND_DELETE,
};

struct cat_txn {
        char txid[65];
        enum cat_kind kind;
        char group[65];
        char name[65];        /* snapshot name (overlay file suffix) */
        char mode[16];        /* quiesce, pause, memory */
        enum cat_txn_state state;
        int committed;        /* for DONE: which decision it was */
        char reason[512];     /* why it aborted, "" otherwise */
        long long started_us, decided_us, finished_us;
        unsigned lease_ms;
        char cut_status[16];         /* snapshots: "", "deleted", "delete-failed" */
        char cut_status_reason[512];
        char branch_status[16];      /* reverts: "" (kept), "undone", "deleted", "delete-failed" */
        char branch_reason[512];
        unsigned members;            /* the members it was begun for: at least as many as its
                                      * member rows (0 when begun before schema 6 counted them) */
};

/* Logs a new transaction in state STARTED, durably, before any agent hears of it. */
int cat_txn_begin(struct catalog *c, const struct cat_txn *t, lserr *err);

/* Logs the decision durably (fsync'd by SQLite before this returns). Allowed
 * only from STARTED; deciding again the same way is a no-op, the other way is
 * refused with -EBUSY. */
int cat_txn_decide(struct catalog *c, const char *txid, int commit, const char *reason, lserr *err);

/* Marks a decided transaction DONE (every agent answered the decision). */
int cat_txn_finish(struct catalog *c, const char *txid, lserr *err);

/* -ENOENT when unknown. */
int cat_txn_get(struct catalog *c, const char *txid, struct cat_txn *ret, lserr *err);

/* Transactions not DONE, oldest first. *ret is malloc'd, the caller's. */
int cat_txn_unresolved(struct catalog *c, struct cat_txn **ret, size_t *ret_n, lserr *err);

/* ---- cut contents ---------------------------------------------------------- */

/* cat_member.code of a member whose agent has not answered (yet). */
#define CAT_PENDING (-1)

/* A member's message's (an audit row's detail's) bytes with its NUL, at most, as kept. */
#define CAT_MESSAGE_MAX 600
#define CAT_DETAIL_MAX 600

/* A path's bytes with its NUL, at most. */
#define CAT_PATH_MAX 1024

struct cat_member {
        char agent[65];
        char vm[65];
        unsigned tier;
        char tier_name[65];
        int code;             /* Lockstep__ErrorCode of its last step, or CAT_PENDING */
        /* By pointer, as struct cat_image's paths (NULL: ""); kept cut to
         * CAT_MESSAGE_MAX - 1 bytes on a UTF-8 boundary. */
        const char *message;
        uint64_t freeze_us, snapshot_us, thaw_us, frozen_for_us;
        long long frozen_at_us, thawed_at_us;
};


struct cat_image {
        char agent[65];
        char vm[65];
        char disk[32];
        /* Paths by pointer: a writer's own strings (NULL: ""); in a list read
         * from the catalog, the list's block (one free: cat_images). */
        const char *before;   /* the cut's image */
        const char *after;    /* overlay the domain ran on after the cut */
};

/* Records (insert or replace by txid+agent+vm) one member's outcome. */
int cat_put_member(struct catalog *c, const char *txid, const struct cat_member *m, lserr *err);
/* Records (insert or replace by txid+agent+vm+disk) one disk image. */
int cat_put_image(struct catalog *c, const char *txid, const struct cat_image *im, lserr *err);

int cat_members(struct catalog *c, const char *txid, struct cat_member **ret, size_t *ret_n, lserr *err);
int cat_images(struct catalog *c, const char *txid, struct cat_image **ret, size_t *ret_n, lserr *err);

/* How many committed reverts (and undos) that started after since_us hold a
 * VM of cut_txid (any group: groups may share VMs); the newest one's txid in
 * ret_txid ("" when none). The cut's layers of that VM are then in the chain
 * the revert kept as a pre-revert branch (and its overlay may sit on them):
 * changing them would change that branch. */
int cat_reverts_since(struct catalog *c, const char *cut_txid, long long since_us, char ret_txid[65], lserr *err);

/* Records what became of a cut: "" (kept), "deleted", "delete-failed" (with
 * the reason). -ENOENT when txid is not a cut. */
int cat_cut_set_status(struct catalog *c, const char *txid, const char *status, const char *reason, lserr *err);

/* Records what became of a revert's pre-revert branch: "" (kept), "undone"
 * (an undo put the VMs back on it), "deleted", "delete-failed". Only a kept
 * (or delete-failed) branch pins the cuts older than the revert. -ENOENT when
 * txid is not a revert. */
int cat_branch_set_status(struct catalog *c, const char *txid, const char *status, const char *reason, lserr *err);

/* The cuts (not deleted) one of whose images is file path of agent/vm. *ret
 * (65 bytes each, malloc'd) is the caller's. */
int cat_cuts_on_image(struct catalog *c, const char *agent, const char *vm, const char *path, char (**ret)[65],
                      size_t *ret_n, lserr *err);

/* The committed reverts (not undos) to cut_txid, newest first. *ret (65 bytes
 * each, malloc'd) is the caller's. */
int cat_reverts_to(struct catalog *c, const char *cut_txid, char (**ret)[65], size_t *ret_n, lserr *err);

/* How many cuts other than except_txid, not deleted, hold file path of
 * agent/vm as an image. */
int cat_image_users(struct catalog *c, const char *agent, const char *vm, const char *path, const char *except_txid,
                    lserr *err);

/* After a delete merged layer old_path into new_path on agent/vm: every cut
 * image recorded as old_path is now new_path (same content). */
int cat_image_repath(struct catalog *c, const char *agent, const char *vm, const char *old_path, const char *new_path,
                     lserr *err);

/* Cuts (transactions of kind SNAPSHOT) and reverts (their pre-revert branches),
 * newest first; group NULL = all. */
int cat_cuts(struct catalog *c, const char *group, struct cat_txn **ret, size_t *ret_n, lserr *err);

/* ---- agents ---------------------------------------------------------------- */

struct cat_agent {
        char id[65];
        char url[512];
        char fingerprint[24];
        char version[32];
        int reachable;
        char last_error[512];
        long long last_seen_us;   /* last verified reply, 0 = never */
        long long checked_us;     /* last health check */
        unsigned in_doubt;        /* transactions the agent reports in doubt */
};

/* Insert or replace by id. */
int cat_agent_put(struct catalog *c, const struct cat_agent *a, lserr *err);
int cat_agents(struct catalog *c, struct cat_agent **ret, size_t *ret_n, lserr *err);

/* ---- groups (as configured, recorded for history) ----------------------------- */

/* Records the group and its member list as "vm@agent" strings; replaces. */
int cat_group_put(struct catalog *c, const char *name, const char *mode, const char *const *members, size_t n,
                  lserr *err);

/* ---- audit ----------------------------------------------------------------- */

enum cat_dir {
        CAT_SENT,
        CAT_RECEIVED,
        CAT_IGNORED,   /* a reply refused: bad signature, wrong agent/txid... */
        CAT_CONTROL,   /* a request on the control socket: step is its command */
};

struct cat_audit {
        long long at_us;
        char txid[65];
        char agent[65];
        char step[32];
        enum cat_dir dir;
        int code;             /* reply code, or lserr code for CAT_IGNORED */
        /* By pointer, as struct cat_image's paths (NULL: ""); kept cut to
         * CAT_DETAIL_MAX - 1 bytes on a UTF-8 boundary. */
        const char *detail;
        char hash_hex[65];    /* command hash */
        int has_peer;         /* the control socket's peer is known (CAT_CONTROL) */
        long long peer_uid;   /* ... its uid and pid, from the kernel (SO_PEERCRED) */
        long long peer_pid;   /* -1 when the kernel gave no pid */
};

int cat_audit_add(struct catalog *c, const struct cat_audit *a, lserr *err);
/* Audit rows of one transaction ("" = all), oldest first, at most limit. */
int cat_audit_list(struct catalog *c, const char *txid, size_t limit, struct cat_audit **ret, size_t *ret_n,
                   lserr *err);
/* The newest limit audit rows of all transactions, oldest first. */
int cat_audit_recent(struct catalog *c, size_t limit, struct cat_audit **ret, size_t *ret_n, lserr *err);

/* A transaction and what it holds, as one cut's report shows it: read at
 * once (on etcd, one request when it is small). The arrays are the caller's
 * (cat_cut_free). */
struct cat_cut {
        struct cat_txn t;
        struct cat_member *m; /* as cat_members */
        struct cat_image *im; /* as cat_images */
        struct cat_audit *au; /* as cat_audit_list, at most audit_limit; none when they cannot be read */
        size_t nm, ni, na;
};
/* 0, or < 0 as cat_txn_get (and cat_members, cat_images) fail; *ret is
 * empty on failure. */
int cat_cut_read(struct catalog *c, const char *txid, size_t audit_limit, struct cat_cut *ret, lserr *err);
void cat_cut_free(struct cat_cut *c);

/* ---- events and schedules ------------------------------------------------- */

/* One line of the daemon's event log (cuts, schedules, prunes, reloads). */
struct cat_event {
        long long id;       /* assigned by cat_event_add */
        long long at_us;    /* 0: now */
        char kind[32];      /* "cut", "schedule", "prune", "reload", ... */
        char group[65];     /* "" when none */
        char txid[65];      /* "" when none */
        char message[600];
};

int cat_event_add(struct catalog *c, const struct cat_event *ev, long long *ret_id, lserr *err);
/* Events with id > after_id, oldest first, at most limit; newest != 0 gives
 * the last `limit` of them instead of the first. *ret is the caller's. */
int cat_events(struct catalog *c, long long after_id, size_t limit, int newest, struct cat_event **ret,
               size_t *ret_n, lserr *err);

/* Keeps the newest transactions that are only history (deletes, aborted or
 * deleted cuts, aborted, undone or deleted reverts), with their members,
 * images and audit, as long as there are at most keep_txns of them and their
 * members (struct cat_txn's members) add up to at most keep_members; removes
 * older ones. Live ones (committed cuts, kept branches, anything unresolved)
 * are never touched. Then keeps the newest keep_audit audit rows. Returns how
 * many transactions went. */
int cat_history_trim(struct catalog *c, long long keep_txns, long long keep_members, long long keep_audit,
                     lserr *err);

/* Keeps the newest `keep` events; returns how many went. */
int cat_events_trim(struct catalog *c, long long keep, lserr *err);

/* A schedule's last run, kept across restarts. */
struct cat_sched {
        char group[65];
        long long last_due_s;  /* the due time (Unix s) of the last run or skip */
        long long last_run_us; /* when it started, 0 if skipped */
        char outcome[32];      /* committed, aborted, skipped, failed */
        char txid[65];
        char reason[600];
        unsigned runs, skipped;
};

/* -ENOENT (err untouched) when the group never ran on a schedule. */
int cat_sched_get(struct catalog *c, const char *group, struct cat_sched *ret, lserr *err);
int cat_sched_put(struct catalog *c, const struct cat_sched *s, lserr *err);
