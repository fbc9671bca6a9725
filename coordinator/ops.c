/* ops: lockstepd's long operations (cuts, deletes, reverts, prunes, scheduled
 * cuts) run in their own threads, their progress for the CLI, the event log. */
#include "daemon.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "opkeep.h"
#include "prune.h"
#include "report.h"

struct daemon *daemon_self;

/* One line in the catalog's event log (lockstep events) and in the log. */
void ops_trim_catalog(struct daemon *d, const struct cfg_coord *cfg)
{
        lserr err = {0};

        /* The event log is for reading back weeks, not for ever; nor is the
         * history of ended transactions, nor the audit of every command. */
        if (cat_events_trim(d->cat, cfg->events_keep, &err) < 0)
                log_err("%s", err.msg);
        lserr_clear(&err);
        if (cat_history_trim(d->cat, cfg->history_keep, cfg->history_keep_members, cfg->audit_keep, &err) < 0)
                log_err("%s", err.msg);
}

void ops_event(struct daemon *d, const char *kind, const char *group, const char *txid, const char *fmt, ...)
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

void ops_progress(void *arg, const char *line)
{
        struct op *op = arg;
        char *copy = strdup(line);

        pthread_mutex_lock(&daemon_self->lock);
        if (copy && op->n_events < MAX_EVENTS) {
                char **ne = realloc(op->events, (op->n_events + 1) * sizeof(*ne));
                if (ne) {
                        op->events = ne;
                        op->events[op->n_events++] = copy;
                        copy = NULL;
                }
        }
        pthread_cond_broadcast(&daemon_self->op_changed);
        pthread_mutex_unlock(&daemon_self->lock);
        free(copy);
}

/* Renders into a malloc'd string. */
char *ops_render(int (*fn)(struct daemon *, const void *, int, FILE *, lserr *), struct daemon *d, const void *a,
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

int ops_r_cut(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        return report_cut(d->cat, a, j, f, err);
}

int ops_r_cuts(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        return report_cuts(d->cat, a, j, f, err);
}

int ops_r_agents(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        (void)a;
        return report_agents(d->cat, j, f, err);
}

int ops_r_groups(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
{
        (void)a;
        (void)err;
        return report_groups(d->cfg, j, f);
}

/* After a scheduled cut: its schedule's record, and retention. */
static void after_scheduled(struct daemon *d, struct gen *gn, struct op *op, int r, const char *txid,
                            const char *why)
{
        const struct cfg_group *g = cfg_coord_group(gn->cfg, op->group);
        struct cat_sched cs = {0};
        lserr err = {0};

        pthread_mutex_lock(&d->sched_rows);
        if (cat_sched_get(d->cat, op->group, &cs, &err) < 0)
                snprintf(cs.group, sizeof(cs.group), "%s", op->group);
        /* A run skipped while this one ran is later than it: that record (due
         * time, no start) stays the last; this run still counts. */
        if (op->due_s >= cs.last_due_s) {
                cs.last_due_s = op->due_s;
                cs.last_run_us = op->started_us;
                snprintf(cs.txid, sizeof(cs.txid), "%s", txid);
        }
        snprintf(cs.outcome, sizeof(cs.outcome), "%s", r == 0 ? "committed" : r == 1 ? "aborted" : "failed");
        snprintf(cs.reason, sizeof(cs.reason), "%s", why);
        cs.runs++;
        if (cat_sched_put(d->cat, &cs, &err) < 0)
                log_err("%s", err.msg);
        pthread_mutex_unlock(&d->sched_rows);
        if (why[0])
                ops_event(d, "schedule", op->group, txid, "scheduled cut %s: %s", cs.outcome, why);
        else
                ops_event(d, "schedule", op->group, txid, "scheduled cut %s", cs.outcome);
        if (r != 0 || !g || !prune_has_policy(g))
                return;
        struct prune_item *items = NULL;
        size_t n = 0, failed;
        if (prune_plan(d->cat, g, &items, &n, &err) < 0) {
                ops_event(d, "prune", op->group, "", "retention not applied: %s", err.msg);
                return;
        }
        failed = prune_run(gn->eng, d->cat, g, &items, &n, ops_progress, op);
        for (size_t i = 0; i < n; i++)
                if (!items[i].keep && items[i].error[0])
                        ops_event(d, "prune", op->group, items[i].txid, "%s (%s): %s",
                                  items[i].done ? "removed" : "NOT removed", items[i].why, items[i].error);
                else if (!items[i].keep)
                        ops_event(d, "prune", op->group, items[i].txid, "%s (%s)",
                                  items[i].done ? "removed" : "NOT removed", items[i].why);
        if (failed)
                log_warn("group %s: retention: %zu cut(s) or branch(es) could not be deleted", op->group, failed);
        free(items);
        ops_trim_catalog(d, gn->cfg);
}

struct gen *ops_gen_get(struct daemon *d)
{
        struct gen *g;

        pthread_mutex_lock(&d->lock);
        g = d->cur;
        g->refs++;
        pthread_mutex_unlock(&d->lock);
        return g;
}

void ops_gen_free(struct gen *g)
{
        if (!g)
                return;
        engine_free(g->eng);
        cfg_coord_free(g->cfg);
        free(g);
}

void ops_gen_put(struct daemon *d, struct gen *g)
{
        int last;

        pthread_mutex_lock(&d->lock);
        last = --g->refs == 0 && g->retired;
        pthread_mutex_unlock(&d->lock);
        if (last)
                ops_gen_free(g);
}

static const char *outcome_word(int r)
{
        return r == 0 ? "committed" : r == 1 ? "aborted" : "failed";
}

/* A prune: deletes what the group's retention does not keep. 0 when all went,
 * 1 when some could not be deleted, < 0 when it could not run. */
static int run_prune(struct daemon *d, struct gen *gn, struct op *op, char **text, char **json, lserr *err)
{
        const struct cfg_group *g = cfg_coord_group(gn->cfg, op->group);
        struct prune_item *items = NULL;
        size_t n = 0;
        int r;

        if (!g)
                return lserr_set(err, -ENOENT, "group \"%s\" is not in the configuration", op->group);
        r = prune_plan(d->cat, g, &items, &n, err);
        if (r == 0) {
                r = prune_run(gn->eng, d->cat, g, &items, &n, ops_progress, op) ? 1 : 0;
                for (size_t i = 0; i < n; i++) {
                        const char *done = items[i].done ? "removed" : "NOT removed";

                        if (items[i].keep)
                                continue;
                        if (items[i].error[0])
                                ops_event(d, "prune", op->group, items[i].txid, "%s (%s): %s", done, items[i].why,
                                          items[i].error);
                        else
                                ops_event(d, "prune", op->group, items[i].txid, "%s (%s)", done, items[i].why);
                }
                report_prune_pair(op->group, items, n, 0, text, json);
                ops_trim_catalog(d, gn->cfg);
        }
        free(items);
        return r;
}

/* A cut, revert or delete: the engine's answer (0 committed, 1 aborted, < 0
 * failed), txid the transaction it logged ("" when none). */
static int run_txn(struct gen *gn, struct op *op, char txid[65], lserr *err)
{
        struct engine_cut_req req = {.group = op->group, .name = op->name[0] ? op->name : NULL, .mode = op->mode,
                                     .lease_s = op->lease_s};

        if (op->is_revert)
                return engine_revert(gn->eng, op->target, op->undo, ops_progress, op, txid, err);
        if (op->is_delete)
                return engine_delete(gn->eng, op->target, ops_progress, op, txid, err);
        return engine_snapshot(gn->eng, &req, ops_progress, op, txid, err);
}


/* The event of a delete: the catalog knows the cut's group and why it stays
 * (t: the cut's row as read for the result, NULL when it was not). */
static void delete_event(struct daemon *d, const struct op *op, int r, const struct cat_txn *t, const lserr *err)
{
        struct cat_txn own;
        lserr e2 = {0};

        if (!t && cat_txn_get(d->cat, op->target, &own, &e2) == 0)
                t = &own;
        const char *group = t ? t->group : NULL;

        if (r == 0)
                ops_event(d, "delete", group, op->target, "deleted");
        else if (r < 0)
                ops_event(d, "delete", group, op->target, "not deleted: %s", err->msg);
        else if (t && t->cut_status_reason[0])
                ops_event(d, "delete", group, op->target, "not deleted: %s", t->cut_status_reason);
        else
                ops_event(d, "delete", group, op->target, "not deleted");
}

/* The event of a cut or revert (t: its row, NULL when it cannot be read);
 * the engine's error is logged here, once. */
static void txn_event(struct daemon *d, const struct op *op, int r, const char *txid, const struct cat_txn *t,
                      const lserr *err)
{
        /* For a revert, op->group holds the ID it was given: the catalog knows the group. */
        const char *kind = op->is_revert ? "revert" : "cut", *group = t ? t->group : op->group;

        if (r < 0)
                ops_event(d, kind, group, txid, "failed: %s", err->msg);
        else if (t && t->reason[0])
                ops_event(d, kind, group, txid, "%s: %s", outcome_word(r), t->reason);
        else
                ops_event(d, kind, group, txid, "%s", outcome_word(r));
}

/* What a result nobody reads (a scheduled cut's) still needs: the state for
 * the event, a cut's members for the metrics. */
static int outcome_rows(struct catalog *cat, const struct op *op, const char *shown, struct cat_cut *rows, lserr *err)
{
        int r = cat_txn_get(cat, shown, &rows->t, err);

        if (r >= 0 && !op->is_delete && !op->is_revert)
                r = cat_members(cat, shown, &rows->m, &rows->nm, err);
        return r < 0 ? r : 0;
}

/* After the engine answered a cut, revert or delete: its result for the CLI,
 * metrics, the event, and a scheduled cut's bookkeeping. */
static void record_txn(struct daemon *d, struct gen *gn, struct op *op, int r, const char *txid, char **text,
                       char **json, lserr *err)
{
        /* A delete's result is the cut it deleted, as it stands now; a
         * revert's is the revert (its pre-revert branch). */
        const char *shown = op->is_delete ? op->target : txid;
        /* One read of the rows (of shown) for the result, the metrics and the event. */
        _cleanup_(cat_cut_free) struct cat_cut rows = {0};
        const struct cat_txn *t = NULL;
        lserr e2 = {0};

        if (txid[0] && (op->want ? report_cut_render(d->cat, shown, op->want, text, json, &rows, &e2)
                                 : outcome_rows(d->cat, op, shown, &rows, &e2)) == 0) {
                t = &rows.t;
        } else if (txid[0]) {
                *text = *json = NULL;
                log_err("result of %s: %s", shown, e2.msg);
        }
        if (t && !op->is_delete && !op->is_revert)
                metrics_cut(d->metrics, op->group, outcome_word(r), rows.m, rows.nm);
        if (op->is_delete)
                delete_event(d, op, r, t, err);
        else if (txid[0])
                txn_event(d, op, r, txid, t, err);
        if (op->scheduled)
                after_scheduled(d, gn, op, r, txid, r < 0 ? err->msg : r == 1 && t ? t->reason : "");
}

/* What the previous run left undone is settled before anything new starts. */
static void wait_start_recovery(struct daemon *d, struct op *op)
{
        pthread_mutex_lock(&d->stop_lock);
        if (!d->recovered && !d->stop) {
                pthread_mutex_unlock(&d->stop_lock);
                ops_progress(op, "WAIT     lockstepd first settles what its previous run left undone");
                pthread_mutex_lock(&d->stop_lock);
        }
        while (!d->recovered && !d->stop)
                pthread_cond_wait(&d->stop_cond, &d->stop_lock);
        pthread_mutex_unlock(&d->stop_lock);
}

/* Takes out of the table (d->lock held) the finished ops whose results opkeep
 * lets go; the caller frees the n returned after unlocking (ops_free joins). */
static size_t ops_evict(struct daemon *d, struct op *out[MAX_OPS])
{
        struct opkeep_entry e[MAX_OPS];
        size_t idx[MAX_OPS], n;

        for (int i = 0; i < MAX_OPS; i++) {
                const struct op *op = d->ops[i];
                e[i] = op ? (struct opkeep_entry){.present = 1, .done = op->done, .polled = op->pollers > 0,
                                                  .done_us = op->done_mono_us, .bytes = op->bytes, .seq = op->seq}
                          : (struct opkeep_entry){0};
        }
        n = opkeep_pick(e, MAX_OPS, fsutil_mono_us(), idx);
        for (size_t k = 0; k < n; k++) {
                out[k] = d->ops[idx[k]];
                d->ops[idx[k]] = NULL;
        }
        return n;
}

static void ops_free_all(struct op **v, size_t n)
{
        for (size_t k = 0; k < n; k++)
                ops_free(v[k]);
}

static size_t result_bytes(const struct op *op)
{
        size_t b = (op->text ? strlen(op->text) : 0) + (op->json ? strlen(op->json) : 0) +
                   (op->error ? strlen(op->error) : 0) + op->n_events * sizeof(char *);

        for (size_t i = 0; i < op->n_events; i++)
                b += strlen(op->events[i]) + 1;
        return b;
}

static void *op_main(void *p)
{
        struct op *op = p;
        struct daemon *d = daemon_self;
        char txid[65] = "";
        lserr err = {0};
        char *text = NULL, *json = NULL, *error = NULL;
        int r;

        wait_start_recovery(d, op);
        /* A reference, not the lock: a reload need not wait for this op. */
        struct gen *gn = ops_gen_get(d);
        struct timespec cpu0, cpu1;
        struct rusage ru0, ru1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
        getrusage(RUSAGE_THREAD, &ru0);
        op->started_us = fsutil_now_us();
        if (op->is_prune) {
                r = run_prune(d, gn, op, &text, &json, &err);
        } else {
                r = run_txn(gn, op, txid, &err);
                record_txn(d, gn, op, r, txid, &text, &json, &err);
        }
        /* The operation's own CPU (signing, checking replies, the catalog, the
         * report), apart from the health pass and the sockets' threads: what
         * bench/scale.sh reports as lockstepd's time in a cut. */
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
        getrusage(RUSAGE_THREAD, &ru1);
        /* Page faults: fresh pages are a large part of a fleet's cut where
         * page tables are virtualised. */
        log_info("op=%s txid=%s thread_cpu_ms=%.1f wall_ms=%.1f minflt=%ld", op->id, txid[0] ? txid : "-",
                 (double)(cpu1.tv_sec - cpu0.tv_sec) * 1e3 + (double)(cpu1.tv_nsec - cpu0.tv_nsec) / 1e6,
                 (double)(fsutil_now_us() - op->started_us) / 1e3, ru1.ru_minflt - ru0.ru_minflt);
        ops_gen_put(d, gn);
        if (r < 0)
                error = strdup(err.msg);
        pthread_mutex_lock(&d->lock);
        snprintf(op->txid, sizeof(op->txid), "%s", txid);
        op->text = text;
        op->json = json;
        op->error = error;
        op->exit_code = r == 0 ? 0 : r == 1 ? 1 : 2;
        op->done = 1;
        op->done_mono_us = fsutil_mono_us();
        op->bytes = result_bytes(op);
        pthread_cond_broadcast(&d->op_changed);
        struct op *gone[MAX_OPS];
        size_t n_gone = ops_evict(d, gone); /* never this one: it is not 30 s done */
        pthread_mutex_unlock(&d->lock);
        ops_free_all(gone, n_gone);
        /* A fleet's cut allocates per agent and member, then frees it all:
         * give the pages back, or the daemon keeps its largest cut's size. */
        malloc_trim(0);
        return NULL;
}

void ops_free(struct op *op)
{
        if (!op)
                return;
        if (op->started)
                pthread_join(op->thread, NULL);
        for (size_t i = 0; i < op->n_events; i++)
                free(op->events[i]);
        free(op->events);
        free(op->text);
        free(op->json);
        free(op->error);
        free(op);
}

/* A finished op nobody is polling: its table entry may take a new one. */
static int replaceable(const struct op *op)
{
        return op->done && !op->pollers;
}

/* Starts op in its own thread; the daemon owns it from here on, also on
 * failure. */
int ops_launch(struct daemon *d, struct op *op, char ret_id[24], lserr *err)
{
        int slot = -1;
        struct op *gone[MAX_OPS];
        size_t n_gone;

        pthread_mutex_lock(&d->lock);
        n_gone = ops_evict(d, gone);
        /* An empty entry, else the oldest finished op nobody is polling: the
         * table bounds running operations, not how many ran. */
        for (int i = 0; i < MAX_OPS && slot < 0; i++)
                if (!d->ops[i])
                        slot = i;
        if (slot < 0)
                for (int i = 0; i < MAX_OPS; i++)
                        if (replaceable(d->ops[i]) &&
                            (slot < 0 || d->ops[i]->seq - d->ops[slot]->seq > (1u << 31)))
                                slot = i;
        if (slot < 0) {
                pthread_mutex_unlock(&d->lock);
                ops_free_all(gone, n_gone);
                free(op);
                return lserr_set(err, -EBUSY, "too many operations running (%d)", MAX_OPS);
        }
        op->seq = d->next_op;
        snprintf(op->id, sizeof(op->id), "op-%u", d->next_op++);
        if (ret_id)
                snprintf(ret_id, 24, "%s", op->id);
        struct op *old = d->ops[slot];
        d->ops[slot] = op;
        pthread_mutex_unlock(&d->lock);
        ops_free(old);
        ops_free_all(gone, n_gone);
        /* Set before the thread exists: it may finish and be replaced at once. */
        op->started = 1;
        if (pthread_create(&op->thread, NULL, op_main, op) != 0) {
                pthread_mutex_lock(&d->lock);
                op->started = 0;
                op->done = 1;
                op->exit_code = 2;
                pthread_mutex_unlock(&d->lock);
                return lserr_set(err, -EAGAIN, "cannot start a thread for the operation");
        }
        return 0;
}

int ops_room(struct daemon *d)
{
        int n = 0;

        pthread_mutex_lock(&d->lock);
        for (int i = 0; i < MAX_OPS && n <= OPS_KEPT_FOR_REQUESTS; i++)
                n += !d->ops[i] || replaceable(d->ops[i]);
        pthread_mutex_unlock(&d->lock);
        return n > OPS_KEPT_FOR_REQUESTS;
}

/* Whether an operation of the group is running (or waits for its slot). */
int ops_group_running(struct daemon *d, const char *group)
{
        int r = slots_busy(d->slots, group);

        pthread_mutex_lock(&d->lock);
        for (int i = 0; i < MAX_OPS && !r; i++)
                r = d->ops[i] && !d->ops[i]->done && !d->ops[i]->is_delete && !d->ops[i]->is_revert &&
                    !strcmp(d->ops[i]->group, group);
        pthread_mutex_unlock(&d->lock);
        return r;
}

_Static_assert(OPS_POLL_WAIT_MS % 1000 == 0, "ops_poll waits whole seconds");

int ops_known(struct daemon *d, const char *id)
{
        int found = 0;

        pthread_mutex_lock(&d->lock);
        for (int i = 0; i < MAX_OPS && !found; i++)
                found = d->ops[i] && !strcmp(d->ops[i]->id, id);
        pthread_mutex_unlock(&d->lock);
        return found;
}

/* op.poll: events from `from` on, and the result once done. Strings are copied
 * so the op may be replaced while the reply is packed. */
int ops_poll(struct daemon *d, const Lockstep__ControlRequest *q, Lockstep__ControlReply *rep, char ***strs,
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
                rep->done = 1; /* the CLI stops following it */
                rep->error = (char *)"no such operation (a finished one's result is kept 30 s to 10 min; in a "
                                     "cluster, one the last leader ran ended with it; lockstep snapshot list shows "
                                     "its cut)";
                return 0;
        }
        /* A long poll: the CLI hears of each step as it happens, not on a tick. */
        {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += OPS_POLL_WAIT_MS / 1000;
                /* While it waits the lock is let go: a launch must not replace the op. */
                op->pollers++;
                while (!op->done && q->from >= op->n_events &&
                       pthread_cond_timedwait(&d->op_changed, &d->lock, &ts) == 0)
                        ;
                op->pollers--;
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
        /* A rendering its launch did not ask for (another client's poll, a
         * scheduled cut's): made now from the catalog. */
        unsigned missing = op->done && !op->is_prune && op->txid[0] ? control_want(q) & ~op->want : 0;
        char shown[65];
        snprintf(shown, sizeof(shown), "%s", op->is_delete ? op->target : op->txid);
        if (op->done) {
                rep->exit_code = op->exit_code;
                rep->text = (*strs)[n] = strdup(op->text ? op->text : "");
                rep->json = (*strs)[n + 1] = strdup(op->json ? op->json : "");
                rep->error = (*strs)[n + 2] = strdup(op->error ? op->error : "");
        }
        *n_strs = n + 3;
        pthread_mutex_unlock(&d->lock);
        if (missing) {
                char *text = NULL, *json = NULL;
                if (report_cut_render(d->cat, shown, missing, &text, &json, NULL, &(lserr){0}) == 0) {
                        if (text) {
                                free((*strs)[n]);
                                rep->text = (*strs)[n] = text;
                        }
                        if (json) {
                                free((*strs)[n + 1]);
                                rep->json = (*strs)[n + 1] = json;
                        }
                }
        }
        /* A NULL among the strings would crash the packer: no reply instead. */
        for (size_t i = 0; i < n + (rep->done ? 3 : 0); i++)
                if (!(*strs)[i])
                        return -ENOMEM;
        return 0;
}
