/* daemon: lockstepd's shared state and the functions its parts call on each
 * other: ops.c (long operations the CLI follows), service.c (schedules, reload,
 * metrics), control.c (the control socket), lockstepd.c (main). */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "catalog.h"
#include "coord_config.h"
#include "counter.h"
#include "engine.h"
#include "forward.h"
#include "ha.h"
#include "keys.h"
#include "lockstep.pb-c.h"
#include "lserr.h"
#include "metrics.h"
#include "names.h"
#include "schedule.h"
#include "slots.h"

#define MAX_OPS 64
/* Entries of the table the scheduler leaves to the operator: a fleet whose
 * schedules wait for room still takes a `lockstep snapshot create`. */
#define OPS_KEPT_FOR_REQUESTS 8
#define MAX_EVENTS 4096
#define EVENTS_PAGE 500
/* op.poll waits this long for news of its op before it answers. */
#define OPS_POLL_WAIT_MS 1000

/* A long operation the CLI follows by polling. */
struct op {
        char id[24];
        int is_delete;            /* snapshot.delete of cut `target` */
        int is_revert, undo;      /* snapshot.revert to `target` */
        int is_prune;             /* prune of `group` */
        int scheduled;            /* a scheduled cut of `group`, due at due_s */
        long long due_s, started_us;
        char target[65];
        char group[LS_NAME_MAX + 1];
        char name[LS_NAME_MAX + 1];
        int mode;
        unsigned lease_s;
        char txid[65];
        char **events;
        size_t n_events;
        int done, exit_code;
        char *text, *json, *error;
        /* The renderings its result is made in (REPORT_TEXT, REPORT_JSON): the
         * one its CLI asked for, none for a scheduled cut (a 10,000-member
         * report costs as much as the cut's catalog writes). op.poll renders
         * another from the catalog when asked. */
        unsigned want;
        pthread_t thread;
        int started;           /* thread created: join it */
        int pollers;           /* op.poll calls waiting on it: not to be replaced */
        unsigned seq;          /* launch order, to replace the oldest finished op */
        long long done_mono_us; /* when it finished (opkeep: how long its result stays) */
        size_t bytes;           /* its result's size, once done */
};

/* One configuration and the engine built on it. An operation holds a
 * reference for its whole run, so a reload puts a new one in place at once and
 * the old one goes when the last operation on it ends. */
struct gen {
        struct cfg_coord *cfg;
        struct engine *eng;
        unsigned refs;
        int retired; /* replaced by a reload: freed at its last put */
};

struct daemon {
        const char *cfg_path;
        /* The current configuration and engine. Short users (control
         * requests, the scheduler tick, the health check) read cfg and eng
         * holding gen for reading; a reload swaps them holding it for writing.
         * Operations, which run long, hold a reference on cur instead. */
        pthread_rwlock_t gen;
        struct gen *cur;
        struct cfg_coord *cfg; /* == cur->cfg */
        struct engine *eng;    /* == cur->eng */
        struct cfg_coord *pending_cfg; /* a validated reload waiting for running ops */
        struct engine *pending_eng;
        struct catalog *cat;
        struct ha *ha; /* high availability (cfg->ha); NULL: this lockstepd alone */
        struct forward *fwd; /* the link to the other lockstepd (ha.listen); NULL: none */
        struct keys_secret *key;
        struct counter *ctr; /* outlive reloads, shared by every engine */
        struct slots *slots;
        struct metrics *metrics;
        char metrics_url[256]; /* where it serves now, "" when off */
        struct schedule *sched; /* one per scheduled group; under lock */
        size_t n_sched;
        pthread_mutex_t lock; /* ops, sched, pending */
        pthread_mutex_t sched_rows; /* read-modify-write of a catalog schedule row */
        pthread_cond_t op_changed; /* an op has a new event or is done */
        struct op *ops[MAX_OPS];
        unsigned next_op;
        int stop;
        int recovered; /* the recovery at start is done (stop_lock, stop_cond) */
        pthread_mutex_t stop_lock;
        pthread_cond_t stop_cond;
};

/* The one daemon of this process, for callbacks that only get their op. */
extern struct daemon *daemon_self;

/* ---- ops.c ---- */

/* A reference on the current configuration and engine (ops_gen_put ends it). */
struct gen *ops_gen_get(struct daemon *d);
void ops_gen_put(struct daemon *d, struct gen *g);
/* Frees a configuration and engine nobody uses. */
void ops_gen_free(struct gen *g);

/* One line in the catalog's event log (lockstep events) and in the log. */
/* Trims what grows with the catalog's age to cfg's bounds: the event log
 * (events_keep), the history of ended transactions (history_keep) and the
 * audit (audit_keep). Failures are logged. */
void ops_trim_catalog(struct daemon *d, const struct cfg_coord *cfg);

void ops_event(struct daemon *d, const char *kind, const char *group, const char *txid, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
/* An engine progress line for the op given as arg. */
void ops_progress(void *arg, const char *line);

typedef int (*ops_render_fn)(struct daemon *d, const void *a, int as_json, FILE *f, lserr *err);
/* fn's output as a malloc'd string (the caller's), NULL on failure. */
char *ops_render(ops_render_fn fn, struct daemon *d, const void *a, int as_json, lserr *err);
int ops_r_cut(struct daemon *d, const void *a, int j, FILE *f, lserr *err);
int ops_r_cuts(struct daemon *d, const void *a, int j, FILE *f, lserr *err);
int ops_r_agents(struct daemon *d, const void *a, int j, FILE *f, lserr *err);
int ops_r_groups(struct daemon *d, const void *a, int j, FILE *f, lserr *err);

/* Starts op in its own thread; the daemon owns it from here on, also on
 * failure. ret_id (may be NULL) gets its id for op.poll. */
int ops_launch(struct daemon *d, struct op *op, char ret_id[24], lserr *err);
/* Joins and frees a finished op. */
void ops_free(struct op *op);
/* Whether an operation of the group is running (or waits for its slot). */
int ops_group_running(struct daemon *d, const char *group);
/* Whether a scheduled run may start now: more than OPS_KEPT_FOR_REQUESTS
 * entries of the table are free (a hint: a request may take one first). */
int ops_room(struct daemon *d);
/* Whether this lockstepd has the op of that id (a follower forwards a poll of
 * one it does not have: it runs on the leader). */
int ops_known(struct daemon *d, const char *id);
/* op.poll: events from q->from on, and the result once done. */
/* The renderings a control request asks for: its format= option ("text",
 * "json"), both when it has none (a CLI from before it). */
unsigned control_want(const Lockstep__ControlRequest *q);
int ops_poll(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep, char ***strs,
             size_t *n_strs);

/* ---- service.c ---- */

/* Scheduling time: the real clock, or (builds with failpoints) LOCKSTEP_CLOCK_FILE's for tests. */
long long service_now_s(void);
/* Plans every scheduled group of cfg; replaces d->sched. Caller holds gen. */
void service_sched_build(struct daemon *d, const struct cfg_coord *cfg);
void service_groups_to_catalog(struct daemon *d, const struct cfg_coord *cfg);
/* Serves /metrics where the configuration says, moving it on a reload. */
void service_metrics_apply(struct daemon *d);
/* 1 when a validated reload is in place (or none waits), 0 while ops still use the old. */
int service_apply_pending(struct daemon *d);
/* Reads and checks the configuration again: refused (running one stays) or
 * applied within wait_ms, or once the running operations finish. */
int service_reload(struct daemon *d, int wait_ms, int *ret_applied, lserr *err);
/* The scheduler thread. */
void *service_sched_main(void *p);
int service_r_schedules(struct daemon *d, const void *a, int j, FILE *f, lserr *err);

/* ---- control.c ---- */

/* The control socket's handler (transport_serve). */
int control_handle(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len);
/* One control request (NULL: its bytes did not unpack) from who, arg the
 * daemon: what control_handle runs, and the leader's handler of forwards (a
 * forward_handle_fn). A follower hands what only the leader may do to it
 * (d->fwd), unless who->via says it was forwarded already. *ret is a packed
 * ControlReply, malloc'd, the caller's. */
int control_request(void *arg, const Lockstep__ControlRequest *q, const struct forward_caller *who, uint8_t **ret,
                    size_t *ret_len);
