/* service: what makes lockstepd a fleet service: scheduled cuts, config
 * reloads, and the gauges of its /metrics endpoint. */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cat_etcd.h"
#include "cleanup.h"
#include "log.h"
#include "notify.h"
#include "report.h"

/* The test clock: a file holding Unix seconds that a test moves forward. Only
 * builds with failpoints read it, so a release build reads no environment here. */
static const char *test_clock(void)
{
#ifdef LOCKSTEP_FAILPOINTS
        const char *path = getenv("LOCKSTEP_CLOCK_FILE");
        return path && *path ? path : NULL;
#else
        return NULL;
#endif
}

/* Scheduling time: the test clock's when there is one, else the real clock. */
long long service_now_s(void)
{
        static _Atomic long long last;
        const char *path = test_clock();
        _cleanup_fclose_ FILE *f = NULL;
        long long t;

        if (!path)
                return (long long)time(NULL);
        /* A test clock caught mid-write keeps its last time: falling back to the
         * real clock would jump years ahead and fire every schedule. */
        f = fopen(path, "re");
        if (f && fscanf(f, "%lld", &t) == 1) {
                last = t;
                return t;
        }
        return last ? last : (long long)time(NULL);
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
        struct etcd_stats st;
        if (cat_etcd_stats(d->cat, &st) == 0)
                fprintf(out, "# HELP lockstep_etcd_requests_total Requests the catalog sent to etcd.\n"
                             "# TYPE lockstep_etcd_requests_total counter\nlockstep_etcd_requests_total %llu\n"
                             "# HELP lockstep_etcd_request_seconds_total Time the catalog waited for etcd.\n"
                             "# TYPE lockstep_etcd_request_seconds_total counter\n"
                             "lockstep_etcd_request_seconds_total %.6f\n",
                        (unsigned long long)st.requests, st.ms / 1e3);
}

/* Serves /metrics where the configuration says, moving it on a reload. */
void service_metrics_apply(struct daemon *d)
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
                ops_event(d, "metrics", NULL, NULL, "not served: %s", err.msg);
                return;
        }
        snprintf(d->metrics_url, sizeof(d->metrics_url), "%s", want);
        log_info("metrics: serving %s/metrics", want);
}

/* ---- schedules ----------------------------------------------------------- */

/* A scheduled cut's name: its due time, so that a cut of a slot is found by it. */
static void sched_name(long long due_s, char *out, size_t n)
{
        time_t due = (time_t)due_s;
        struct tm tm;

        gmtime_r(&due, &tm);
        snprintf(out, n, "sched-%04d%02d%02dT%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min);
}

/* High availability: a slot claimed by a leader that died before its cut
 * began was not run; one whose cut began was (the takeover settled the cut).
 * 1 when a cut of the slot is in the catalog. */
static int slot_began(struct daemon *d, const char *group, long long due_s)
{
        struct cat_txn *t = NULL;
        char name[64];
        size_t n = 0;
        lserr err = {0};
        int found = 0;

        sched_name(due_s, name, sizeof(name));
        if (cat_cuts(d->cat, group, &t, &n, &err) < 0) {
                log_err("%s", err.msg);
                return 1; /* unknown: never run a slot twice */
        }
        for (size_t i = 0; i < n && !found; i++)
                found = !strcmp(t[i].name, name);
        free(t);
        return found;
}

/* Plans every scheduled group of cfg; replaces d->sched. Caller holds gen. */
void service_sched_build(struct daemon *d, const struct cfg_coord *cfg)
{
        struct schedule *sc = calloc(cfg->n_groups ? cfg->n_groups : 1, sizeof(*sc));
        long long now = service_now_s();
        size_t n = 0;

        for (unsigned i = 0; sc && i < cfg->n_groups; i++) {
                const struct cfg_group *g = &cfg->groups[i];
                struct cat_sched last;
                lserr err = {0};
                int have;
                if (!g->schedule)
                        continue;
                pthread_mutex_lock(&d->sched_rows);
                int gr = cat_sched_get(d->cat, g->name, &last, &err);
                have = gr == 0;
                /* A claim whose cut never began: the slot is still to run
                 * (the catch-up rules say how). */
                if (have && !strcmp(last.outcome, "claimed") && !slot_began(d, g->name, last.last_due_s))
                        last.last_due_s--;
                /* Only a group that never ran gets a fresh record: a read
                 * error must not overwrite its history. */
                if (gr == -ENOENT) {
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
                        pthread_mutex_unlock(&d->sched_rows);
                        ops_event(d, "schedule", g->name, "", "not scheduled: %s", err.msg);
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
                        ops_event(d, "schedule", g->name, "", "%s", last.reason);
                } else if (sc[n].catch_up_run) {
                        ops_event(d, "schedule", g->name, "", "%u run(s) missed while lockstepd was down: one catch-up run now",
                              sc[n].missed);
                }
                pthread_mutex_unlock(&d->sched_rows);
                n++;
        }
        pthread_mutex_lock(&d->lock);
        free(d->sched);
        d->sched = sc;
        d->n_sched = sc ? n : 0;
        pthread_mutex_unlock(&d->lock);
}

/* Records that sc's slot was skipped or claimed, with why, as the group's last. */
static int sched_mark(struct daemon *d, const struct schedule *sc, const char *outcome, const char *why, lserr *err)
{
        struct cat_sched cs = {0};
        lserr e = {0};
        int r;

        pthread_mutex_lock(&d->sched_rows);
        if (cat_sched_get(d->cat, sc->group, &cs, &e) < 0)
                snprintf(cs.group, sizeof(cs.group), "%s", sc->group);
        cs.last_due_s = sc->due_s;
        cs.last_run_us = 0;
        snprintf(cs.outcome, sizeof(cs.outcome), "%s", outcome);
        cs.txid[0] = '\0';
        snprintf(cs.reason, sizeof(cs.reason), "%s", why);
        cs.skipped += !strcmp(outcome, "skipped");
        r = cat_sched_put(d->cat, &cs, err);
        pthread_mutex_unlock(&d->sched_rows);
        return r;
}

static void sched_skip(struct daemon *d, const struct schedule *sc, const char *why)
{
        lserr err = {0};

        if (sched_mark(d, sc, "skipped", why, &err) < 0)
                log_err("%s", err.msg);
        char due[40];
        report_iso_time(sc->due_s * 1000000, due, sizeof(due));
        ops_event(d, "schedule", sc->group, "", "run due %s skipped: %s", due, why);
}

/* The slot's claim: its due time as the group's last, before anything runs. */
static int sched_claim(struct daemon *d, const struct schedule *sc)
{
        char why[LS_NAME_MAX + 16];
        lserr err = {0};
        int r;

        snprintf(why, sizeof(why), "claimed by %s", ha_config(d->ha)->name);
        r = sched_mark(d, sc, "claimed", why, &err);
        if (r < 0)
                log_warn("schedule of group %s: slot not claimed, not run: %s", sc->group, err.msg);
        return r;
}

/* sc (as read before it was advanced, entry i) found the operations table
 * full: it is put back to be tried again at the next tick, until the group's
 * next run falls due; then it is skipped, as a run that could not start, and
 * the next one takes its place at once. A thousand groups due in one minute
 * wait their turn instead of being lost. */
static void sched_defer(struct daemon *d, size_t i, const struct schedule *sc, long long now)
{
        long long next = cron_next(&sc->cron, sc->due_s), advanced = cron_next(&sc->cron, now);
        int first = 0, late = next >= 0 && next <= now;

        if (late)
                sched_skip(d, sc, "no room among the operations lockstepd runs at once before the next run fell due");
        pthread_mutex_lock(&d->lock);
        /* A reload may have planned the table again meanwhile: then its plan stands. */
        if (i < d->n_sched && !strcmp(d->sched[i].group, sc->group) && d->sched[i].due_s == advanced) {
                d->sched[i] = *sc;
                if (late) {
                        /* The tick moved past the next run, which is due already. */
                        schedule_advance(&d->sched[i], sc->due_s);
                } else {
                        first = !sc->waiting_room;
                        d->sched[i].waiting_room = 1;
                }
        }
        pthread_mutex_unlock(&d->lock);
        if (first) {
                char due[40];
                report_iso_time(sc->due_s * 1000000, due, sizeof(due));
                ops_event(d, "schedule", sc->group, "", "run due %s waits for room: lockstepd runs %d operations at once, "
                          "%d of them kept for requests",
                          due, MAX_OPS, OPS_KEPT_FOR_REQUESTS);
        }
}

/* Starts what is due. Caller holds gen for reading. */
static void sched_tick(struct daemon *d)
{
        long long now = service_now_s();

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
                if (ops_group_running(d, sc.group)) {
                        sched_skip(d, &sc, "the previous cut of the group is still running");
                        continue;
                }
                if (!ops_room(d)) {
                        sched_defer(d, i, &sc, now);
                        continue;
                }
                struct op *op = calloc(1, sizeof(*op));
                lserr err = {0};
                int r;
                if (!op) {
                        sched_skip(d, &sc, "out of memory");
                        continue;
                }
                op->scheduled = 1;
                op->due_s = sc.due_s;
                op->mode = -1;
                snprintf(op->group, sizeof(op->group), "%s", sc.group);
                sched_name(sc.due_s, op->name, sizeof(op->name));
                /* In a cluster the slot is claimed (a fenced write) before its
                 * cut begins: a leader that takes over runs it no second time. */
                if (d->ha && sched_claim(d, &sc) < 0) {
                        free(op);
                        continue;
                }
                ops_event(d, "schedule", sc.group, "", "%s run due %s starts (%lld s after its due time)",
                      sc.catch_up_run ? "catch-up" : "scheduled", op->name + 6, now - sc.due_s);
                r = ops_launch(d, op, NULL, &err);
                /* A request took the last room since ops_room said there was. */
                if (r == -EBUSY)
                        sched_defer(d, i, &sc, now);
                else if (r < 0)
                        sched_skip(d, &sc, err.msg);
        }
}

/* ---- reload ----------------------------------------------------------------- */

void service_groups_to_catalog(struct daemon *d, const struct cfg_coord *cfg)
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
int service_apply_pending(struct daemon *d)
{
        struct gen *old, *g = calloc(1, sizeof(*g));
        int free_old;

        if (!g)
                return 0;
        pthread_mutex_lock(&d->lock);
        int pending = d->pending_cfg != NULL;
        pthread_mutex_unlock(&d->lock);
        if (!pending) {
                free(g);
                return 1;
        }
        /* Only short users hold gen (operations hold references): this waits
         * for a control request or a scheduler tick at most. */
        if (pthread_rwlock_wrlock(&d->gen) != 0) {
                free(g);
                return 0;
        }
        pthread_mutex_lock(&d->lock);
        g->cfg = d->pending_cfg;
        g->eng = d->pending_eng;
        d->pending_cfg = NULL;
        d->pending_eng = NULL;
        if (!g->cfg) { /* another reload applied it meanwhile */
                pthread_mutex_unlock(&d->lock);
                pthread_rwlock_unlock(&d->gen);
                free(g);
                return 1;
        }
        old = d->cur;
        /* ha.c keeps the ha: section it was opened with, and the new one is
         * the same (fixed_unchanged): the first stays in use, whatever frees
         * the old configuration. */
        if (d->ha) {
                struct cfg_ha *t = g->cfg->ha;
                g->cfg->ha = old->cfg->ha;
                old->cfg->ha = t;
        }
        d->cur = g;
        d->cfg = g->cfg;
        d->eng = g->eng;
        old->retired = 1;
        free_old = old->refs == 0;
        pthread_mutex_unlock(&d->lock);
        slots_set_limits(d->slots, d->cfg->max_cuts, d->cfg->max_cuts_per_agent);
        service_metrics_apply(d);
        /* A follower writes nothing: it records and plans when it leads. */
        if (!d->ha || ha_leading(d->ha, NULL)) {
                service_groups_to_catalog(d, d->cfg);
                service_sched_build(d, d->cfg);
        }
        ops_event(d, "reload", NULL, NULL, "configuration %s applied: %u agents, %u groups, %zu scheduled", d->cfg_path,
              d->cfg->n_agents, d->cfg->n_groups, d->n_sched);
        pthread_rwlock_unlock(&d->gen);
        /* Else the last operation on it frees it (ops_gen_put). */
        if (free_old)
                ops_gen_free(old);
        return 1;
}

/* Reads and checks the configuration again. A bad file is refused and the
 * running configuration stays; a good one is applied at once, or as soon as
 * the operations running on the old one are done. */
/* What the process opened at start (its key, catalog, counter and control
 * socket) does not change with a reload: a file that changes it is refused,
 * rather than reported as applied while the old values stay in use. */
static int same_str(const char *a, const char *b)
{
        return a == b || (a && b && !strcmp(a, b));
}

/* The same cluster, reached the same way. */
static int same_ha(const struct cfg_ha *a, const struct cfg_ha *b)
{
        if (!a || !b)
                return a == b;
        if (a->n_etcd != b->n_etcd || a->lease_ttl_s != b->lease_ttl_s || !same_str(a->name, b->name) ||
            !same_str(a->prefix, b->prefix) || !same_str(a->etcd_ca, b->etcd_ca) ||
            !same_str(a->etcd_cert, b->etcd_cert) || !same_str(a->etcd_key, b->etcd_key))
                return 0;
        for (unsigned i = 0; i < a->n_etcd; i++)
                if (!same_str(a->etcd[i], b->etcd[i]))
                        return 0;
        /* Forwarding: the listener and the keys were set up at start. */
        if (!same_str(a->listen, b->listen) || !same_str(a->tls_cert, b->tls_cert) ||
            !same_str(a->tls_key, b->tls_key) || !same_str(a->tls_ca, b->tls_ca) ||
            a->n_coordinators != b->n_coordinators)
                return 0;
        for (unsigned i = 0; i < a->n_coordinators; i++)
                if (!same_str(a->coordinators[i].name, b->coordinators[i].name) ||
                    !same_str(a->coordinators[i].pubkey, b->coordinators[i].pubkey))
                        return 0;
        return 1;
}

static int fixed_unchanged(struct daemon *d, const struct cfg_coord *c, lserr *err)
{
        const char *what = NULL;

        pthread_rwlock_rdlock(&d->gen);
        if (strcmp(c->key, d->cfg->key))
                what = "key";
        else if (!same_str(c->catalog, d->cfg->catalog))
                what = "catalog";
        else if (!same_ha(c->ha, d->cfg->ha))
                what = "ha";
        else if (strcmp(c->counter_file, d->cfg->counter_file))
                what = "counter_file";
        else if (strcmp(c->control, d->cfg->control))
                what = "control";
        pthread_rwlock_unlock(&d->gen);
        if (what)
                return lserr_set(err, -EINVAL, "%s: %s changed; that takes a restart of lockstepd", d->cfg_path, what);
        return 0;
}

int service_reload(struct daemon *d, int wait_ms, int *ret_applied, lserr *err)
{
        struct cfg_coord *cfg = NULL;
        struct engine *eng = NULL;
        int r = cfg_coord_load(d->cfg_path, &cfg, err);

        if (r >= 0)
                r = fixed_unchanged(d, cfg, err);
        if (r >= 0)
                r = engine_new(cfg, d->key, d->cat, d->ctr, d->slots, &eng, err);
        if (r >= 0 && d->ha)
                engine_set_fence(eng, ha_fence(d->ha));
        if (r < 0) {
                cfg_coord_free(cfg);
                log_err("reload of %s refused: %s", d->cfg_path, err->msg);
                ops_event(d, "reload", NULL, NULL, "refused, the running configuration stays: %s", err->msg);
                return r;
        }
        pthread_mutex_lock(&d->lock);
        engine_free(d->pending_eng);
        cfg_coord_free(d->pending_cfg);
        d->pending_cfg = cfg;
        d->pending_eng = eng;
        pthread_mutex_unlock(&d->lock);
        for (int waited = 0; !(*ret_applied = service_apply_pending(d)) && waited < wait_ms; waited += 100)
                usleep(100000);
        if (!*ret_applied)
                ops_event(d, "reload", NULL, NULL, "configuration valid; not applied yet");
        return 0;
}

void *service_sched_main(void *p)
{
        struct daemon *d = p;
        /* A test clock moves in jumps: look often. */
        int tick_ms = test_clock() ? 100 : 1000;
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
                service_apply_pending(d);
                /* Only the leader runs schedules: a follower that took over
                 * finds each one's last run in the catalog (catch-up rules). */
                if (!d->ha || ha_leading(d->ha, NULL)) {
                        pthread_rwlock_rdlock(&d->gen);
                        sched_tick(d);
                        pthread_rwlock_unlock(&d->gen);
                }
                if (wd_ms)
                        notify_watchdog();
                pthread_mutex_lock(&d->stop_lock);
        }
        pthread_mutex_unlock(&d->stop_lock);
        return NULL;
}

/* ---- control commands beyond cuts ---------------------------------------- */

int service_r_schedules(struct daemon *d, const void *a, int j, FILE *f, lserr *err)
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
                rs[i].running = ops_group_running(d, rs[i].group);
        }
        report_schedules(rs, n, j, f);
        free(rs);
        return 0;
}
