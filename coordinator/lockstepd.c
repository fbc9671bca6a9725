/* lockstepd: the coordinator daemon. Runs in the foreground, finishes what a
 * previous run left unresolved, serves the CLI on its control socket, takes cuts
 * (asked for and scheduled), prunes by retention, polls agents' health and
 * reloads its configuration on SIGHUP. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "counter.h"
#include "engine.h"
#include "envelope.h"
#include "fsutil.h"
#include "keys.h"
#include "lockstep.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "prune.h"
#include "report.h"
#include "schedule.h"
#include "slots.h"
#include "transport.h"

#define MAX_OPS 64
#define MAX_EVENTS 4096
#define HEALTH_INTERVAL_S 10
#define CONTROL_MAX (256 * 1024)
#define EVENTS_PAGE 500

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
        pthread_t thread;
};

struct daemon {
        const char *cfg_path;
        /* cfg and eng are replaced by a reload: whoever uses them holds gen
         * for reading; the reload swaps them holding it for writing. */
        pthread_rwlock_t gen;
        struct cfg_coord *cfg;
        struct engine *eng;
        struct cfg_coord *pending_cfg; /* a validated reload waiting for running ops */
        struct engine *pending_eng;
        struct catalog *cat;
        struct keys_secret *key;
        struct counter *ctr; /* outlive reloads, shared by every engine */
        struct slots *slots;
        struct metrics *metrics;
        char metrics_url[256]; /* where it serves now, "" when off */
        struct schedule *sched; /* one per scheduled group; under lock */
        size_t n_sched;
        pthread_mutex_t lock; /* ops, sched, pending */
        pthread_cond_t op_changed; /* an op has a new event or is done */
        struct op *ops[MAX_OPS];
        unsigned next_op;
        int stop;
        pthread_mutex_t stop_lock;
        pthread_cond_t stop_cond;
};

/* The one daemon of this process, for callbacks that only get their op. */
static struct daemon *the_daemon;

/* Scheduling time. LOCKSTEP_CLOCK_FILE names a file holding Unix seconds that
 * a test moves forward; without it, the real clock. */
static long long clock_now_s(void)
{
        const char *path = getenv("LOCKSTEP_CLOCK_FILE");
        FILE *f;
        long long t = 0;

        if (!path || !*path)
                return (long long)time(NULL);
        f = fopen(path, "re");
        if (!f || fscanf(f, "%lld", &t) != 1)
                t = (long long)time(NULL);
        if (f)
                fclose(f);
        return t;
}

static void event(struct daemon *d, const char *kind, const char *group, const char *txid, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* One line in the catalog's event log (lockstep events) and in the log. */
static void event(struct daemon *d, const char *kind, const char *group, const char *txid, const char *fmt, ...)
{
        struct cat_event ev = {0};
        lserr err = {0};
        va_list ap;

        snprintf(ev.kind, sizeof(ev.kind), "%s", kind);
        snprintf(ev.group, sizeof(ev.group), "%s", group ? group : "");
        snprintf(ev.txid, sizeof(ev.txid), "%s", txid ? txid : "");
        va_start(ap, fmt);
        vsnprintf(ev.message, sizeof(ev.message), fmt, ap);
        va_end(ap);
        log_info("event=%s group=%s txid=%s %s", kind, ev.group[0] ? ev.group : "-", ev.txid[0] ? ev.txid : "-",
                 ev.message);
        if (cat_event_add(d->cat, &ev, NULL, &err) < 0)
                log_err("%s", err.msg);
}

static void op_event(void *arg, const char *line)
{
        struct op *op = arg;
        char *copy = strdup(line);

        pthread_mutex_lock(&the_daemon->lock);
        if (copy && op->n_events < MAX_EVENTS) {
                char **ne = realloc(op->events, (op->n_events + 1) * sizeof(*ne));
                if (ne) {
                        op->events = ne;
                        op->events[op->n_events++] = copy;
                        copy = NULL;
                }
        }
        pthread_cond_broadcast(&the_daemon->op_changed);
        pthread_mutex_unlock(&the_daemon->lock);
        free(copy);
}

/* Renders into a malloc'd string. */
static char *render(int (*fn)(struct daemon *, const void *, int, FILE *, lserr *), struct daemon *d, const void *a,
                    int as_json, lserr *err)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return NULL;
        if (fn(d, a, as_json, f, err) < 0) {
                fclose(f);
                free(buf);
                return NULL;
        }
        fclose(f);
        return buf;
}

static int r_cut(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        return report_cut(d->cat, a, j, f, err);
}

static int r_cuts(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        return report_cuts(d->cat, a, j, f, err);
}

static int r_agents(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        (void)a;
        return report_agents(d->cat, j, f, err);
}

static int r_groups(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        (void)a;
        (void)err;
        return report_groups(d->cfg, j, f);
}

/* After a scheduled cut: its schedule's record, and retention. */
static void after_scheduled(struct daemon *d, struct op *op, int r, const char *txid, const char *why)
{
        const struct cfg_group *g = cfg_coord_group(d->cfg, op->group);
        struct cat_sched cs = {0};
        lserr err = {0};

        if (cat_sched_get(d->cat, op->group, &cs, &err) < 0)
                snprintf(cs.group, sizeof(cs.group), "%s", op->group);
        /* A run skipped while this one ran is later than it: keep the latest. */
        if (op->due_s > cs.last_due_s)
                cs.last_due_s = op->due_s;
        cs.last_run_us = op->started_us;
        snprintf(cs.outcome, sizeof(cs.outcome), "%s", r == 0 ? "committed" : r == 1 ? "aborted" : "failed");
        snprintf(cs.txid, sizeof(cs.txid), "%s", txid);
        snprintf(cs.reason, sizeof(cs.reason), "%s", why);
        cs.runs++;
        if (cat_sched_put(d->cat, &cs, &err) < 0)
                log_err("%s", err.msg);
        event(d, "schedule", op->group, txid, "scheduled cut %s%s%s", cs.outcome, why[0] ? ": " : "", why);
        if (r != 0 || !g || (!g->retention.keep_last && !g->retention.hourly && !g->retention.daily &&
                             !g->retention.weekly && !g->retention.monthly))
                return;
        struct prune_item *items = NULL;
        size_t n = 0, failed;
        if (prune_plan(d->cat, g, &items, &n, &err) < 0) {
                event(d, "prune", op->group, "", "retention not applied: %s", err.msg);
                return;
        }
        failed = prune_run(d->eng, items, n, op_event, op);
        for (size_t i = 0; i < n; i++)
                if (!items[i].keep)
                        event(d, "prune", op->group, items[i].txid, "%s (%s)%s%s",
                              items[i].done ? "removed" : "NOT removed", items[i].why, items[i].error[0] ? ": " : "",
                              items[i].error);
        if (failed)
                log_warn("group %s: retention: %zu cut(s) could not be deleted", op->group, failed);
        free(items);
}

static void *op_main(void *p)
{
        struct op *op = p;
        struct daemon *d = the_daemon;
        struct engine_cut_req req = {.group = op->group, .name = op->name[0] ? op->name : NULL, .mode = op->mode,
                                     .lease_s = op->lease_s};
        char txid[65] = "";
        lserr err = {0};
        char *text = NULL, *json = NULL, *error = NULL;
        int r;

        pthread_rwlock_rdlock(&d->gen);
        op->started_us = fsutil_now_us();
        if (op->is_prune) {
                const struct cfg_group *g = cfg_coord_group(d->cfg, op->group);
                struct prune_item *items = NULL;
                size_t n = 0;
                r = !g ? lserr_set(&err, -ENOENT, "group \"%s\" is not in the configuration", op->group)
                       : prune_plan(d->cat, g, &items, &n, &err);
                if (r == 0) {
                        r = prune_run(d->eng, items, n, op_event, op) ? 1 : 0;
                        for (size_t i = 0; i < n; i++)
                                if (!items[i].keep)
                                        event(d, "prune", op->group, items[i].txid, "%s (%s)%s%s",
                                              items[i].done ? "removed" : "NOT removed", items[i].why,
                                              items[i].error[0] ? ": " : "", items[i].error);
                        size_t tl = 0, jl = 0;
                        FILE *tf = open_memstream(&text, &tl), *jf = open_memstream(&json, &jl);
                        if (tf) {
                                report_prune(op->group, items, n, 0, 0, tf);
                                fclose(tf);
                        }
                        if (jf) {
                                report_prune(op->group, items, n, 0, 1, jf);
                                fclose(jf);
                        }
                }
                free(items);
        } else {
                r = op->is_revert ? engine_revert(d->eng, op->target, op->undo, op_event, op, txid, &err)
                    : op->is_delete ? engine_delete(d->eng, op->target, op_event, op, txid, &err)
                                    : engine_snapshot(d->eng, &req, op_event, op, txid, &err);
                /* A delete's result is the cut it deleted, as it stands now; a
                 * revert's is the revert (its pre-revert branch). */
                const char *shown = op->is_delete ? op->target : txid;
                if (txid[0]) {
                        text = render(r_cut, d, shown, 0, &err);
                        json = render(r_cut, d, shown, 1, &err);
                }
                if (txid[0] && !op->is_delete && !op->is_revert) {
                        struct cat_member *mb = NULL;
                        size_t nm = 0;
                        lserr e2 = {0};
                        if (cat_members(d->cat, txid, &mb, &nm, &e2) == 0)
                                metrics_cut(d->metrics, op->group, r == 0 ? "committed" : r == 1 ? "aborted" : "failed",
                                            mb, nm);
                        free(mb);
                }
                if (txid[0] && !op->is_delete) {
                        struct cat_txn t;
                        lserr e2 = {0};
                        int have = cat_txn_get(d->cat, txid, &t, &e2) == 0;
                        event(d, op->is_revert ? "revert" : "cut", op->group[0] ? op->group : NULL, txid, "%s%s%s",
                              r == 0 ? "committed" : r == 1 ? "aborted" : "failed", have && t.reason[0] ? ": " : "",
                              have ? t.reason : "");
                } else if (op->is_delete) {
                        struct cat_txn t;
                        lserr e2 = {0};
                        int have = cat_txn_get(d->cat, op->target, &t, &e2) == 0;
                        event(d, "delete", have ? t.group : NULL, op->target, "%s%s%s",
                              r == 0 ? "deleted" : "not deleted", r < 0 ? ": " : "",
                              r < 0 ? err.msg : have && r == 1 ? t.cut_status_reason : "");
                }
                if (op->scheduled) {
                        struct cat_txn t;
                        lserr e2 = {0};
                        const char *why = r < 0 ? err.msg : "";
                        if (r == 1 && cat_txn_get(d->cat, txid, &t, &e2) == 0)
                                why = t.reason;
                        after_scheduled(d, op, r, txid, why);
                }
        }
        pthread_rwlock_unlock(&d->gen);
        if (r < 0)
                error = strdup(err.msg);
        pthread_mutex_lock(&d->lock);
        snprintf(op->txid, sizeof(op->txid), "%s", txid);
        op->text = text;
        op->json = json;
        op->error = error;
        op->exit_code = r == 0 ? 0 : r == 1 ? 1 : 2;
        op->done = 1;
        pthread_cond_broadcast(&d->op_changed);
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

static void op_free(struct op *op)
{
        if (!op)
                return;
        pthread_join(op->thread, NULL);
        for (size_t i = 0; i < op->n_events; i++)
                free(op->events[i]);
        free(op->events);
        free(op->text);
        free(op->json);
        free(op->error);
        free(op);
}

static const char *option(const Lockstep__ControlRequest *q, const char *key)
{
        size_t kl = strlen(key);

        for (size_t i = 0; i < q->n_options; i++)
                if (!strncmp(q->options[i], key, kl) && q->options[i][kl] == '=')
                        return q->options[i] + kl + 1;
        return NULL;
}

static void reply_error(Lockstep__ControlReply *rep, int code, const char *msg, char **owned)
{
        rep->exit_code = code;
        *owned = strdup(msg);
        rep->error = *owned ? *owned : (char *)"out of memory";
}

static int launch_reply(struct daemon *d, struct op *op, Lockstep__ControlReply *rep, char **owned);

static int start_snapshot(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                          char **owned)
{
        const char *mode = option(q, "mode"), *lease = option(q, "lease"), *name = option(q, "name");
        int is_delete = !strcmp(q->command, "snapshot.delete"), is_revert = !strcmp(q->command, "snapshot.revert");
        struct op *op;

        if ((is_delete || is_revert) && q->n_args != 1) {
                reply_error(rep, 2, is_delete ? "usage: snapshot delete ID" : "usage: snapshot revert ID [--undo]", owned);
                return 0;
        }
        if (q->n_args != 1) {
                reply_error(rep, 2, "usage: snapshot create GROUP [--name N] [--mode quiesce|pause|memory] [--lease S]",
                            owned);
                return 0;
        }
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->is_delete = is_delete;
        op->is_revert = is_revert;
        op->undo = option(q, "undo") != NULL;
        snprintf(op->target, sizeof(op->target), "%.64s", q->args[0]);
        snprintf(op->group, sizeof(op->group), "%.64s", q->args[0]);
        snprintf(op->name, sizeof(op->name), "%.64s", name ? name : "");
        op->mode = !mode ? -1 : !strcmp(mode, "quiesce") ? CFG_MODE_QUIESCE : !strcmp(mode, "pause") ? CFG_MODE_PAUSE
                                                       : !strcmp(mode, "memory")                     ? CFG_MODE_MEMORY
                                                                                                     : -2;
        op->lease_s = lease ? (unsigned)strtoul(lease, NULL, 10) : 0;
        if (op->mode == -2 || (lease && op->lease_s == 0)) {
                free(op);
                reply_error(rep, 2, "snapshot create: --mode must be quiesce, pause or memory; --lease a number of seconds",
                            owned);
                return 0;
        }
        return launch_reply(d, op, rep, owned);
}

/* Starts op in its own thread; the daemon owns it from here on, also on
 * failure. */
static int launch(struct daemon *d, struct op *op, lserr *err)
{
        int slot;

        pthread_mutex_lock(&d->lock);
        slot = (int)(d->next_op % MAX_OPS);
        snprintf(op->id, sizeof(op->id), "op-%u", d->next_op++);
        if (d->ops[slot] && !d->ops[slot]->done) {
                pthread_mutex_unlock(&d->lock);
                free(op);
                return lserr_set(err, -EBUSY, "too many operations running (%d)", MAX_OPS);
        }
        struct op *old = d->ops[slot];
        d->ops[slot] = op;
        pthread_mutex_unlock(&d->lock);
        op_free(old);
        if (pthread_create(&op->thread, NULL, op_main, op) != 0) {
                pthread_mutex_lock(&d->lock);
                op->done = 1;
                op->exit_code = 2;
                pthread_mutex_unlock(&d->lock);
                return lserr_set(err, -EAGAIN, "cannot start a thread for the operation");
        }
        return 0;
}

static int launch_reply(struct daemon *d, struct op *op, Lockstep__ControlReply *rep, char **owned)
{
        lserr err = {0};

        if (launch(d, op, &err) < 0) {
                reply_error(rep, 2, err.msg, owned);
                return 0;
        }
        *owned = strdup(op->id);
        rep->op = *owned;
        return 0;
}

/* Whether an operation of the group is running (or waits for its slot). */
static int group_running(struct daemon *d, const char *group)
{
        int r = slots_busy(d->slots, group);

        pthread_mutex_lock(&d->lock);
        for (int i = 0; i < MAX_OPS && !r; i++)
                r = d->ops[i] && !d->ops[i]->done && !d->ops[i]->is_delete && !d->ops[i]->is_revert &&
                    !strcmp(d->ops[i]->group, group);
        pthread_mutex_unlock(&d->lock);
        return r;
}

/* op.poll: events from `from` on, and the result once done. Strings are copied
 * so the op may be replaced while the reply is packed. */
static int poll_op(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep, char ***strs,
                   size_t *n_strs)
{
        struct op *op = NULL;
        size_t n = 0;

        pthread_mutex_lock(&d->lock);
        for (int i = 0; i < MAX_OPS; i++)
                if (d->ops[i] && q->n_args == 1 && !strcmp(d->ops[i]->id, q->args[0]))
                        op = d->ops[i];
        if (!op) {
                pthread_mutex_unlock(&d->lock);
                rep->exit_code = 2;
                rep->error = (char *)"no such operation";
                return 0;
        }
        /* A long poll: the CLI hears of each step as it happens, not on a tick. */
        {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                while (!op->done && q->from >= op->n_events &&
                       pthread_cond_timedwait(&d->op_changed, &d->lock, &ts) == 0)
                        ;
        }
        size_t from = q->from < op->n_events ? q->from : op->n_events;
        *strs = calloc(op->n_events - from + 4, sizeof(char *));
        if (!*strs) {
                pthread_mutex_unlock(&d->lock);
                return -ENOMEM;
        }
        rep->events = *strs;
        for (size_t i = from; i < op->n_events; i++)
                (*strs)[n++] = strdup(op->events[i]);
        rep->n_events = n;
        rep->next = (uint32_t)op->n_events;
        rep->done = op->done;
        if (op->done) {
                rep->exit_code = op->exit_code;
                rep->text = (*strs)[n] = strdup(op->text ? op->text : "");
                rep->json = (*strs)[n + 1] = strdup(op->json ? op->json : "");
                rep->error = (*strs)[n + 2] = strdup(op->error ? op->error : "");
        }
        *n_strs = n + 3;
        pthread_mutex_unlock(&d->lock);
        return 0;
}

/* ---- metrics ------------------------------------------------------------- */

/* What only a scrape can tell: from the catalog, the slots and the schedules. */
static void gauges(void *arg, FILE *out)
{
        struct daemon *d = arg;
        struct cat_agent *ag = NULL;
        struct cat_txn *ts = NULL;
        size_t na = 0, nt = 0, running = 0, waiting = 0, ns;
        unsigned up = 0;
        lserr err = {0};

        if (cat_agents(d->cat, &ag, &na, &err) == 0) {
                fputs("# HELP lockstep_agent_up Whether the agent answered its last health check.\n"
                      "# TYPE lockstep_agent_up gauge\n", out);
                for (size_t i = 0; i < na; i++) {
                        fprintf(out, "lockstep_agent_up{agent=\"%s\"} %d\n", ag[i].id, ag[i].reachable ? 1 : 0);
                        up += ag[i].reachable ? 1 : 0;
                }
                fputs("# HELP lockstep_agent_in_doubt Transactions the agent holds in doubt.\n"
                      "# TYPE lockstep_agent_in_doubt gauge\n", out);
                for (size_t i = 0; i < na; i++)
                        fprintf(out, "lockstep_agent_in_doubt{agent=\"%s\"} %u\n", ag[i].id, ag[i].in_doubt);
                fprintf(out, "# HELP lockstep_agents_up Agents that answered their last health check.\n"
                             "# TYPE lockstep_agents_up gauge\nlockstep_agents_up %u\n", up);
                free(ag);
        }
        if (cat_txn_unresolved(d->cat, &ts, &nt, &err) == 0) {
                fprintf(out, "# HELP lockstep_in_doubt_transactions Transactions the catalog has not settled yet.\n"
                             "# TYPE lockstep_in_doubt_transactions gauge\nlockstep_in_doubt_transactions %zu\n", nt);
                free(ts);
        }
        slots_counts(d->slots, &running, &waiting);
        fprintf(out, "# HELP lockstep_transactions_running Transactions holding a slot.\n"
                     "# TYPE lockstep_transactions_running gauge\nlockstep_transactions_running %zu\n"
                     "# HELP lockstep_transactions_waiting Transactions waiting for the fleet limits.\n"
                     "# TYPE lockstep_transactions_waiting gauge\nlockstep_transactions_waiting %zu\n",
                running, waiting);
        pthread_mutex_lock(&d->lock);
        ns = d->n_sched;
        char (*groups)[65] = calloc(ns ? ns : 1, sizeof(*groups));
        for (size_t i = 0; groups && i < ns; i++)
                snprintf(groups[i], sizeof(groups[i]), "%s", d->sched[i].group);
        pthread_mutex_unlock(&d->lock);
        fputs("# HELP lockstep_schedule_lag_seconds How late the group's last scheduled run started.\n"
              "# TYPE lockstep_schedule_lag_seconds gauge\n", out);
        for (size_t i = 0; groups && i < ns; i++) {
                struct cat_sched cs;
                if (cat_sched_get(d->cat, groups[i], &cs, &err) == 0 && cs.last_run_us)
                        fprintf(out, "lockstep_schedule_lag_seconds{group=\"%s\"} %.3f\n", groups[i],
                                (double)(cs.last_run_us - cs.last_due_s * 1000000) / 1e6);
        }
        fputs("# HELP lockstep_schedule_skipped_total Scheduled runs skipped (busy, or missed while down).\n"
              "# TYPE lockstep_schedule_skipped_total counter\n", out);
        for (size_t i = 0; groups && i < ns; i++) {
                struct cat_sched cs;
                if (cat_sched_get(d->cat, groups[i], &cs, &err) == 0)
                        fprintf(out, "lockstep_schedule_skipped_total{group=\"%s\"} %u\n", groups[i], cs.skipped);
        }
        free(groups);
}

/* Serves /metrics where the configuration says, moving it on a reload. */
static void metrics_apply(struct daemon *d)
{
        const char *want = d->cfg->metrics ? d->cfg->metrics : "";
        lserr err = {0};

        if (!strcmp(want, d->metrics_url))
                return;
        metrics_stop(d->metrics);
        d->metrics_url[0] = '\0';
        if (!*want)
                return;
        if (metrics_serve(d->metrics, want, gauges, d, &err) < 0) {
                event(d, "metrics", NULL, NULL, "not served: %s", err.msg);
                return;
        }
        snprintf(d->metrics_url, sizeof(d->metrics_url), "%s", want);
        log_info("metrics: serving %s/metrics", want);
}

/* ---- schedules ----------------------------------------------------------- */

/* Plans every scheduled group of cfg; replaces d->sched. Caller holds gen. */
static void sched_build(struct daemon *d, const struct cfg_coord *cfg)
{
        struct schedule *sc = calloc(cfg->n_groups ? cfg->n_groups : 1, sizeof(*sc));
        long long now = clock_now_s();
        size_t n = 0;

        for (unsigned i = 0; sc && i < cfg->n_groups; i++) {
                const struct cfg_group *g = &cfg->groups[i];
                struct cat_sched last;
                lserr err = {0};
                int have;
                if (!g->schedule)
                        continue;
                have = cat_sched_get(d->cat, g->name, &last, &err) == 0;
                if (!have) {
                        /* Known from now on, so that a restart can tell what it missed. */
                        memset(&last, 0, sizeof(last));
                        snprintf(last.group, sizeof(last.group), "%s", g->name);
                        last.last_due_s = now;
                        if (cat_sched_put(d->cat, &last, &err) < 0)
                                log_err("%s", err.msg);
                        else
                                have = 1;
                }
                if (schedule_plan(&sc[n], g, have ? &last : NULL, now, &err) < 0) {
                        event(d, "schedule", g->name, "", "not scheduled: %s", err.msg);
                        continue;
                }
                if (sc[n].missed && !sc[n].catch_up && have) {
                        last.skipped += sc[n].missed;
                        last.last_due_s = sc[n].missed_last_s; /* counted once, not at every restart */
                        snprintf(last.outcome, sizeof(last.outcome), "skipped");
                        snprintf(last.reason, sizeof(last.reason), "%u run(s) missed while lockstepd was down (catch_up off)",
                                 sc[n].missed);
                        if (cat_sched_put(d->cat, &last, &err) < 0)
                                log_err("%s", err.msg);
                        event(d, "schedule", g->name, "", "%s", last.reason);
                } else if (sc[n].catch_up_run) {
                        event(d, "schedule", g->name, "", "%u run(s) missed while lockstepd was down: one catch-up run now",
                              sc[n].missed);
                }
                n++;
        }
        pthread_mutex_lock(&d->lock);
        free(d->sched);
        d->sched = sc;
        d->n_sched = sc ? n : 0;
        pthread_mutex_unlock(&d->lock);
}

static void sched_skip(struct daemon *d, const struct schedule *sc, const char *why)
{
        struct cat_sched cs = {0};
        lserr err = {0};

        if (cat_sched_get(d->cat, sc->group, &cs, &err) < 0)
                snprintf(cs.group, sizeof(cs.group), "%s", sc->group);
        cs.last_due_s = sc->due_s;
        cs.last_run_us = 0;
        snprintf(cs.outcome, sizeof(cs.outcome), "skipped");
        cs.txid[0] = '\0';
        snprintf(cs.reason, sizeof(cs.reason), "%s", why);
        cs.skipped++;
        if (cat_sched_put(d->cat, &cs, &err) < 0)
                log_err("%s", err.msg);
        char due[40];
        report_iso_time(sc->due_s * 1000000, due, sizeof(due));
        event(d, "schedule", sc->group, "", "run due %s skipped: %s", due, why);
}

/* Starts what is due. Caller holds gen for reading. */
static void sched_tick(struct daemon *d)
{
        long long now = clock_now_s();

        for (size_t i = 0;; i++) {
                struct schedule sc;
                pthread_mutex_lock(&d->lock);
                if (i >= d->n_sched) {
                        pthread_mutex_unlock(&d->lock);
                        break;
                }
                sc = d->sched[i];
                if (sc.start_s < 0 || now < sc.start_s) {
                        pthread_mutex_unlock(&d->lock);
                        continue;
                }
                schedule_advance(&d->sched[i], now);
                pthread_mutex_unlock(&d->lock);

                /* Never stacked: a run that falls due while the last one runs is skipped. */
                if (group_running(d, sc.group)) {
                        sched_skip(d, &sc, "the previous cut of the group is still running");
                        continue;
                }
                struct op *op = calloc(1, sizeof(*op));
                lserr err = {0};
                struct tm tm;
                time_t due = (time_t)sc.due_s;
                if (!op) {
                        sched_skip(d, &sc, "out of memory");
                        continue;
                }
                gmtime_r(&due, &tm);
                op->scheduled = 1;
                op->due_s = sc.due_s;
                op->mode = -1;
                snprintf(op->group, sizeof(op->group), "%s", sc.group);
                snprintf(op->name, sizeof(op->name), "sched-%04d%02d%02dT%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min);
                event(d, "schedule", sc.group, "", "%s run due %s starts (%lld s after its due time)",
                      sc.catch_up_run ? "catch-up" : "scheduled", op->name + 6, now - sc.due_s);
                if (launch(d, op, &err) < 0)
                        sched_skip(d, &sc, err.msg);
        }
}

/* ---- reload ----------------------------------------------------------------- */

static void groups_to_catalog(struct daemon *d, const struct cfg_coord *cfg)
{
        for (unsigned i = 0; i < cfg->n_groups; i++) {
                const struct cfg_group *g = &cfg->groups[i];
                const char **who = calloc(g->n_members ? g->n_members : 1, sizeof(*who));
                char *buf = calloc(g->n_members ? g->n_members : 1, 2 * (LS_NAME_MAX + 1));
                lserr e2 = {0};
                for (unsigned m = 0; who && buf && m < g->n_members; m++) {
                        char *s = buf + m * 2 * (LS_NAME_MAX + 1);
                        snprintf(s, 2 * (LS_NAME_MAX + 1), "%s@%s", g->members[m].vm, g->members[m].agent);
                        who[m] = s;
                }
                if (who && buf && cat_group_put(d->cat, g->name, cfg_mode_name(g->mode), who, g->n_members, &e2) < 0)
                        log_err("%s", e2.msg);
                free(who);
                free(buf);
        }
}

/* Puts a validated reload in place once no one uses the running config:
 * 1 applied (or nothing pending), 0 still waiting for running operations. */
static int apply_pending(struct daemon *d)
{
        struct cfg_coord *old_cfg;
        struct engine *old_eng;

        pthread_mutex_lock(&d->lock);
        int pending = d->pending_cfg != NULL;
        pthread_mutex_unlock(&d->lock);
        if (!pending)
                return 1;
        if (pthread_rwlock_trywrlock(&d->gen) != 0)
                return 0;
        pthread_mutex_lock(&d->lock);
        old_cfg = d->cfg;
        old_eng = d->eng;
        d->cfg = d->pending_cfg;
        d->eng = d->pending_eng;
        d->pending_cfg = NULL;
        d->pending_eng = NULL;
        pthread_mutex_unlock(&d->lock);
        slots_set_limits(d->slots, d->cfg->max_cuts, d->cfg->max_cuts_per_agent);
        metrics_apply(d);
        groups_to_catalog(d, d->cfg);
        sched_build(d, d->cfg);
        event(d, "reload", NULL, NULL, "configuration %s applied: %u agents, %u groups, %zu scheduled", d->cfg_path,
              d->cfg->n_agents, d->cfg->n_groups, d->n_sched);
        pthread_rwlock_unlock(&d->gen);
        engine_free(old_eng);
        cfg_coord_free(old_cfg);
        return 1;
}

/* Reads and checks the configuration again. A bad file is refused and the
 * running configuration stays; a good one is applied at once, or as soon as
 * the operations running on the old one are done. */
static int reload(struct daemon *d, int wait_ms, int *ret_applied, lserr *err)
{
        struct cfg_coord *cfg = NULL;
        struct engine *eng = NULL;
        int r = cfg_coord_load(d->cfg_path, &cfg, err);

        if (r >= 0)
                r = engine_new(cfg, d->key, d->cat, d->ctr, d->slots, &eng, err);
        if (r < 0) {
                cfg_coord_free(cfg);
                log_err("reload of %s refused: %s", d->cfg_path, err->msg);
                event(d, "reload", NULL, NULL, "refused, the running configuration stays: %s", err->msg);
                return r;
        }
        pthread_mutex_lock(&d->lock);
        engine_free(d->pending_eng);
        cfg_coord_free(d->pending_cfg);
        d->pending_cfg = cfg;
        d->pending_eng = eng;
        pthread_mutex_unlock(&d->lock);
        for (int waited = 0; !(*ret_applied = apply_pending(d)) && waited < wait_ms; waited += 100)
                usleep(100000);
        if (!*ret_applied)
                event(d, "reload", NULL, NULL, "configuration valid; applied once the running operations finish");
        return 0;
}

static void *sched_main(void *p)
{
        struct daemon *d = p;
        /* A test clock moves in jumps: look often. */
        int tick_ms = getenv("LOCKSTEP_CLOCK_FILE") ? 100 : 1000;
        /* The systemd watchdog watches this loop: it starts every scheduled cut. */
        unsigned wd_ms = notify_watchdog_ms();

        if (wd_ms && (unsigned)tick_ms > wd_ms / 2)
                tick_ms = (int)(wd_ms / 2);

        pthread_mutex_lock(&d->stop_lock);
        while (!d->stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += (long)tick_ms * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &ts);
                if (d->stop)
                        break;
                pthread_mutex_unlock(&d->stop_lock);
                apply_pending(d);
                pthread_rwlock_rdlock(&d->gen);
                sched_tick(d);
                pthread_rwlock_unlock(&d->gen);
                if (wd_ms)
                        notify_watchdog();
                pthread_mutex_lock(&d->stop_lock);
        }
        pthread_mutex_unlock(&d->stop_lock);
        return NULL;
}

/* ---- control commands beyond cuts ---------------------------------------- */

static int r_schedules(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        struct report_sched *rs;
        size_t n;

        (void)a;
        (void)err;
        pthread_mutex_lock(&d->lock);
        n = d->n_sched;
        rs = calloc(n ? n : 1, sizeof(*rs));
        for (size_t i = 0; rs && i < n; i++) {
                const struct cfg_group *g = cfg_coord_group(d->cfg, d->sched[i].group);
                snprintf(rs[i].group, sizeof(rs[i].group), "%s", d->sched[i].group);
                snprintf(rs[i].schedule, sizeof(rs[i].schedule), "%s", g && g->schedule ? g->schedule : "");
                rs[i].next_due_s = d->sched[i].due_s;
                rs[i].next_start_s = d->sched[i].start_s;
        }
        pthread_mutex_unlock(&d->lock);
        if (!rs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                lserr e2 = {0};
                rs[i].has_last = cat_sched_get(d->cat, rs[i].group, &rs[i].last, &e2) == 0;
                rs[i].running = group_running(d, rs[i].group);
        }
        report_schedules(rs, n, j, f);
        free(rs);
        return 0;
}

static int events_reply(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                        char **text, char **json, lserr *err)
{
        const char *lim = option(q, "limit");
        struct cat_event *ev = NULL;
        size_t n = 0, tl = 0, jl = 0;
        long long after = q->from;
        /* The first call of a listing shows the newest; a follow asks from its last id on. */
        int newest = option(q, "since") == NULL;
        size_t limit = lim ? strtoul(lim, NULL, 10) : 50;
        int r;

        if (limit == 0 || limit > EVENTS_PAGE)
                limit = EVENTS_PAGE;
        r = cat_events(d->cat, after, limit, newest, &ev, &n, err);
        if (r < 0)
                return r;
        FILE *tf = open_memstream(text, &tl), *jf = open_memstream(json, &jl);
        if (tf) {
                report_events(ev, n, 0, tf);
                fclose(tf);
        }
        if (jf) {
                report_events(ev, n, 1, jf);
                fclose(jf);
        }
        rep->text = *text;
        rep->json = *json;
        rep->next = n ? (uint32_t)ev[n - 1].id : (uint32_t)after;
        rep->done = 1;
        free(ev);
        return 0;
}

static int prune_reply(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                       char **owned, char **text, char **json)
{
        const struct cfg_group *g = q->n_args == 1 ? cfg_coord_group(d->cfg, q->args[0]) : NULL;
        struct prune_item *items = NULL;
        size_t n = 0, tl = 0, jl = 0;
        lserr err = {0};

        if (q->n_args != 1) {
                reply_error(rep, 2, "usage: prune GROUP [--dry-run]", owned);
                return 0;
        }
        if (!g) {
                char msg[128];
                snprintf(msg, sizeof(msg), "group \"%.64s\" is not in the configuration", q->args[0]);
                reply_error(rep, 2, msg, owned);
                return 0;
        }
        if (!option(q, "dry_run")) {
                struct op *op = calloc(1, sizeof(*op));
                if (!op)
                        return -ENOMEM;
                op->is_prune = 1;
                snprintf(op->group, sizeof(op->group), "%s", g->name);
                return launch_reply(d, op, rep, owned);
        }
        if (prune_plan(d->cat, g, &items, &n, &err) < 0) {
                reply_error(rep, 2, err.msg, owned);
                return 0;
        }
        FILE *tf = open_memstream(text, &tl), *jf = open_memstream(json, &jl);
        if (tf) {
                report_prune(g->name, items, n, 1, 0, tf);
                fclose(tf);
        }
        if (jf) {
                report_prune(g->name, items, n, 1, 1, jf);
                fclose(jf);
        }
        free(items);
        rep->text = *text;
        rep->json = *json;
        rep->done = 1;
        return 0;
}

static void recover_event(void *arg, const char *line)
{
        FILE *f = arg;
        fprintf(f, "%s\n", line);
}

/* Commands that read the running configuration or use its engine; they hold
 * gen so that a reload waits for them. */
static int control_gen(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep,
                       char **owned, char **text, char **json)
{
        lserr err = {0};
        int r = 0;

        if (!strcmp(q->command, "snapshot.create") || !strcmp(q->command, "snapshot.delete") ||
            !strcmp(q->command, "snapshot.revert")) {
                r = start_snapshot(d, q, rep, owned);
        } else if (!strcmp(q->command, "snapshot.list") || !strcmp(q->command, "snapshot.show") ||
                   !strcmp(q->command, "agents") || !strcmp(q->command, "groups") ||
                   !strcmp(q->command, "schedules")) {
                int (*fn)(struct daemon *, const void *, int, FILE *, lserr *) =
                        !strcmp(q->command, "snapshot.list")   ? r_cuts
                        : !strcmp(q->command, "snapshot.show") ? r_cut
                        : !strcmp(q->command, "agents")        ? r_agents
                        : !strcmp(q->command, "schedules")     ? r_schedules
                                                               : r_groups;
                const char *a = q->n_args ? q->args[0] : NULL;
                if (fn == r_cut && !a) {
                        rep->exit_code = 2;
                        rep->error = (char *)"usage: snapshot show ID";
                } else {
                        if (fn == r_agents)
                                engine_poll_agents(d->eng, &err);
                        *text = render(fn, d, a, 0, &err);
                        *json = render(fn, d, a, 1, &err);
                        rep->text = *text;
                        rep->json = *json;
                        if (!*text || !*json)
                                reply_error(rep, 2, err.msg[0] ? err.msg : "cannot render", owned);
                }
                rep->done = 1;
        } else if (!strcmp(q->command, "prune")) {
                r = prune_reply(d, q, rep, owned, text, json);
        } else if (!strcmp(q->command, "recover")) {
                unsigned left = 0;
                size_t tl = 0;
                FILE *f = open_memstream(text, &tl);
                r = f ? engine_recover(d->eng, recover_event, f, &left, &err) : -ENOMEM;
                if (f) {
                        fprintf(f, "%s\n", r < 0 ? err.msg
                                          : left  ? "some transactions could not be finished yet: an agent is unreachable"
                                                  : "nothing left unresolved");
                        fclose(f);
                }
                rep->text = *text;
                rep->exit_code = r < 0 || left ? 1 : 0;
                rep->done = 1;
                r = 0;
        } else {
                rep->exit_code = 2;
                rep->error = (char *)"unknown command";
        }
        return r;
}

static int control(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
        struct daemon *d = arg;
        Lockstep__ControlReply rep = LOCKSTEP__CONTROL_REPLY__INIT;
        Lockstep__ControlRequest *q = lockstep__control_request__unpack(NULL, len, req);
        char *owned = NULL, *text = NULL, *json = NULL, **strs = NULL;
        size_t n_strs = 0;
        lserr err = {0};
        int r = 0;

        if (!q) {
                rep.exit_code = 2;
                rep.error = (char *)"control request does not unpack";
        } else if (!strcmp(q->command, "op.poll")) {
                r = poll_op(d, q, &rep, &strs, &n_strs);
        } else if (!strcmp(q->command, "events")) {
                if (events_reply(d, q, &rep, &text, &json, &err) < 0)
                        reply_error(&rep, 2, err.msg, &owned);
        } else if (!strcmp(q->command, "reload")) {
                int applied = 0;
                size_t tl = 0;
                FILE *f;
                /* Not under gen: the reload itself has to take it. */
                if (reload(d, 5000, &applied, &err) < 0) {
                        reply_error(&rep, 1, err.msg, &owned);
                } else if ((f = open_memstream(&text, &tl))) {
                        fprintf(f, applied ? "configuration %s reloaded\n"
                                           : "configuration %s is valid; it applies once the running operations finish\n",
                                d->cfg_path);
                        fclose(f);
                        rep.text = text;
                }
                rep.done = 1;
        } else {
                pthread_rwlock_rdlock(&d->gen);
                r = control_gen(d, q, &rep, &owned, &text, &json);
                pthread_rwlock_unlock(&d->gen);
        }
        if (r >= 0) {
                size_t n = lockstep__control_reply__get_packed_size(&rep);
                *ret = malloc(n ? n : 1);
                if (*ret) {
                        lockstep__control_reply__pack(&rep, *ret);
                        *ret_len = n;
                } else {
                        r = -ENOMEM;
                }
        }
        for (size_t i = 0; i < n_strs; i++)
                free(strs[i]);
        free(strs);
        free(owned);
        free(text);
        free(json);
        if (q)
                lockstep__control_request__free_unpacked(q, NULL);
        return r;
}

static void *health_main(void *p)
{
        struct daemon *d = p;

        pthread_mutex_lock(&d->stop_lock);
        while (!d->stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += HEALTH_INTERVAL_S;
                pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &ts);
                if (d->stop)
                        break;
                pthread_mutex_unlock(&d->stop_lock);
                lserr err = {0};
                unsigned left = 0;
                pthread_rwlock_rdlock(&d->gen);
                engine_poll_agents(d->eng, &err);
                /* Settles what agents hold in doubt and decisions not yet heard. */
                if (engine_recover(d->eng, NULL, NULL, &left, &err) < 0)
                        log_err("recover: %s", err.msg);
                pthread_rwlock_unlock(&d->gen);
                pthread_mutex_lock(&d->stop_lock);
        }
        pthread_mutex_unlock(&d->stop_lock);
        return NULL;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: lockstepd [-c coordinator.yaml] [--check-config] [-v] [--version]\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
                {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},         {0},
        };
        const char *path = "/etc/lockstep/coordinator.yaml";
        struct daemon d = {0};
        struct transport_server *srv = NULL;
        pthread_t health, sched;
        int health_started = 0, sched_started = 0, check_only = 0, level = LOG_INFO, c, r, sig, rc = 1;
        unsigned left = 0;
        nng_socket sock;
        sigset_t set;
        lserr err = {0};

        while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c': path = optarg; break;
                case 'C': check_only = 1; break;
                case 'v': level = LOG_DEBUG; break;
                case 'V': printf("lockstepd %s\n", LOCKSTEP_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }
        log_setup("lockstepd", level);
        the_daemon = &d;
        pthread_mutex_init(&d.lock, NULL);
        pthread_cond_init(&d.op_changed, NULL);
        pthread_mutex_init(&d.stop_lock, NULL);
        pthread_cond_init(&d.stop_cond, NULL);
        /* A reload only ever tries the write lock (apply_pending), so readers
         * never queue behind it and nobody blocks on a reload. */
        pthread_rwlock_init(&d.gen, NULL);
        d.cfg_path = path;
        r = cfg_coord_load(path, &d.cfg, &err);
        if (r >= 0)
                r = keys_load_secret(d.cfg->key, &d.key, &err);
        if (r < 0) {
                log_err("%s", err.msg);
                rc = 2;
                goto out;
        }
        if (check_only) {
                char fpr[KEYS_FPR_LEN];
                keys_fingerprint(keys_secret_public(d.key)->id, fpr);
                printf("%s: configuration and key OK (key %s, %u agents, %u groups)\n", path, fpr, d.cfg->n_agents,
                       d.cfg->n_groups);
                rc = 0;
                goto out;
        }
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = cat_open(d.cfg->catalog, &d.cat, &err);
        if (r >= 0)
                r = counter_open(d.cfg->counter_file, &d.ctr, &err);
        if (r >= 0)
                r = slots_new(d.cfg->max_cuts, d.cfg->max_cuts_per_agent, &d.slots);
        if (r >= 0)
                r = metrics_new(&d.metrics);
        if (r >= 0)
                r = engine_new(d.cfg, d.key, d.cat, d.ctr, d.slots, &d.eng, &err);
        if (r < 0) {
                log_err("start: %s", err.msg[0] ? err.msg : strerror(-r));
                goto out;
        }
        groups_to_catalog(&d, d.cfg);
        /* What a previous run left unresolved is finished before anything new. */
        if (engine_recover(d.eng, NULL, NULL, &left, &err) < 0)
                log_err("recover at start: %s", err.msg);
        else if (left)
                log_warn("recover at start: %u transaction(s) wait for unreachable agents; retrying every %d s", left,
                         HEALTH_INTERVAL_S);
        r = transport_listen(d.cfg->control, CONTROL_MAX, 0660, NULL, &sock, &err);
        if (r >= 0)
                r = transport_serve(sock, 4, control, &d, &srv, &err);
        if (r < 0) {
                log_err("control socket: %s", err.msg);
                goto out;
        }
        sched_build(&d, d.cfg);
        metrics_apply(&d);
        if (pthread_create(&health, NULL, health_main, &d) == 0)
                health_started = 1;
        if (pthread_create(&sched, NULL, sched_main, &d) == 0)
                sched_started = 1;
        log_info("lockstepd %s: control %s, catalog %s, %u agents, %u groups, %zu scheduled", LOCKSTEP_VERSION,
                 d.cfg->control, d.cfg->catalog, d.cfg->n_agents, d.cfg->n_groups, d.n_sched);
        {
                char st[160];
                snprintf(st, sizeof(st), "%u agents, %u groups, %zu scheduled", d.cfg->n_agents, d.cfg->n_groups,
                         d.n_sched);
                notify_ready(st);
        }
        for (;;) {
                if (sigwait(&set, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        int applied = 0;
                        lserr e2 = {0};
                        log_info("signal SIGHUP: reloading %s", path);
                        notify_reloading();
                        reload(&d, 0, &applied, &e2); /* refusals are logged as events */
                        notify_ready(applied ? "configuration reloaded"
                                     : e2.msg[0] ? "reload refused; running configuration kept"
                                                 : "reload waits for running operations");
                        continue;
                }
                log_info("signal %s: stopping", strsignal(sig));
                notify_stopping();
                break;
        }
        rc = 0;
out:
        transport_server_stop(srv);
        pthread_mutex_lock(&d.stop_lock);
        d.stop = 1;
        pthread_cond_broadcast(&d.stop_cond);
        pthread_mutex_unlock(&d.stop_lock);
        if (health_started)
                pthread_join(health, NULL);
        if (sched_started)
                pthread_join(sched, NULL);
        for (int i = 0; i < MAX_OPS; i++)
                op_free(d.ops[i]);
        engine_free(d.eng);
        engine_free(d.pending_eng);
        cfg_coord_free(d.pending_cfg);
        metrics_free(d.metrics);
        slots_free(d.slots);
        counter_free(d.ctr);
        cat_close(d.cat);
        keys_secret_free(d.key);
        free(d.sched);
        cfg_coord_free(d.cfg);
        return rc;
}
